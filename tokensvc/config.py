"""Settings: every key declared once, next to its parser; the one place that reads the
environment (`environ_config`, `server_settings`)."""

import os
import re
import sys
from dataclasses import dataclass, field, fields
from typing import NoReturn
from urllib.parse import urlparse

from limits import parse_many

from .roles import load_presets
from .sealing import SealingError, parse_keys

#: Secrets that may instead be read from a file named by `<KEY>_FILE`.
FILE_KEYS = (
    "LIVEKIT_API_KEY",
    "LIVEKIT_API_SECRET",
    "AUTH_JWT_SECRET",
    "AUTH_JWT_PUBLIC_KEY",
    "TENANT_WEBHOOK_SECRETS_KEY",
    "CONSOLE_SECRET_KEY",
    "ADMIN_TOKEN",
)
#: The settings that configure a key for tenant tokens (any one turns AUTH_REQUIRED on).
TENANT_KEYS = ("AUTH_JWT_SECRET", "AUTH_JWT_PUBLIC_KEY", "AUTH_JWKS_URL")

HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
PUBLIC_KEY_ALGORITHMS = (*RSA_ALGORITHMS, "ES256", "ES384", "ES512", "EdDSA")
#: Characters that make flask-cors treat an origin as a regular expression.
PATTERN_CHARACTERS = re.compile(r"[*?\[\]()^$|\\+{}]")
#: Where rate-limit counters may live (the `limits` library's storage URLs).
STORAGE_SCHEMES = ("memory", "redis", "rediss", "redis+unix", "redis+sentinel", "redis+cluster")
#: Where the ownership record may live (STORAGE_URL).
HOLD_SCHEMES = ("sqlite", "redis", "rediss", "redis+sentinel")
LOG_FORMATS = ("json", "logfmt")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: The shortest HMAC key accepted outside DEV_MODE, in bytes: HS256's output size (RFC 7518
#: 3.2), below which PyJWT and LiveKit warn.
MIN_SECRET_BYTES = 32
#: The HMAC keys that must have MIN_SECRET_BYTES: LiveKit's (it signs every participant token)
#: and the tenants' HS* key, and the console's session key.
HMAC_SECRET_KEYS = ("LIVEKIT_API_SECRET", "AUTH_JWT_SECRET", "CONSOLE_SECRET_KEY")
#: What the standalone server needs to do anything useful (embedded, their absence is a 500).
LIVEKIT_KEYS = ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    """A setting has a value the service cannot run with; the message names the setting."""


def setting(parse, default=None, secret=False):
    """A field of `Settings`: its key is the field's name in capitals, `parse(values, key,
    default)` reads it; a secret is kept out of the dataclass's repr."""
    return field(default=default, repr=not secret, metadata={"parse": parse})


def _required_when_keyed(values, key, default):
    """AUTH_REQUIRED as set; unset, true whenever a tenant key is configured."""
    if values.get(key) in (None, ""):
        return any(_text(values, name) for name in TENANT_KEYS)
    return _flag(values, key, default)


