"""PaaS fit: app.json documents every setting, the Procfile and gunicorn honour the platform."""

import dataclasses
import json
import re
import secrets
import time
import tomllib

import pytest

from support.processes import ROOT, GunicornProcess, base_environment, livekit_settings
from support.tokens import BODY, assert_no_secrets
from tokensvc.config import FILE_KEYS, KEYS, ServerSettings


def test_app_json_documents_every_setting():
    """Every setting the service reads is in app.json with a description and `required`."""
    document = json.loads((ROOT / "app.json").read_text())
    env = document["env"]
    assert set(KEYS) <= set(env)
    for name, spec in env.items():
        assert spec["description"] and isinstance(spec["required"], bool), name
    required = {name for name, spec in env.items() if spec["required"]}
    assert required == {"LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"}
    assert set(FILE_KEYS) <= set(KEYS)


def test_procfile_and_python_version():
    """The Procfile runs the package's console script: the service under gunicorn and the
    webhook worker; .python-version names the Python we test on."""
    assert (ROOT / "Procfile").read_text().splitlines() == [
        "web: tokensvc serve",
        "worker: tokensvc worker",
    ]
    assert (ROOT / ".python-version").read_text().strip() == "3.11"


@pytest.mark.slow
def test_web_concurrency_sets_the_worker_count(make_gunicorn, tenants):
    """WEB_CONCURRENCY=3: gunicorn runs three workers, and they serve."""
    server = make_gunicorn(WEB_CONCURRENCY="3")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(server.workers()) != 3:
        time.sleep(0.1)
    assert len(server.workers()) == 3
    assert server.post("/livekit/token", BODY, tenants.headers())[0] == 200


@pytest.mark.parametrize(("hops", "client"), [("0", "127.0.0.1"), ("1", "203.0.113.9")])
def test_proxy_fix_trusts_forwarded_headers_only_when_told(make_app, access_log, hops, client):
    """PROXY_FIX=1 takes the client address from X-Forwarded-For; 0 ignores the header."""
    app = make_app(PROXY_FIX=hops)
    app.test_client().post(
        "/livekit/token",
        json=BODY,
        headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"},
    )
    (line,) = access_log.fields()
    assert line["client"] == client


@pytest.mark.slow
def test_button_deploy_starts_with_app_json_defaults(livekit, tenants, free_port, storage_url):
    """Exactly what a one-click deploy sets (app.json's values and generated secrets, plus the
    required LiveKit settings the deployer fills in) starts the service, with auth required."""
    env = {}
    for name, spec in json.loads((ROOT / "app.json").read_text())["env"].items():
        if spec.get("generator") == "secret":
            env[name] = secrets.token_hex(32)  # what the platform's "secret" generator makes
        elif "value" in spec:
            env[name] = spec["value"]
    env.update(livekit_settings(livekit))
    # STORAGE_URL is empty in app.json (the instance folder's file); here this test's own file.
    env["STORAGE_URL"] = storage_url
    base = base_environment()
    server = GunicornProcess({**base, **env, "PORT": str(free_port)}, free_port)
    try:
        assert env["AUTH_REQUIRED"] == "true"
        assert server.post("/livekit/token", BODY)[0] == 401
        signed = tenants.headers("acme", secret=env["AUTH_JWT_SECRET"])
        assert server.post("/livekit/token", BODY, signed)[0] == 200
    finally:
        assert_no_secrets(server.close())


def test_a_host_installs_no_server_unless_it_asks():
    """`pip install tokensvc` brings no gunicorn, gevent or aiohttp of its own; the extras
    `server` (gunicorn within the versions the glue supports) and `testing` do."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(requirements):
        return {re.split(r"[<>=\[; ]", line.strip())[0].lower() for line in requirements}

    base = names(project["dependencies"])
    extras = {key: names(value) for key, value in project["optional-dependencies"].items()}
    assert not base & {"gunicorn", "gevent", "aiohttp", "redis"}
    assert {"flask", "livekit-api", "marshmallow", "pyjwt", "idna", "standardwebhooks"} <= base
    assert {"gunicorn", "gevent", "redis"} <= extras["server"]
    assert "aiohttp" in extras["testing"] and "redis" in extras["redis"]
    assert "gunicorn>=23,<28" in project["optional-dependencies"]["server"]


def test_configuration_reference_documents_every_setting():
    """docs/configuration.md names every key the service and gunicorn.conf.py read."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", text))
    server_keys = {item.name.upper() for item in dataclasses.fields(ServerSettings)}
    assert set(KEYS) | server_keys <= documented
