"""LiveKit missing, failing, slow, unreachable or answering garbage: the documented codes, never
a hang."""

import time

import pytest

from support.tokens import BODY


@pytest.mark.parametrize("missing", ["LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"])
def test_livekit_not_configured(make_app, tenants, missing):
    """Any LiveKit setting absent: the service starts, and the token route answers 500."""
    app = make_app(**{missing: None})
    for headers in ({}, tenants.headers()):
        response = app.test_client().post("/livekit/token", json=BODY, headers=headers)
        assert response.status_code == 500
        assert response.json["code"] == "livekit_not_configured"
        assert missing in response.json["error"]


@pytest.mark.parametrize("code", ["internal", "unavailable", "unknown"])
def test_livekit_5xx_is_502(client, tenants, livekit, code):
    """LiveKit answers a Twirp 5xx error: 502 livekit_error."""
    livekit.faults.error = code
    response = tenants.ask(client)
    assert response.status_code == 502
    assert response.json["code"] == "livekit_error"


def test_livekit_4xx_is_502_and_not_retried(client, tenants, livekit):
    """A Twirp 4xx (say, permission denied) is LiveKit's error too: 502, after one call that
    is never retried."""
    livekit.faults.error = "permission_denied"
    assert tenants.ask(client).json["code"] == "livekit_error"
    assert livekit.calls == {"ListRooms": 1}


def test_wrong_api_secret_is_502(make_app, tenants, livekit):
    """LiveKit refusing the service's own API key pair is a LiveKit error, reported as 502."""
    client = make_app(LIVEKIT_API_SECRET="not-the-right-secret-but-long-enough-0123").test_client()
    response = tenants.ask(client)
    assert response.status_code == 502
    assert "not-the-right-secret" not in response.get_data(as_text=True)


def test_malformed_200_body_is_502(client, tenants, livekit):
    """A 200 whose body is not protobuf: 502 livekit_error."""
    livekit.faults.malformed = True
    response = tenants.ask(client)
    assert response.status_code == 502
    assert response.json["code"] == "livekit_error"


def test_refused_connection_is_503_and_recovery_is_immediate(client, tenants, livekit):
    """LiveKit down: 503 livekit_unavailable; back up: the very next request succeeds."""
    assert tenants.ask(client, room="warm-up").status_code == 200
    livekit.refuse_connections()
    response = tenants.ask(client)
    assert response.status_code == 503
    assert response.json["code"] == "livekit_unavailable"
    livekit.accept_connections()
    assert tenants.ask(client).status_code == 200


def test_slow_livekit_is_504_within_the_timeout(make_app, tenants, livekit):
    """LiveKit slower than LIVEKIT_TIMEOUT: 504 livekit_timeout after about that long."""
    client = make_app(LIVEKIT_TIMEOUT="0.3").test_client()
    livekit.faults.latency = 2.0
    started = time.monotonic()
    response = tenants.ask(client)
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert response.json["code"] == "livekit_timeout"
    assert elapsed < 0.3 + 0.5
    livekit.faults.latency = 0
    assert tenants.ask(client, room="after-timeout").status_code == 200


def test_refused_connection_is_503_saying_so(make_app, tenants, caplog):
    """Nothing listening at LIVEKIT_URL: 503 saying the connection was refused (not a timeout),
    and a warning line naming the host."""
    client = make_app(LIVEKIT_URL="http://127.0.0.1:9").test_client()
    response = tenants.ask(client)
    assert (response.status_code, response.json["code"]) == (503, "livekit_unavailable")
    assert response.json["error"] == "LiveKit could not be reached (connection refused)"
    assert [
        r.getMessage()
        for r in caplog.records
        if r.levelname == "WARNING" and "could not be reached" in r.getMessage()
    ] == ["LiveKit at 127.0.0.1:9 could not be reached: connection refused"]


def test_errors_never_leak_secrets_or_tokens(make_app, tenants, livekit):
    """No API secret, tenant secret or tenant token appears in any error body."""
    from support.tokens import LIVEKIT_SECRET, TENANT_SECRET

    client = make_app().test_client()
    headers = tenants.headers()
    livekit.faults.error = "internal"
    bodies = [tenants.ask(client).get_data(as_text=True)]
    livekit.faults.error = None
    livekit.faults.malformed = True
    bodies.append(client.post("/livekit/token", json=BODY, headers=headers).get_data(as_text=True))
    bad = {"Authorization": headers["Authorization"] + "x"}
    bodies.append(client.post("/livekit/token", json=BODY, headers=bad).get_data(as_text=True))
    token = headers["Authorization"].split()[1]
    for body in bodies:
        assert LIVEKIT_SECRET not in body and TENANT_SECRET not in body and token not in body


def test_token_generation_failure_is_500(make_app, livekit):
    """A LiveKit secret PyJWT refuses to sign with (a pasted PEM key): 500, no key in the body."""
    pem = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----"
    client = make_app(LIVEKIT_API_SECRET=pem).test_client()
    response = client.post("/livekit/token", json=BODY)
    assert response.status_code == 500
    assert response.json["code"] == "token_generation_failed"
    assert "BEGIN PUBLIC KEY" not in response.get_data(as_text=True)