@dataclass(frozen=True)
class Settings:
    """Validated settings of one service instance, each field with the parser of its key."""

    livekit_url: str | None = setting(lambda v, k, d: _url(v, k))
    livekit_public_url: str | None = setting(lambda v, k, d: _url(v, k))
    livekit_api_key: str | None = setting(lambda v, k, d: _text(v, k))
    livekit_api_secret: str | None = setting(lambda v, k, d: _text(v, k), secret=True)
    livekit_timeout: float = setting(lambda v, k, d: _number(v, k, d, float, 0.001), 5.0)
    token_ttl: int = setting(lambda v, k, d: _number(v, k, d, int, 1), 600)
    room_empty_timeout: int | None = setting(lambda v, k, d: _number(v, k, d, int, 0))
    room_departure_timeout: int | None = setting(lambda v, k, d: _number(v, k, d, int, 0))
    room_max_participants: int | None = setting(lambda v, k, d: _number(v, k, d, int, 0))
    auth_required: bool = setting(_required_when_keyed, False)
    storage_url: str | None = setting(lambda v, k, d: _hold_storage_url(v, k), secret=True)
    storage_timeout: float = setting(lambda v, k, d: _number(v, k, d, float, 0.001), 2.0)
    storage_replicas: int = setting(lambda v, k, d: _number(v, k, d, int, 0), 0)
    storage_check_interval: float = setting(lambda v, k, d: _number(v, k, d, float, 0.001), 5.0)
    clock_skew_max: float = setting(lambda v, k, d: _number(v, k, d, float, 0.001), 5.0)
    hold_margin: int = setting(lambda v, k, d: _number(v, k, d, int, 0), 60)
    auth_jwt_secret: str | None = setting(lambda v, k, d: _text(v, k), secret=True)
    auth_jwt_public_key: str | None = setting(lambda v, k, d: _text(v, k))
    auth_jwks_url: str | None = setting(lambda v, k, d: _url(v, k, ("http", "https")))
    auth_jwks_timeout: float = setting(lambda v, k, d: _number(v, k, d, float, 0.001), 5.0)
    auth_jwt_algorithms: tuple[str, ...] = setting(lambda v, k, d: _words(v, k), ())
    auth_jwt_issuer: str | None = setting(lambda v, k, d: _text(v, k))
    auth_jwt_audience: tuple[str, ...] = setting(lambda v, k, d: _words(v, k), ())
    auth_jwt_leeway: int = setting(lambda v, k, d: _number(v, k, d, int, 0), 30)
    auth_jwks_refresh_seconds: float = setting(lambda v, k, d: _number(v, k, d, float, 0), 30.0)
    auth_jwks_max_age: float = setting(lambda v, k, d: _number(v, k, d, float, 0.001), 300.0)
    auth_tenant_claim: str = setting(lambda v, k, d: _text(v, k) or d, "sub")
    auth_roles_claim: str = setting(lambda v, k, d: _text(v, k) or d, "roles")
    auth_scopes_claim: str = setting(lambda v, k, d: _text(v, k) or d, "scope")
    auth_identity_claim: str | None = setting(lambda v, k, d: _text(v, k))
    auth_quota_claims: tuple[str, str] = setting(
        lambda v, k, d: _quota_claims(v, k, d), ("max_rooms", "max_participants")
    )
    quota_max_rooms: int | None = setting(lambda v, k, d: _number(v, k, d, int, 0))
    quota_max_participants: int | None = setting(lambda v, k, d: _number(v, k, d, int, 0))
    usage_retention_days: int = setting(lambda v, k, d: _number(v, k, d, int, 1), 90)
    role_presets: dict = field(
        default_factory=lambda: load_presets(None),
        metadata={"parse": lambda v, k, d: _role_presets(v, k)},
    )
    agent_names_allowed: tuple[str, ...] | None = setting(lambda v, k, d: _words(v, k) or None)
    max_content_length: int = setting(lambda v, k, d: _number(v, k, d, int, 1), 65536)
    room_names: str = setting(lambda v, k, d: _choice(v, k, ("shared", "per-tenant"), d), "shared")
    cors_allowed_origins: tuple[str, ...] = setting(lambda v, k, d: _origins(v, k), ())
    cors_allow_credentials: bool = setting(lambda v, k, d: _flag(v, k, d), False)
    log_format: str = setting(lambda v, k, d: _choice(v, k, LOG_FORMATS, d), "json")
    log_level: str = setting(lambda v, k, d: _choice(v, k, LOG_LEVELS, d), "INFO")
    proxy_fix: int = setting(lambda v, k, d: _number(v, k, d, int, 0), 0)
    metrics_enabled: bool = setting(lambda v, k, d: _flag(v, k, d), False)
    metrics_bearer_token: str | None = setting(lambda v, k, d: _text(v, k), secret=True)
    #: prometheus_client's own variable; gunicorn.conf.py sets it for its workers.
    prometheus_multiproc_dir: str | None = setting(lambda v, k, d: _text(v, k))
    rate_limit_per_tenant: str | None = setting(lambda v, k, d: _rate(v, k))
    rate_limit_room_creates_per_tenant: str | None = setting(lambda v, k, d: _rate(v, k))
    rate_limit_per_ip: str | None = setting(lambda v, k, d: _rate(v, k))
    rate_limit_storage_url: str = setting(
        lambda v, k, d: _storage_url(v, k), "memory://", secret=True
    )
    rate_limit_fail_open: bool = setting(lambda v, k, d: _flag(v, k, d), False)
    #: Development (make run): HMAC secrets shorter than MIN_SECRET_BYTES are accepted.
    dev_mode: bool = setting(lambda v, k, d: _flag(v, k, d), False)
    tenant_webhook_endpoints_max: int = setting(lambda v, k, d: _number(v, k, d, int, 1, 1000), 10)
    tenant_webhook_timeout: float = setting(lambda v, k, d: _number(v, k, d, float, 0.1, 60), 10.0)
    tenant_webhooks_allow_private: bool = setting(lambda v, k, d: _flag(v, k, d), False)
    tenant_webhook_retry_delay: float = setting(lambda v, k, d: _number(v, k, d, float, 0.01), 5.0)
    tenant_webhook_retry_period: float = setting(
        lambda v, k, d: _number(v, k, d, float, 0), 86400.0
    )
    tenant_webhook_endpoint_concurrency: int = setting(
        lambda v, k, d: _number(v, k, d, int, 1, 100), 2
    )
    #: Attempts one worker process has in flight at most (asynchronous: none holds a thread).
    tenant_webhook_in_flight: int = setting(lambda v, k, d: _number(v, k, d, int, 1, 10_000), 256)
    #: An endpoint whose every attempt failed this long (seconds) is disabled.
    tenant_webhook_disable_after: float = setting(
        lambda v, k, d: _number(v, k, d, float, 0), 5 * 86400.0
    )
    #: The keys that seal tenants' webhook secrets at rest (the first seals, any opens).
    tenant_webhook_secrets_key: tuple[bytes, ...] = setting(
        lambda v, k, d: _sealing_keys(v, k), (), secret=True
    )
    #: The console: the key its session cookies and tickets are signed with (unset: derived from
    #: LIVEKIT_API_SECRET), how long a session lasts at most, the origins that may frame it.
    console_secret_key: str | None = setting(lambda v, k, d: _text(v, k), secret=True)
    console_session_ttl: int = setting(lambda v, k, d: _number(v, k, d, int, 60, 86400), 3600)
    console_frame_ancestors: tuple[str, ...] = setting(lambda v, k, d: _frame_ancestors(v, k), ())
    admin_token: str | None = setting(lambda v, k, d: _text(v, k), secret=True)
    audit_retention: int = setting(lambda v, k, d: _number(v, k, d, int, 1), 90)
    tenant_record_cache: float = setting(lambda v, k, d: _number(v, k, d, float, 0, 60), 1.0)
    #: The worker's reconciliation with LiveKit: a sweep of every live room, and of the rooms
    #: under watch, every so many seconds.
    reconcile_interval: float = setting(lambda v, k, d: _number(v, k, d, float, 0.1, 3600), 10.0)
    watch_interval: float = setting(lambda v, k, d: _number(v, k, d, float, 0.1, 60), 1.0)

    @property
    def rate_limited(self) -> bool:
        """Whether any rate limit is configured."""
        return bool(
            self.rate_limit_per_tenant
            or self.rate_limit_room_creates_per_tenant
            or self.rate_limit_per_ip
        )

    @property
    def livekit_configured(self) -> bool:
        """Whether the server URL and the API key pair are all present."""
        return bool(self.livekit_url and self.livekit_api_key and self.livekit_api_secret)

    @property
    def client_url(self) -> str | None:
        """The URL handed to clients: the public one, else the server one."""
        return self.livekit_public_url or self.livekit_url

    @property
    def anonymous_checked(self) -> bool:
        """Whether anonymous tokens are possible beside tenants (a key, AUTH_REQUIRED=false):
        then they are never for a name a tenant holds."""
        return self.auth_configured and not self.auth_required

    @property
    def auth_configured(self) -> bool:
        """Whether any tenant-token verification key is configured."""
        return bool(self.auth_jwt_secret or self.auth_jwt_public_key or self.auth_jwks_url)


