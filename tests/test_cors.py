"""CORS with flask-cors: headers on success, preflight and errors; a real browser obeys them."""

import json
import shutil
import subprocess

import pytest

from support.servers import StaticServer
from support.tokens import BODY
from tokensvc import ConfigError

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PAGE = """<!doctype html><html><body><p id="out">pending</p><script>
fetch(%(api)s, {method: "POST", headers: {"Authorization": %(auth)s,
  "Content-Type": "application/json"}, body: JSON.stringify(%(body)s)})
  .then(r => r.json().then(j => {
    document.getElementById("out").textContent = "status " + r.status + " " +
      (j.room_name || j.code) + " " + r.headers.get("X-Request-ID"); }))
  .catch(e => { document.getElementById("out").textContent = "blocked " + e.name; });
</script></body></html>"""


def test_no_cors_headers_when_unset(client):
    """With CORS_ALLOWED_ORIGINS unset, no CORS header is ever sent."""
    response = client.post("/livekit/token", json=BODY, headers={"Origin": "https://a.example"})
    assert not [h for h in response.headers.keys() if h.lower().startswith("access-control-")]


def test_preflight_allows_authorization(make_app):
    """Preflight from an allowed origin allows POST with Authorization and Content-Type."""
    client = make_app(CORS_ALLOWED_ORIGINS="https://a.example", AUTH_REQUIRED="true").test_client()
    response = client.options(
        "/livekit/token",
        headers={
            "Origin": "https://a.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "https://a.example"
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert "POST" in response.headers["Access-Control-Allow-Methods"]


def test_error_responses_carry_cors_headers(make_app):
    """A 401 to an allowed origin carries the headers, so the browser can read the error."""
    client = make_app(CORS_ALLOWED_ORIGINS="https://a.example", AUTH_REQUIRED="true").test_client()
    response = client.post("/livekit/token", json=BODY, headers={"Origin": "https://a.example"})
    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == "https://a.example"


def test_other_origin_gets_no_allow_header(make_app):
    """An origin not on the list gets no Access-Control-Allow-Origin."""
    client = make_app(CORS_ALLOWED_ORIGINS="https://a.example").test_client()
    response = client.post("/livekit/token", json=BODY, headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize(
    "origin",
    [
        "https://*.trusted.example",
        "https://app.trusted.example|https://x.example",
        "https://[a-z]+.trusted.example",
        "https://app.trusted.example$",
    ],
)
def test_wildcard_or_pattern_origin_is_refused_at_start_up(make_app, origin):
    """An origin flask-cors would read as a regular expression stops the app at start-up: with
    it, https://xtrusted.example.evil.com would pass and https://a.trusted.example would not."""
    with pytest.raises(ConfigError, match="CORS_ALLOWED_ORIGINS: list each origin exactly"):
        make_app(CORS_ALLOWED_ORIGINS=f"https://a.example,{origin}")


def test_pattern_lookalike_origins_are_refused_with_exact_origins(make_app):
    """With exact origins, a near-miss origin gets no CORS header (no pattern matching)."""
    client = make_app(CORS_ALLOWED_ORIGINS="https://a.trusted.example").test_client()
    for origin, allowed in (
        ("https://a.trusted.example", True),
        ("https://xtrusted.example.evil.com", False),
        ("https://a.trusted.example.evil.com", False),
    ):
        response = client.options(
            "/livekit/token", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
        )
        assert ("Access-Control-Allow-Origin" in response.headers) is allowed, origin


class PageServer(StaticServer):
    """One HTML page, set after start, on its own loopback origin."""

    def __init__(self):
        """Serve `self.html` at every path."""
        self.html = ""
        super().__init__(lambda: self.html, "text/html")


@pytest.fixture
def pages():
    """Two page servers: two distinct origins."""
    servers = [PageServer(), PageServer()]
    yield servers
    for server in servers:
        server.stop()


def browser_result(page_url: str, profile) -> str:
    """Load a page in headless Chromium and return what its script wrote."""
    run = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page_url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    start = run.stdout.find('<p id="out">')
    assert start >= 0, run.stdout[-500:] + run.stderr[-2000:]
    return run.stdout[start + len('<p id="out">') : run.stdout.index("</p>", start)]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make test installs it)")
def test_browser_fetch_allowed_and_blocked(make_app, serve, tenants, livekit, pages, tmp_path):
    """From an allowed origin the page gets its token; from another, the browser blocks it."""
    allowed, other = pages
    api = serve(make_app(CORS_ALLOWED_ORIGINS=allowed.url, AUTH_REQUIRED="true")).url
    for page, room in ((allowed, "browser-room"), (other, "blocked-room")):
        page.html = PAGE % {
            "api": json.dumps(api + "/livekit/token"),
            "auth": json.dumps(tenants.headers("acme")["Authorization"]),
            "body": json.dumps({**BODY, "room_name": room}),
        }
    assert browser_result(allowed.url, tmp_path / "a").startswith("status 200 browser-room ")
    assert browser_result(other.url, tmp_path / "b") == "blocked TypeError"
    assert livekit.get_room("blocked-room") is None  # the preflight stopped it before the POST
    assert livekit.get_room("browser-room") is not None
