"""The extension inside a host that has its own `health` and `openapi` blueprints and its own
error pages: no name collides, the service's paths answer JSON errors, the host keeps its own."""

import pytest
from flask import Blueprint, Flask, request

from support.tokens import BODY, LIVEKIT_KEY, LIVEKIT_SECRET, TENANT_SECRET, WEBHOOK_SECRETS_KEY
from tokensvc import TokenService
from tokensvc.context import service_state


@pytest.fixture
def host(livekit, storage_url):
    """A host app with blueprints named like the service's and HTML error pages of its own."""
    app = Flask("host")
    app.config.update(
        LIVEKIT_URL=livekit.ws_url,
        LIVEKIT_API_KEY=LIVEKIT_KEY,
        LIVEKIT_API_SECRET=LIVEKIT_SECRET,
        AUTH_JWT_SECRET=TENANT_SECRET,
        TENANT_WEBHOOK_SECRETS_KEY=WEBHOOK_SECRETS_KEY,
        STORAGE_URL=storage_url,
    )
    health, openapi = Blueprint("health", __name__), Blueprint("openapi", __name__)
    health.add_url_rule("/health", "ping", lambda: "host health")
    openapi.add_url_rule("/openapi", "doc", lambda: "host document")
    app.register_blueprint(health)
    app.register_blueprint(openapi)
    app.register_error_handler(404, lambda error: ("<h1>Host: not found</h1>", 404))
    app.register_error_handler(405, lambda error: ("<h1>Host: wrong method</h1>", 405))
    app.register_error_handler(500, lambda error: ("<h1>Host: broken</h1>", 500))

    @app.before_request
    def host_hook():
        """The host's own code failing on a request: one path breaks on purpose."""
        if request.path.endswith("/break"):
            raise RuntimeError("the host's hook failed")

    TokenService(app, url_prefix="/rtc")
    yield app
    service_state(app).close()


def test_host_blueprints_named_like_the_services_do_not_collide(host, tenants):
    """Both apps' `health` and `openapi` blueprints serve; the service's endpoints are nested
    under its one parent blueprint, "tokensvc"."""
    client = host.test_client()
    assert client.get("/health").get_data(as_text=True) == "host health"
    assert client.get("/openapi").get_data(as_text=True) == "host document"
    assert client.get("/rtc/healthz").json == {"status": "ok"}
    assert client.get("/rtc/openapi.json").json["openapi"].startswith("3.")
    response = client.post("/rtc/livekit/token", json=BODY, headers=tenants.headers("acme"))
    assert response.status_code == 200
    endpoints = {rule.endpoint for rule in host.url_map.iter_rules()}
    assert {"tokensvc.api.issue_token", "tokensvc.health.healthz", "health.ping"} <= endpoints
    assert {endpoint.split(".")[0] for endpoint in endpoints} == {
        "static",
        "health",
        "openapi",
        "tokensvc",
    }


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/rtc/livekit/no-such-route", 404, "not_found"),
        ("GET", "/rtc/livekit/token", 405, "method_not_allowed"),
        ("POST", "/rtc/healthz", 405, "method_not_allowed"),
        ("POST", "/rtc/livekit//token", 404, "not_found"),
        ("POST", "/rtc//livekit/token", 404, "not_found"),
        ("GET", "/rtc/livekit/rooms/break", 500, "internal_error"),
    ],
)
def test_the_services_paths_answer_json_errors(host, tenants, livekit, method, path, status, code):
    """404, 405, a doubled slash and a failure on the service's paths: its JSON error, never
    the host's page or a redirect, and nothing written to LiveKit."""
    response = host.test_client().open(path, method=method, json=BODY, headers=tenants.headers())
    assert (response.status_code, response.mimetype) == (status, "application/json")
    assert response.json["code"] == code
    assert "Location" not in response.headers
    assert livekit.call_count() == 0


@pytest.mark.parametrize(
    ("method", "path", "page"),
    [
        ("GET", "/no-such-page", "<h1>Host: not found</h1>"),
        ("POST", "/health", "<h1>Host: wrong method</h1>"),
        ("GET", "/elsewhere/break", "<h1>Host: broken</h1>"),
    ],
)
def test_the_hosts_paths_keep_the_hosts_error_pages(host, method, path, page):
    """Elsewhere the host's own error pages answer, the service's JSON never does."""
    response = host.test_client().open(path, method=method)
    assert response.get_data(as_text=True) == page
    assert response.mimetype == "text/html"