#: Every setting the service reads, in the order docs/configuration.md documents them.
KEYS = tuple(item.name.upper() for item in fields(Settings))
#: In a Flask app's config each key is `TOKENSVC_<KEY>`, clear of the host's own keys (Flask's
#: MAX_CONTENT_LENGTH, say); the environment keeps the plain names.
CONFIG_PREFIX = "TOKENSVC_"
#: Plain keys that belong to Flask or its extensions: in `app.config` only the prefixed form is
#: the service's.
HOST_KEYS = ("MAX_CONTENT_LENGTH",)


@dataclass(frozen=True)
class ServerSettings:
    """What gunicorn.conf.py reads: the port, the workers, and the log format its logger uses."""

    port: int = setting(lambda v, k, d: _number(v, k, d, int, 1, 65535), 8000)
    web_concurrency: int = setting(
        lambda v, k, d: _number(v, k, d, int, 1, 256), os.cpu_count() or 2
    )
    gunicorn_worker_connections: int = setting(
        lambda v, k, d: _number(v, k, d, int, 1, 100_000), 1000
    )
    prometheus_multiproc_dir: str | None = setting(lambda v, k, d: _text(v, k))
    log_format: str = setting(lambda v, k, d: _choice(v, k, LOG_FORMATS, d), "json")


