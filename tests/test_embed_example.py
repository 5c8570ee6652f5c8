"""The embedding example (examples/embed): the blueprint under /api/rtc, the host untouched."""

import json
import sys
from pathlib import Path

import pytest

from conftest import BODY, LIVEKIT_KEY, LIVEKIT_SECRET, TENANT_SECRET

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples" / "embed"))
from host import create_host_app  # noqa: E402


@pytest.fixture
def host(livekit):
    """The host app wired to the emulator."""
    app = create_host_app({"LIVEKIT_URL": livekit.ws_url, "LIVEKIT_API_KEY": LIVEKIT_KEY,
                           "LIVEKIT_API_SECRET": LIVEKIT_SECRET, "AUTH_JWT_SECRET": TENANT_SECRET})
    yield app
    app.extensions["tokensvc"].close()


def test_token_route_is_mounted_under_the_prefix(host, tenants, livekit):
    """POST /api/rtc/livekit/token works, with ownership, and the bare path does not exist."""
    client = host.test_client()
    response = client.post("/api/rtc/livekit/token", json=BODY, headers=tenants.headers("acme"))
    assert response.status_code == 200
    assert json.loads(livekit.get_room(BODY["room_name"]).metadata) == {"auth_id": "acme"}
    assert client.post("/livekit/token", json=BODY).status_code == 404
    assert client.get("/api/rtc/healthz").json == {"status": "ok"}


def test_host_keeps_its_own_routes_and_limits(host):
    """The host's routes keep working and unlimited; the service's routes get its 64 KiB."""
    client = host.test_client()
    assert client.get("/").get_data(as_text=True) == "<h1>Host site</h1>"
    assert client.post("/upload", data=b"x" * 200000).json == {"received": 200000}
    big = {**BODY, "pad": "x" * 70000}
    response = client.post("/api/rtc/livekit/token", json=big)
    assert (response.status_code, response.json["code"]) == (413, "payload_too_large")


def test_errors_on_the_service_routes_are_json(host, tenants):
    """Errors raised on the mounted routes are the service's JSON errors."""
    client = host.test_client()
    response = client.post("/api/rtc/livekit/token", data="x", content_type="text/plain")
    assert (response.status_code, response.json["code"]) == (415, "unsupported_media_type")
