"""The deployable: `gunicorn app:app` with the documented environment serves tokens to curl."""

import http.client
import json
import shutil
import subprocess
from urllib.parse import urlsplit

import pytest

from support.racing import race
from support.tokens import BODY, verify_token


def curl(url, body, headers=()):
    """POST JSON with the real curl; return (status, parsed body)."""
    command = [
        "curl",
        "-s",
        "-w",
        "\n%{http_code}",
        "-X",
        "POST",
        url,
        "-H",
        "Content-Type: application/json",
        "-d",
        json.dumps(body),
    ]
    for header in headers:
        command += ["-H", header]
    output = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True).stdout
    text, status = output.rsplit("\n", 1)
    return int(status), json.loads(text)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_gunicorn_serves_tokens_to_curl(gunicorn, tenants, livekit):
    """Anonymous and tenant tokens over a real socket, through gunicorn workers."""
    status, body = curl(f"{gunicorn.url}/livekit/token", {**BODY, "room_name": "open"})
    assert status == 200
    assert verify_token(body["token"])[0].identity == BODY["participant_identity"]
    assert livekit.get_room("open").metadata == "{}"

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
    livekit.faults.latency = 0.02
    for round_no in range(10):
        results = race(gunicorn, tenants, f"worker-race-{round_no}")
        results.pop("overlapped")
        assert sorted(status for status, _ in results.values()) == [200, 403]
        winner = next(tenant for tenant, (status, _) in results.items() if status == 200)
        metadata = livekit.get_room(f"worker-race-{round_no}").metadata
        assert json.loads(metadata) == {"auth_id": winner}


def post_chunked(url: str, body: bytes, headers: dict) -> tuple[int, dict]:
    """POST `body` in 4 KiB chunks with no Content-Length; return (status, parsed body)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        chunks = (body[start : start + 4096] for start in range(0, len(body), 4096))
        connection.request(
            "POST",
            "/livekit/token",
            body=chunks,
            encode_chunked=True,
            headers={"Content-Type": "application/json", **headers},
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def padded(size: int) -> bytes:
    """A valid token request of exactly `size` bytes (an ignored field takes up the rest)."""
    bare = json.dumps({**BODY, "padding": ""}).encode()
    return json.dumps({**BODY, "padding": "x" * (size - len(bare))}).encode()


@pytest.mark.slow
def test_chunked_body_limit_is_the_same_as_with_content_length(gunicorn, tenants, livekit):
    """A chunked body over MAX_CONTENT_LENGTH (65536) is 413 payload_too_large, not a cut body's
    400; one of exactly the limit is served; LiveKit is not called for the refused one."""
    headers = tenants.headers("acme")
    status, body = post_chunked(gunicorn.url, padded(65537), headers)
    assert (status, body["code"]) == (413, "payload_too_large")
    assert livekit.call_count() == 0
    status, body = post_chunked(gunicorn.url, padded(65536), headers)
    assert status == 200 and body["room_name"] == BODY["room_name"]