def environ_config(environ=None) -> dict:
    """Return the service's keys (and their `_FILE` forms) that are set in the environment:
    the one place the service reads the environment."""
    environ = os.environ if environ is None else environ
    names = KEYS + tuple(f"{key}_FILE" for key in FILE_KEYS)
    return {name: environ[name] for name in names if name in environ}


def app_config(values) -> dict:
    """The service's keys of `values` (plain names, as in the environment) under their
    `app.config` names (`TOKENSVC_<KEY>`); other keys (Flask's TESTING, say) as they are."""
    names = set(KEYS) | {f"{key}_FILE" for key in FILE_KEYS}
    return {CONFIG_PREFIX + key if key in names else key: value for key, value in values.items()}


def from_app_config(config) -> dict:
    """The service's keys in an app's config, by their plain names: `TOKENSVC_<KEY>`, else
    (as before the prefix) `<KEY>` itself, except the keys that are Flask's own."""
    values = {}
    for key in KEYS + tuple(f"{key}_FILE" for key in FILE_KEYS):
        if CONFIG_PREFIX + key in config:
            values[key] = config[CONFIG_PREFIX + key]
        elif key in config and key not in HOST_KEYS:
            values[key] = config[key]
    return values


def load_settings(config) -> Settings:
    """Parse and validate the service's keys from a mapping such as `app.config`."""
    values = _resolve_files(config)
    settings = Settings(**_parsed(Settings, values))
    _check_auth(settings)
    _check_cors(settings)
    _check_secret_lengths(settings)
    _check_admin_token(settings)
    return settings


def require_livekit(settings: Settings) -> None:
    """Refuse to run as the standalone server without LiveKit: it could answer nothing but 500
    (embedded in a host app the host decides, and the token route answers 500
    livekit_not_configured)."""
    values = (settings.livekit_url, settings.livekit_api_key, settings.livekit_api_secret)
    missing = [key for key, value in zip(LIVEKIT_KEYS, values, strict=True) if not value]
    if missing:
        raise ConfigError(
            f"{missing[0]}: not set; the server needs {', '.join(LIVEKIT_KEYS)} "
            f"(missing: {', '.join(missing)})"
        )


def server_settings(environ=None) -> ServerSettings:
    """Parse gunicorn's settings from the environment."""
    environ = os.environ if environ is None else environ
    return ServerSettings(**_parsed(ServerSettings, environ))


def _parsed(kind, values) -> dict:
    """Each field of the dataclass `kind`, parsed from its key in `values`."""
    return {
        item.name: item.metadata["parse"](values, item.name.upper(), item.default)
        for item in fields(kind)
    }


def exit_on(error: ConfigError) -> NoReturn:
    """Stop with one clear line and exit 4: gunicorn reads 4 as "app failed to load" and stops
    instead of restarting workers into the same error (a supervisor should not retry either)."""
    print(f"tokensvc: configuration error: {error}", file=sys.stderr, flush=True)
    sys.exit(4)


