"""The embedding example (examples/embed): the blueprint under /api/rtc, the host untouched."""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from support.processes import ROOT, livekit_settings
from support.servers import HttpService
from support.tokens import BODY, LIVEKIT_KEY, LIVEKIT_SECRET, TENANT_SECRET, assert_no_secrets
from tokensvc.context import service_state

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples" / "embed"))
from host import create_app as create_host_app  # noqa: E402


@pytest.fixture
def host(livekit, storage_url):
    """The host app wired to the emulator."""
    app = create_host_app(
        {
            "LIVEKIT_URL": livekit.ws_url,
            "LIVEKIT_API_KEY": LIVEKIT_KEY,
            "LIVEKIT_API_SECRET": LIVEKIT_SECRET,
            "AUTH_JWT_SECRET": TENANT_SECRET,
            "STORAGE_URL": storage_url,
        }
    )
    yield app
    service_state(app).close()


def test_token_route_is_mounted_under_the_prefix(host, tenants, livekit):
    """POST /api/rtc/livekit/token works, with ownership, and the bare path does not exist."""
    client = host.test_client()
    response = client.post("/api/rtc/livekit/token", json=BODY, headers=tenants.headers("acme"))
    assert response.status_code == 200
    assert json.loads(livekit.get_room(BODY["room_name"]).metadata) == {"auth_id": "acme"}
    assert client.post("/livekit/token", json=BODY).status_code == 404
    assert client.get("/api/rtc/healthz").json == {"status": "ok"}


def test_host_keeps_its_own_routes_and_limits(host, tenants):
    """The host's routes keep working and unlimited; the service's routes get its 64 KiB."""
    client = host.test_client()
    assert client.get("/").get_data(as_text=True) == "<h1>Host site</h1>"
    assert client.post("/upload", data=b"x" * 200000).json == {"received": 200000}
    big = {**BODY, "pad": "x" * 70000}
    response = client.post("/api/rtc/livekit/token", json=big, headers=tenants.headers())
    assert (response.status_code, response.json["code"]) == (413, "payload_too_large")


def test_errors_on_the_service_routes_are_json(host, tenants):
    """Errors raised on the mounted routes are the service's JSON errors."""
    client = host.test_client()
    response = client.post(
        "/api/rtc/livekit/token", data="x", content_type="text/plain", headers=tenants.headers()
    )
    assert (response.status_code, response.json["code"]) == (415, "unsupported_media_type")
    anonymous = client.post("/api/rtc/livekit/token", json=BODY)
    assert (anonymous.status_code, anonymous.json["code"]) == (401, "unauthorized")


@pytest.mark.slow
def test_example_runs_as_documented(livekit, free_port, storage_url):
    """`flask --app examples/embed/host.py run` serves the token route under /api/rtc; the
    documented `tenant-token` command mints with the host's own key; access lines are written."""
    flask = [str(Path(sys.executable).parent / "flask"), "--app", "examples/embed/host.py"]
    env = {**os.environ, **livekit_settings(livekit), "STORAGE_URL": storage_url}
    token = subprocess.run(
        flask + ["tenant-token", "--tenant", "acme"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    output = tempfile.TemporaryFile(mode="w+")
    server = subprocess.Popen(
        flask + ["run", "--port", str(free_port)],
        cwd=ROOT,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    try:
        service = HttpService()
        service.url = f"http://127.0.0.1:{free_port}/api/rtc"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                status, body, _ = service.post(
                    "/livekit/token", BODY, {"Authorization": f"Bearer {token}"}
                )
                break
            except OSError:
                time.sleep(0.2)
        assert status == 200 and body["room_name"] == BODY["room_name"]
        assert json.loads(livekit.get_room(BODY["room_name"]).metadata) == {"auth_id": "acme"}
    finally:
        server.terminate()
        server.wait(30)
        output.seek(0)
        printed = output.read()
        output.close()
    assert_no_secrets(printed)
    access = [json.loads(line) for line in printed.splitlines() if line.startswith("{")]
    assert [(line["path"], line["status"]) for line in access] == [("/api/rtc/livekit/token", 200)]
