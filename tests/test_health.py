"""Liveness and readiness: no auth, no LiveKit for /healthz, a cached cheap call for /readyz."""

import pytest


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_healthz_needs_nothing(make_app, livekit, method):
    """200 {"status": "ok"} even with AUTH_REQUIRED and LiveKit down; LiveKit is never called."""
    client = make_app(AUTH_REQUIRED="true").test_client()
    livekit.refuse_connections()
    response = client.open("/healthz", method=method)
    assert response.status_code == 200
    if method == "GET":
        assert response.json == {"status": "ok"}
    assert livekit.call_count() == 0


def test_readyz_ready_and_cached(make_app, livekit):
    """Ready when LiveKit answers; repeated checks within a few seconds make one call."""
    client = make_app(AUTH_REQUIRED="true").test_client()
    for _ in range(5):
        response = client.get("/readyz")
        assert (response.status_code, response.json) == (200, {"status": "ready"})
    assert livekit.calls == {"ListRooms": 1}


def test_readyz_names_what_is_wrong(make_app, livekit):
    """LiveKit unreachable or unconfigured: 503 JSON with the SPEC code, no secret."""
    livekit.refuse_connections()
    response = make_app().test_client().get("/readyz")
    assert (response.status_code, response.json["code"]) == (503, "livekit_unavailable")
    response = make_app(LIVEKIT_API_SECRET=None).test_client().get("/readyz")
    assert (response.status_code, response.json["code"]) == (503, "livekit_not_configured")
    assert "LIVEKIT_API_SECRET" in response.json["error"]