def test_metrics_disabled_is_the_services_json_404_not_the_hosts_page(host):
    """GET <prefix>/metrics without METRICS_ENABLED: the service's JSON 404, although the host
    has a 404 page of its own (Flask picks handlers by status code before class)."""
    response = host.test_client().get("/rtc/metrics")
    assert (response.status_code, response.json["code"]) == (404, "not_found")


def bare_host(livekit, storage_url, **config):
    """A host app whose settings are all `TOKENSVC_*` keys, plus `config`."""
    app = Flask("host")
    app.config.update(
        TOKENSVC_LIVEKIT_URL=livekit.ws_url,
        TOKENSVC_LIVEKIT_API_KEY=LIVEKIT_KEY,
        TOKENSVC_LIVEKIT_API_SECRET=LIVEKIT_SECRET,
        TOKENSVC_AUTH_JWT_SECRET=TENANT_SECRET,
        TOKENSVC_TENANT_WEBHOOK_SECRETS_KEY=WEBHOOK_SECRETS_KEY,
        TOKENSVC_STORAGE_URL=storage_url,
        **config,
    )
    return app


def test_prefixed_settings_and_the_hosts_own_body_limit(livekit, storage_url, tenants):
    """Settings come from `TOKENSVC_*` keys (they win over a plain key); Flask's own
    MAX_CONTENT_LENGTH stays the host's and never the service's limit."""
    app = bare_host(
        livekit, storage_url, MAX_CONTENT_LENGTH=1 << 20, TOKEN_TTL="60", TOKENSVC_TOKEN_TTL="120"
    )
    TokenService(app, url_prefix="/rtc")
    state = service_state(app)
    try:
        assert state.settings.token_ttl == 120 and state.settings.auth_configured
        assert state.settings.max_content_length == 65536
        big = {**BODY, "pad": "x" * 70000}
        response = app.test_client().post("/rtc/livekit/token", json=big, headers=tenants.headers())
        assert (response.status_code, response.json["code"]) == (413, "payload_too_large")
    finally:
        state.close()
    limited = bare_host(livekit, storage_url, TOKENSVC_MAX_CONTENT_LENGTH="1024")
    TokenService(limited)
    try:
        assert service_state(limited).settings.max_content_length == 1024
        assert limited.config.get("MAX_CONTENT_LENGTH") is None  # the host's, untouched
    finally:
        service_state(limited).close()


def collisions(caplog) -> list[str]:
    """The route-collision warnings logged so far."""
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("route collision")]


def test_a_host_route_registered_later_is_reported_once(livekit, storage_url, caplog):
    """A host's /healthz registered after the service (no prefix): the first request logs one
    warning naming both endpoints and the one that answers; later requests log nothing more."""
    app = bare_host(livekit, storage_url)
    TokenService(app)
    app.add_url_rule("/healthz", "host_health", lambda: "host health")
    assert collisions(caplog) == []
    client = app.test_client()
    answer = client.get("/healthz")
    client.get("/healthz")
    (warning,) = collisions(caplog)
    assert "GET /healthz" in warning and "(host_health)" in warning
    assert "(tokensvc.health.healthz)" in warning
    owner = "the service's" if answer.is_json else "the host's"
    assert f"; {owner} answers" in warning
    service_state(app).close()


def test_a_host_route_registered_before_is_reported_at_start(livekit, storage_url, caplog):
    """A host's POST /livekit/token registered before the service: warned of in init_app; a host
    with no shared path gets no warning."""
    app = bare_host(livekit, storage_url)
    app.add_url_rule("/livekit/token", "host_token", lambda: "host", methods=["POST"])
    app.add_url_rule("/home", "home", lambda: "home")
    TokenService(app)
    (warning,) = collisions(caplog)
    assert "POST /livekit/token" in warning and "(host_token)" in warning
    assert "(tokensvc.api.issue_token)" in warning
    service_state(app).close()
    clean = bare_host(livekit, storage_url)
    clean.add_url_rule("/home", "home", lambda: "home")
    TokenService(clean, url_prefix="/rtc")
    clean.test_client().get("/home")
    assert len(collisions(caplog)) == 1
    service_state(clean).close()
