"""Liveness and readiness: no auth, no LiveKit for /healthz, a cached cheap call for /readyz."""

import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tokensvc.context import service_state


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
    """LiveKit unreachable or unconfigured: 503 JSON with its documented code, no secret."""
    livekit.refuse_connections()
    response = make_app().test_client().get("/readyz")
    assert (response.status_code, response.json["code"]) == (503, "livekit_unavailable")
    response = make_app(LIVEKIT_API_SECRET=None).test_client().get("/readyz")
    assert (response.status_code, response.json["code"]) == (503, "livekit_not_configured")
    assert "LIVEKIT_API_SECRET" in response.json["error"]


def test_concurrent_readyz_probes_share_one_check(make_app, serve, livekit):
    """Six probes at once with a slow LiveKit: one ListRooms; once a result exists, the probes
    that arrive during a re-check are answered from it before that check returns."""
    app = make_app(LIVEKIT_TIMEOUT="5")
    server = serve(app)
    readiness = service_state(app).readiness
    livekit.faults.latency = 0.5

    def probe_all():
        finished, check_done = [], threading.Event()
        livekit.after_next_call("ListRooms", check_done.set)

        def probe(_):
            with urllib.request.urlopen(server.url + "/readyz", timeout=30) as response:
                finished.append(check_done.is_set())
                return response.status

        with ThreadPoolExecutor(6) as pool:
            return list(pool.map(probe, range(6))), finished

    statuses, _ = probe_all()  # no result yet: all wait for the one first check
    assert statuses == [200] * 6 and livekit.calls == {"ListRooms": 1}
    readiness.cache_seconds = 0  # every probe now finds the result stale
    statuses, finished_after_check = probe_all()
    assert statuses == [200] * 6 and livekit.calls == {"ListRooms": 2}
    assert finished_after_check.count(False) == 5  # answered from the last result, not queued
