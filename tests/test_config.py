"""Settings: parsing, defaults, and refusing to start half-configured."""

import subprocess
import sys

import pytest

from support.processes import ROOT, base_environment
from tokensvc import ConfigError, environ_config, load_settings


def test_defaults():
    """With nothing set: LiveKit unconfigured, auth optional, the documented defaults."""
    settings = load_settings({})
    assert not settings.livekit_configured
    assert (settings.livekit_timeout, settings.token_ttl, settings.max_content_length) == (
        5.0,
        600,
        65536,
    )
    assert (settings.auth_required, settings.auth_tenant_claim) == (False, "sub")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"TOKEN_TTL": "abc"}, "TOKEN_TTL: expected a whole number, got 'abc'"),
        ({"TOKEN_TTL": "0"}, "TOKEN_TTL: must be at least 1"),
        ({"TOKEN_TTL": "1.5"}, "TOKEN_TTL: expected a whole number"),
        ({"LIVEKIT_TIMEOUT": "soon"}, "LIVEKIT_TIMEOUT: expected a number"),
        ({"LIVEKIT_TIMEOUT": "nan"}, "LIVEKIT_TIMEOUT: must be at least"),
        ({"ROOM_MAX_PARTICIPANTS": "-1"}, "ROOM_MAX_PARTICIPANTS: must be at least 0"),
        ({"MAX_CONTENT_LENGTH": "big"}, "MAX_CONTENT_LENGTH: expected a whole number"),
        ({"AUTH_REQUIRED": "maybe"}, "AUTH_REQUIRED: expected true/1/yes or false/0/no"),
        ({"AUTH_REQUIRED": "true"}, "AUTH_REQUIRED: is on but no key is configured"),
        ({"LIVEKIT_URL": "localhost:7880"}, "LIVEKIT_URL: expected a ws/wss/http/https URL"),
        ({"LIVEKIT_PUBLIC_URL": "ftp://x"}, "LIVEKIT_PUBLIC_URL: expected a ws/wss/http/https"),
        (
            {"AUTH_JWT_ALGORITHMS": "HS256,none"},
            "AUTH_JWT_ALGORITHMS: unsupported algorithm(s) none",
        ),
        (
            {"LIVEKIT_API_SECRET_FILE": "/nonexistent/secret"},
            "LIVEKIT_API_SECRET_FILE: cannot read",
        ),
    ],
)
def test_unusable_value_names_the_setting(config, message):
    """Each unusable value raises ConfigError whose message starts with the setting's name."""
    with pytest.raises(ConfigError) as error:
        load_settings(config)
    assert str(error.value).startswith(message)


@pytest.mark.parametrize("word", ["true", "1", "yes", "TRUE", " Yes "])
def test_auth_required_true_words(word):
    """true/1/yes (any case) turn AUTH_REQUIRED on."""
    assert load_settings({"AUTH_REQUIRED": word, "AUTH_JWT_SECRET": "k" * 32}).auth_required


@pytest.mark.parametrize("word", ["false", "0", "no", "", "NO"])
def test_auth_required_false_words(word):
    """false/0/no and empty leave AUTH_REQUIRED off."""
    assert not load_settings({"AUTH_REQUIRED": word}).auth_required


def test_secret_from_file(tmp_path):
    """LIVEKIT_API_SECRET_FILE is read (trailing newline stripped); both forms at once refused."""
    path = tmp_path / "secret"
    secret = "from-a-file-" + "0123456789" * 3
    path.write_text(secret + "\n")
    assert load_settings({"LIVEKIT_API_SECRET_FILE": str(path)}).livekit_api_secret == secret
    with pytest.raises(ConfigError, match="not both"):
        load_settings({"LIVEKIT_API_SECRET_FILE": str(path), "LIVEKIT_API_SECRET": "x"})


def test_environ_config_reads_only_known_keys():
    """Only the service's keys (and their _FILE forms) are taken from the environment."""
    environ = {"TOKEN_TTL": "60", "LIVEKIT_API_KEY_FILE": "/k", "HOME": "/root", "PORT": "80"}
    assert environ_config(environ) == {"TOKEN_TTL": "60", "LIVEKIT_API_KEY_FILE": "/k"}


def test_secrets_are_not_in_settings_repr():
    """A logged Settings object does not show the secrets."""
    livekit, tenant = "s3cr3t-value-" + "a" * 32, "t0k3n-key-" + "b" * 32
    settings = load_settings({"LIVEKIT_API_SECRET": livekit, "AUTH_JWT_SECRET": tenant})
    assert "s3cr3t-value" not in repr(settings) and "t0k3n-key" not in repr(settings)


