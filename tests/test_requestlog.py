"""Request ids and one parseable access line per request, with no token or secret in it."""

import json
import logging

import pytest

from conftest import BODY


def access_lines(caplog):
    """The access log lines captured so far."""
    return [r.getMessage() for r in caplog.records if r.name == "tokensvc.access"]


def test_request_id_is_generated_and_echoed(client):
    """Without X-Request-ID, a fresh id is made and returned."""
    first = client.post("/livekit/token", json=BODY).headers["X-Request-ID"]
    second = client.post("/livekit/token", json=BODY).headers["X-Request-ID"]
    assert len(first) == 32 and first != second


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [("req-123.abc:7", True), ("x" * 128, True), ("x" * 129, False), ("a b", False),
     ("<script>", False), ("", False)],
)
def test_incoming_request_id_kept_only_if_sane(client, incoming, kept):
    """A sane X-Request-ID is honoured; anything else is replaced."""
    echoed = client.post("/livekit/token", json=BODY, headers={"X-Request-ID": incoming})
    assert (echoed.headers["X-Request-ID"] == incoming) is kept


def test_json_access_line(client, tenants, livekit, caplog):
    """One JSON line per request: id, method, path, status, tenant, room, outcome, calls, time."""
    caplog.set_level(logging.INFO, "tokensvc.access")
    response = client.post("/livekit/token", json=BODY, headers={
        **tenants.headers("acme"), "X-Request-ID": "trace-1"})
    forbidden = client.post("/livekit/token", json=BODY, headers=tenants.headers("globex"))
    lines = [json.loads(line) for line in access_lines(caplog)]
    assert len(lines) == 2
    ok, refused = lines
    assert ok["request_id"] == "trace-1" == response.headers["X-Request-ID"]
    assert (ok["method"], ok["path"], ok["status"], ok["outcome"]) == (
        "POST", "/livekit/token", 200, "ok")
    assert (ok["tenant"], ok["room"], ok["livekit_calls"]) == ("acme", BODY["room_name"], 2)
    assert ok["duration_ms"] > 0
    assert (refused["status"], refused["outcome"], refused["livekit_calls"]) == (
        403, "room_forbidden", 1)
    assert refused["request_id"] == forbidden.headers["X-Request-ID"]


def test_logfmt_access_line(make_app, caplog):
    """LOG_FORMAT=logfmt: key=value pairs, quoted where needed."""
    caplog.set_level(logging.INFO, "tokensvc.access")
    client = make_app(LOG_FORMAT="logfmt").test_client()
    client.post("/livekit/token", json={**BODY, "room_name": "a room"})
    client.post("/livekit/token", data="{", content_type="application/json")
    ok, bad = access_lines(caplog)
    assert {"method=POST", "path=/livekit/token", "client=127.0.0.1", "status=200"} <= set(ok.split())
    assert 'room="a room"' in ok and "outcome=ok" in ok and "livekit_calls=0" in ok
    assert "status=400" in bad and "outcome=invalid_request" in bad


def test_unauthorized_request_is_logged_without_the_token(client, caplog, tenants):
    """A refused bearer token is logged as unauthorized; the token itself never appears."""
    caplog.set_level(logging.INFO, "tokensvc.access")
    token = tenants.token("acme", secret="x" * 64)
    client.post("/livekit/token", json=BODY, headers={"Authorization": f"Bearer {token}"})
    (line,) = access_lines(caplog)
    assert json.loads(line)["outcome"] == "unauthorized"
    assert token not in line and "Bearer" not in line