def _resolve_files(config) -> dict:
    """Copy the known keys, replacing each `<KEY>_FILE` by the file's contents."""
    values = {key: config.get(key) for key in KEYS}
    for key in FILE_KEYS:
        path = config.get(f"{key}_FILE")
        if not path:
            continue
        if values.get(key) not in (None, ""):
            raise ConfigError(f"{key}: set either {key} or {key}_FILE, not both")
        try:
            with open(path, encoding="utf-8") as handle:
                values[key] = handle.read().strip()
        except OSError as exc:
            raise ConfigError(f"{key}_FILE: cannot read {path!r}: {exc.strerror}") from None
    return values


def _text(values, key):
    """Return a non-empty stripped string, or None when unset or blank."""
    value = values.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected text, got {type(value).__name__}")
    return value.strip() or None


def _url(values, key, schemes=("ws", "wss", "http", "https")):
    """Return a URL with one of `schemes` and a host, or None when unset."""
    value = _text(values, key)
    if value is None:
        return None
    parsed = urlparse(value)
    if parsed.scheme not in schemes or not parsed.netloc:
        raise ConfigError(f"{key}: expected a {'/'.join(schemes)} URL with a host, got {value!r}")
    return value.rstrip("/")


def _sealing_keys(values, key) -> tuple[bytes, ...]:
    """The keys of TENANT_WEBHOOK_SECRETS_KEY (none when unset)."""
    text = _text(values, key)
    if not text:
        return ()
    try:
        return parse_keys(text)
    except SealingError as exc:
        raise ConfigError(
            f"{key}: {exc} (each key is 32 random bytes in base64, comma-separated: "
            f"openssl rand -base64 32)"
        ) from None