@pytest.mark.parametrize("key", ["LIVEKIT_API_SECRET", "AUTH_JWT_SECRET"])
def test_short_hmac_secrets_are_refused_outside_development(key):
    """A LiveKit secret or a tenant HS* key under 32 bytes (`livekit-server --dev`'s
    "secret") stops the start, naming the setting and its length; DEV_MODE accepts it."""
    with pytest.raises(ConfigError, match=f"^{key}: must be at least 32 bytes, got 6 "):
        load_settings({key: "secret"})
    assert load_settings({key: "x" * 32}).dev_mode is False
    settings = load_settings({key: "secret", "DEV_MODE": "true"})
    assert settings.dev_mode and "secret" in (settings.livekit_api_secret, settings.auth_jwt_secret)


def clean_env(**settings):
    """The current environment without any tokensvc key, plus `settings`."""
    env = base_environment()
    return {**env, **settings}


@pytest.mark.parametrize(
    ("settings", "line"),
    [
        ({"TOKEN_TTL": "abc"}, "tokensvc: configuration error: TOKEN_TTL: expected a whole number"),
        (
            {"AUTH_REQUIRED": "yes"},
            "tokensvc: configuration error: AUTH_REQUIRED: is on but no key",
        ),
        (
            {"AUTH_JWT_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"},
            "tokensvc: configuration error: AUTH_JWT_PUBLIC_KEY: not a PEM public key",
        ),
        (
            {"AUTH_REQUIRED": "1", "AUTH_JWT_PUBLIC_KEY_FILE": "/nonexistent/auth.pem"},
            "tokensvc: configuration error: AUTH_JWT_PUBLIC_KEY_FILE: cannot read",
        ),
        (
            {"AUTH_JWT_SECRET": "k" * 32, "AUTH_JWT_ALGORITHMS": "RS256"},
            "tokensvc: configuration error: AUTH_JWT_ALGORITHMS: "
            "none of RS256 fits the configured keys",
        ),
        (
            {"AUTH_JWKS_URL": "file:///etc/passwd"},
            "tokensvc: configuration error: AUTH_JWKS_URL: expected a http/https URL",
        ),
        (
            {"LIVEKIT_API_SECRET": "secret"},
            "tokensvc: configuration error: LIVEKIT_API_SECRET: must be at least 32 bytes, got 6",
        ),
        (
            {"AUTH_JWT_SECRET": "abc"},
            "tokensvc: configuration error: AUTH_JWT_SECRET: must be at least 32 bytes, got 3",
        ),
        (
            {},
            "tokensvc: configuration error: LIVEKIT_URL: not set; the server needs LIVEKIT_URL, "
            "LIVEKIT_API_KEY, LIVEKIT_API_SECRET (missing: LIVEKIT_URL, LIVEKIT_API_KEY, "
            "LIVEKIT_API_SECRET)",
        ),
        (
            {"LIVEKIT_URL": "ws://127.0.0.1:7880", "LIVEKIT_API_KEY": "devkey", "DEV_MODE": "true"},
            "tokensvc: configuration error: LIVEKIT_API_SECRET: not set",
        ),
    ],
)
def test_wsgi_module_refuses_to_start_with_one_line(settings, line):
    """Importing app.py with a bad setting exits 4 and prints exactly one line naming it."""
    result = subprocess.run(
        [sys.executable, "-c", "import app"],
        cwd=ROOT,
        env=clean_env(**settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 4
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(line)


def test_gunicorn_refuses_to_start_and_stops(free_port):
    """`gunicorn app:app` with a bad setting exits non-zero (no restart loop), naming the
    setting."""
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "app:app"],
        cwd=ROOT,
        env=clean_env(TOKEN_TTL="soon", PORT=str(free_port)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "tokensvc: configuration error: TOKEN_TTL: expected a whole number" in result.stderr


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("WEB_CONCURRENCY", "0", "1 to 256"),
        ("WEB_CONCURRENCY", "300", "1 to 256"),
        ("GUNICORN_WORKER_CONNECTIONS", "x", "1 to 100000"),
        ("GUNICORN_WORKER_CONNECTIONS", "-4", "1 to 100000"),
        ("PORT", "abc", "1 to 65535"),
        ("PORT", "70000", "1 to 65535"),
    ],
)
def test_gunicorn_settings_refuse_with_one_line_and_exit_4(free_port, name, value, allowed):
    """gunicorn's own settings fail as the service's do: exit 4 and one line naming the setting."""
    settings = {"PORT": str(free_port), name: value}
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "app:app"],
        cwd=ROOT,
        env=clean_env(**settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 4
    assert result.stderr.strip().splitlines() == [
        f"tokensvc: configuration error: {name}: expected a whole number from {allowed}, "
        f"got {value!r}"
    ]
