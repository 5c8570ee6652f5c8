"""Prometheus metrics: off by default, optionally behind a bearer token, and under gunicorn the
sum of both workers in every scrape, read back with prometheus_client's own parser."""

import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from support.tokens import BODY


def scrape(url: str, headers=None) -> dict:
    """GET /metrics and return {(sample name, sorted label pairs): value}."""
    request = urllib.request.Request(url + "/metrics", headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels) -> float:
    """One sample's value (0 when absent)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_are_off_by_default(client):
    """Without METRICS_ENABLED there is no /metrics route."""
    response = client.get("/metrics")
    assert (response.status_code, response.json["code"]) == (404, "not_found")


def test_metrics_bearer_token(make_app, serve):
    """With METRICS_BEARER_TOKEN, a scrape without it (or with another) is a JSON 401."""
    server = serve(make_app(METRICS_ENABLED="true", METRICS_BEARER_TOKEN="scrape-secret-1"))
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        with pytest.raises(urllib.error.HTTPError) as refused:
            scrape(server.url, headers)
        assert refused.value.code == 401
        assert refused.value.headers["Content-Type"] == "application/json"
        refused.value.close()
    samples = scrape(server.url, {"Authorization": "Bearer scrape-secret-1"})
    assert any(name == "tokensvc_requests_total" for name, _ in samples)


def test_jwks_fetches_are_counted(make_app, tenants, livekit):
    """A JWKS that cannot be reached counts one failed fetch (in-process registry, as a delta)."""

    def failed():
        return REGISTRY.get_sample_value("tokensvc_jwks_fetches_total", {"outcome": "failed"}) or 0

    before = failed()
    client = make_app(
        METRICS_ENABLED="true",
        AUTH_JWT_SECRET=None,
        AUTH_REQUIRED="true",
        AUTH_JWKS_URL="http://127.0.0.1:9/jwks.json",
        LIVEKIT_TIMEOUT="2",
    ).test_client()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode({"sub": "acme", "exp": 4102444800}, key, "RS256", headers={"kid": "k"})
    response = client.post(
        "/livekit/token", json=BODY, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 503
    assert failed() == before + 1


@pytest.mark.slow
def test_metrics_add_up_both_workers(make_gunicorn, tenants, livekit, tmp_path):
    """Known traffic spread over 2 workers (concurrent, one connection per request): both
    workers recorded some, and every scrape, whichever worker answers it, reports exactly all
    of it; no label carries a tenant id or a room name."""
    server = make_gunicorn(METRICS_ENABLED="true", PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    acme, globex = tenants.headers("acme"), tenants.headers("globex")
    livekit.add_room("taken", '{"auth_id": "umbrella"}')
    asks = (
        [({**BODY, "room_name": f"new-{n}"}, acme) for n in range(6)]
        + [({**BODY, "room_name": "taken"}, globex)] * 3  # 403
        + [({**BODY, "room_name": "open"}, {})] * 4  # anonymous
        + [({"room_name": "x"}, acme)] * 2
    )  # 400
    barrier = threading.Barrier(8)

    def post(ask):
        try:
            barrier.wait(timeout=5)
        except threading.BrokenBarrierError:
            pass
        return server.post("/livekit/token", *ask)[0]

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(post, asks))
        barrier = threading.Barrier(2)  # then acme's own room twice more: no new room
        statuses += pool.map(post, [({**BODY, "room_name": "new-0"}, acme)] * 2)
    assert sorted(statuses) == [200] * 12 + [400] * 2 + [403] * 3
    route = "/livekit/token"
    for _ in range(6):
        samples = scrape(server.url)
        assert value(samples, "tokensvc_requests_total", route=route, code="ok") == 12
        assert value(samples, "tokensvc_requests_total", route=route, code="room_forbidden") == 3
        assert value(samples, "tokensvc_requests_total", route=route, code="invalid_request") == 2
        assert value(samples, "tokensvc_request_duration_seconds_count", route=route) == 17
        assert value(samples, "tokensvc_tokens_issued_total", mode="tenant") == 8
        assert value(samples, "tokensvc_tokens_issued_total", mode="anonymous") == 4
        # acme's six new rooms and the one anonymous tokens use ("open")
        assert value(samples, "tokensvc_rooms_created_total") == 7
        # LiveKit is asked only for names the record did not hold yet: ListRooms for the six
        # new, "taken" and "open"; CreateRoom for the six new and "open".
        assert value(samples, "tokensvc_livekit_calls_total", method="ListRooms", outcome="ok") == 8
        assert (
            value(samples, "tokensvc_livekit_calls_total", method="CreateRoom", outcome="ok") == 7
        )
        assert (
            value(samples, "tokensvc_livekit_call_duration_seconds_count", method="CreateRoom") == 7
        )
    labels = {label for (_, pairs) in samples for label in pairs}
    assert not {value for _, value in labels} & {"acme", "globex", "umbrella", "taken", "new-0"}
    recorded = {path.stem.rsplit("_", 1)[1] for path in tmp_path.glob("counter_*.db")}
    assert {str(pid) for pid in server.workers()} <= recorded
