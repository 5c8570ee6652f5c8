"""The deployable: `gunicorn app:app` with the documented environment serves tokens to curl."""

import json
import shutil
import subprocess

import pytest

from conftest import BODY, verify_token


def curl(url, body, headers=()):
    """POST JSON with the real curl; return (status, parsed body)."""
    command = ["curl", "-s", "-w", "\n%{http_code}", "-X", "POST", url,
               "-H", "Content-Type: application/json", "-d", json.dumps(body)]
    for header in headers:
        command += ["-H", header]
    output = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True).stdout
    text, status = output.rsplit("\n", 1)
    return int(status), json.loads(text)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_gunicorn_serves_tokens_to_curl(gunicorn, tenants, livekit):
    """Unauthenticated and authenticated tokens over a real socket, through gunicorn workers."""
    status, body = curl(f"{gunicorn.url}/livekit/token", BODY)
    assert status == 200
    assert verify_token(body["token"])[0].identity == BODY["participant_identity"]
    assert livekit.call_count() == 0

    auth = f"Authorization: {tenants.headers('acme')['Authorization']}"
    status, body = curl(f"{gunicorn.url}/livekit/token", BODY, [auth])
    assert status == 200
    assert json.loads(livekit.get_room(BODY["room_name"]).metadata) == {"auth_id": "acme"}

    other = f"Authorization: {tenants.headers('globex')['Authorization']}"
    status, body = curl(f"{gunicorn.url}/livekit/token", BODY, [other])
    assert (status, body["code"]) == (403, "room_forbidden")


@pytest.mark.slow
def test_race_across_worker_processes(gunicorn, tenants, livekit):
    """Two tenants racing for new rooms through different gunicorn workers: one owner each time."""
    from test_concurrency import race

    livekit.faults.latency = 0.02
    for round_no in range(10):
        results = race(gunicorn, tenants, f"worker-race-{round_no}")
        assert sorted(status for status, _ in results.values()) == [200, 403]
        winner = next(tenant for tenant, (status, _) in results.items() if status == 200)
        metadata = livekit.get_room(f"worker-race-{round_no}").metadata
        assert json.loads(metadata) == {"auth_id": winner}