def _number(values, key, default, kind, minimum, maximum=None):
    """Return a number of `kind` from `minimum` to `maximum`, or `default` when unset."""
    value = values.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    noun = "a whole number" if kind is int else "a number"
    if maximum is not None:
        noun += f" from {minimum} to {maximum}"
    try:
        if isinstance(value, bool):
            raise ValueError
        number = kind(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected {noun}, got {value!r}") from None
    if maximum is not None and not minimum <= number <= maximum:
        raise ConfigError(f"{key}: expected {noun}, got {value!r}")
    if number < minimum or number != number:
        raise ConfigError(f"{key}: must be at least {minimum}, got {value!r}")
    return number


def _flag(values, key, default=False):
    """Return a boolean from true/1/yes/on or false/0/no/off."""
    value = values.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(f"{key}: expected true/1/yes or false/0/no, got {value!r}")


def _words(values, key):
    """Return the comma-separated items of a setting (or of a list) as a tuple."""
    value = values.get(key)
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(item.strip() for item in items if item.strip())


def _origins(values, key):
    """Return `*` or a tuple of scheme://host[:port] origins."""
    origins = _words(values, key)
    if origins == ("*",):
        return origins
    for origin in origins:
        if PATTERN_CHARACTERS.search(origin):
            # flask-cors would read it as a regular expression: https://*.a.example would let
            # https://xa.example.evil.com in and keep https://b.a.example out.
            raise ConfigError(
                f"{key}: list each origin exactly; wildcards and patterns such as "
                f"{origin!r} are not supported (only '*' alone allows every origin)"
            )
        parsed = urlparse(origin)
        if (
            parsed.scheme not in ("http", "https")
            or not parsed.netloc
            or parsed.path not in ("", "/")
        ):
            raise ConfigError(
                f"{key}: expected '*' or origins like https://app.example, got {origin!r}"
            )
    return tuple(origin.rstrip("/") for origin in origins)


def _frame_ancestors(values, key):
    """Origins (scheme://host[:port]) that may frame the console; `*` is refused: a console any
    site may frame is open to clickjacking."""
    origins = _origins(values, key)
    if origins == ("*",):
        raise ConfigError(f"{key}: list each origin that may frame the console; '*' is refused")
    return origins


def _rate(values, key):
    """Return a rate limit in flask-limiter's syntax (`60/minute`, `10 per second; 100/hour`)."""
    value = _text(values, key)
    if value is None:
        return None
    try:
        parse_many(value)
    except ValueError:
        raise ConfigError(f"{key}: expected a rate such as 60/minute, got {value!r}") from None
    return value


def _storage_url(values, key):
    """Return `memory://` (the default) or a Redis URL for the rate-limit counters."""
    value = _text(values, key) or "memory://"
    if urlparse(value).scheme not in STORAGE_SCHEMES:
        raise ConfigError(
            f"{key}: expected memory:// or a redis:// URL, got a "
            f"{urlparse(value).scheme or 'schemeless'} URL"
        )
    return value


def _hold_storage_url(values, key):
    """Return a sqlite:/// or Redis URL for the ownership record, or None (the default file)."""
    value = _text(values, key)
    if value is None:
        return None
    scheme = urlparse(value).scheme
    if scheme not in HOLD_SCHEMES:
        raise ConfigError(
            f"{key}: expected sqlite:///path or a redis://, rediss:// or "
            f"redis+sentinel:// URL, got a {scheme or 'schemeless'} URL"
        )
    if scheme == "sqlite" and not value.split("://", 1)[1].lstrip("/"):
        raise ConfigError(f"{key}: a sqlite URL names a file, as in sqlite:////var/lib/tokensvc.db")
    return value


def _quota_claims(values, key, default) -> tuple[str, str]:
    """The tenant-JWT claims of the two quotas: `max_rooms,max_participants` by default."""
    names = _words(values, key)
    if not names:
        return default
    if len(names) != 2 or names[0] == names[1]:
        raise ConfigError(
            f"{key}: expected two claim names, for the rooms and the participants "
            f"quotas (as in max_rooms,max_participants), got {values.get(key)!r}"
        )
    return names


def _role_presets(values, key) -> dict:
    """The role presets: the built-in ones, overridden and extended by the setting's JSON."""
    try:
        return load_presets(_text(values, key))
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _choice(values, key, choices, default):
    """Return one of `choices` (case-insensitive), or `default` when unset."""
    value = _text(values, key)
    if value is None:
        return default
    for choice in choices:
        if value.lower() == choice.lower():
            return choice
    raise ConfigError(f"{key}: expected one of {', '.join(choices)}, got {value!r}")


def _check_auth(settings: Settings) -> None:
    """Refuse authentication settings that would leave the service open or unusable."""
    if settings.auth_required and not settings.auth_configured:
        raise ConfigError(
            "AUTH_REQUIRED: is on but no key is configured "
            "(set AUTH_JWT_SECRET, AUTH_JWT_PUBLIC_KEY or AUTH_JWKS_URL)"
        )
    known = set(HMAC_ALGORITHMS + PUBLIC_KEY_ALGORITHMS)
    unknown = [alg for alg in settings.auth_jwt_algorithms if alg not in known]
    if unknown:
        raise ConfigError(f"AUTH_JWT_ALGORITHMS: unsupported algorithm(s) {', '.join(unknown)}")


def _check_secret_lengths(settings: Settings) -> None:
    """Refuse an HMAC secret shorter than MIN_SECRET_BYTES outside DEV_MODE: anyone who guesses
    it mints tokens (LiveKit's) or tenants (AUTH_JWT_SECRET)."""
    if settings.dev_mode:
        return
    for key, value in zip(
        HMAC_SECRET_KEYS,
        (settings.livekit_api_secret, settings.auth_jwt_secret, settings.console_secret_key),
        strict=True,
    ):
        if value is not None and len(value.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"{key}: must be at least {MIN_SECRET_BYTES} bytes, got "
                f"{len(value.encode())} (generate one: openssl rand -base64 32; "
                f"DEV_MODE=true accepts it for development only)"
            )


def _check_admin_token(settings: Settings) -> None:
    """Refuse an ADMIN_TOKEN shorter than MIN_SECRET_BYTES, even in DEV_MODE: it is the
    operator's key to every tenant."""
    token = settings.admin_token
    if token is not None and len(token.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"ADMIN_TOKEN: must be at least {MIN_SECRET_BYTES} bytes, got {len(token.encode())} "
            f"(generate one: openssl rand -base64 32)"
        )


def _check_cors(settings: Settings) -> None:
    """Refuse credentials for every origin: browsers ignore `*` with credentials, and echoing
    any origin with them would hand every site the user's cookies for the service."""
    if settings.cors_allow_credentials and settings.cors_allowed_origins == ("*",):
        raise ConfigError(
            "CORS_ALLOW_CREDENTIALS: needs CORS_ALLOWED_ORIGINS to list origins, not '*'"
        )
