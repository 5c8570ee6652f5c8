"""The ownership record's storage seen through the service: a storage that is down (503
storage_unavailable, nothing written to LiveKit), its calls in /metrics, the default file, a
URL that cannot be used, a Redis that may evict; the store's own contract is
tests/storage/test_hold_store.py."""

import logging
import os
import shutil
import signal
import time

import pytest

from support.processes import RedisServer, unavailable
from support.tokens import BODY
from tokensvc.context import service_state
from tokensvc.testing.processes import find_free_port


def test_storage_down_is_503_with_nothing_written(make_app, tenants, livekit, caplog):
    """A Redis that refuses connections: 503 storage_unavailable well within the bound, LiveKit
    never called, one warning naming the storage host (no URL, no secret): the first read, the
    tenant's record (its status: it fails closed), fails."""
    url = f"redis://:a-redis-password@127.0.0.1:{find_free_port()}/0"
    client = make_app(STORAGE_URL=url, STORAGE_TIMEOUT="0.5").test_client()
    starting = [r.getMessage() for r in caplog.records if "did not answer" in r.getMessage()]
    assert starting == [
        "starting: the storage at 127.0.0.1 did not answer; /readyz checks it again"
    ]
    caplog.clear()
    started = time.monotonic()
    response = client.post("/livekit/token", json=BODY, headers=tenants.headers("acme"))
    assert time.monotonic() - started < 2.0
    assert (response.status_code, response.json["code"]) == (503, "storage_unavailable")
    assert livekit.calls == {} and livekit.get_room(BODY["room_name"]) is None
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "storage" in r.getMessage()
    ]
    assert warnings == ["storage at 127.0.0.1 failed in get (ConnectionError)"]
    assert "a-redis-password" not in response.get_data(as_text=True)


def test_storage_that_stops_answering_is_503_within_the_timeout(
    make_app, tenants, livekit, redis_server
):
    """A Redis that accepts but never answers (stopped with SIGSTOP): 503 after STORAGE_TIMEOUT,
    nothing written to LiveKit; it answers again once resumed. The claim it ran after resuming
    holds the name's creation lock, whose answer was lost: that name is 503 room_busy (with
    Retry-After) until the lock expires, like a crashed creator's; other names are served."""
    client = make_app(
        STORAGE_URL=redis_server.url, STORAGE_TIMEOUT="0.5", LIVEKIT_TIMEOUT="0.2"
    ).test_client()
    assert client.post("/livekit/token", json=BODY, headers=tenants.headers()).status_code == 200
    livekit.calls.clear()
    redis_server.pause()
    try:
        started = time.monotonic()
        response = client.post(
            "/livekit/token", json={**BODY, "room_name": "other"}, headers=tenants.headers()
        )
        elapsed = time.monotonic() - started
    finally:
        redis_server.resume()
    assert (response.status_code, response.json["code"]) == (503, "storage_unavailable")
    assert 0.4 < elapsed < 2.0
    assert livekit.calls == {} and livekit.get_room("other") is None
    again = client.post(
        "/livekit/token", json={**BODY, "room_name": "other"}, headers=tenants.headers()
    )
    assert (again.status_code, again.json["code"]) == (503, "room_busy")
    assert 1 <= int(again.headers["Retry-After"]) <= 40
    fresh = client.post(
        "/livekit/token", json={**BODY, "room_name": "another"}, headers=tenants.headers()
    )
    assert fresh.status_code == 200


def test_storage_calls_are_in_metrics_without_tenant_or_room(make_app, tenants):
    """/metrics counts storage calls by operation and outcome, with no tenant or room label."""
    client = make_app(METRICS_ENABLED="true").test_client()
    client.post(
        "/livekit/token",
        json={**BODY, "room_name": "metrics-room"},
        headers=tenants.headers("metrics-tenant"),
    )
    text = client.get("/metrics").get_data(as_text=True)
    claims = [
        line for line in text.splitlines() if line.startswith("tokensvc_storage_calls_total{")
    ]
    assert any('operation="claim"' in line and 'outcome="ok"' in line for line in claims)
    assert any('operation="verify"' in line for line in claims)
    assert "metrics-tenant" not in text and "metrics-room" not in text


def test_default_storage_is_a_file_in_the_instance_folder(make_app):
    """STORAGE_URL unset: a SQLite file named tokensvc.sqlite3 in the app's instance folder."""
    app = make_app(STORAGE_URL=None)
    assert (
        service_state(app).issuer.ownership.holds.where == f"{app.instance_path}/tokensvc.sqlite3"
    )


@pytest.mark.parametrize(
    "url, message",
    [
        ("memory://", "STORAGE_URL: expected sqlite:///path or a redis://"),
        ("postgres://db/x", "STORAGE_URL: expected sqlite:///path or a redis://"),
        ("sqlite://", "STORAGE_URL: a sqlite URL names a file"),
    ],
)
def test_unusable_storage_url_stops_start_up(make_app, url, message):
    """A STORAGE_URL of another kind stops the service at start-up, naming the setting."""
    from tokensvc import ConfigError

    with pytest.raises(ConfigError, match=message):
        make_app(STORAGE_URL=url)


@pytest.mark.slow
def test_every_worker_sees_the_same_holds_and_a_restart_keeps_them(make_gunicorn, tenants, livekit):
    """gunicorn with 2 workers on the embedded store: with only one worker running at a time
    (the other stopped), each refuses globex acme's name; after a restart on the same file the
    hold is still there, and acme's next token costs no LiveKit call."""
    server = make_gunicorn()
    assert server.post("/livekit/token", BODY, tenants.headers("acme"))[0] == 200
    deadline = time.monotonic() + 10
    while len(server.workers()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = server.workers()
    assert len(workers) == 2
    for serving in workers:
        others = [pid for pid in workers if pid != serving]
        for pid in others:
            os.kill(pid, signal.SIGSTOP)
        try:
            livekit.calls.clear()
            status, body, _ = server.post(
                "/livekit/token", BODY, tenants.headers("globex"), timeout=10
            )
            assert (status, body["code"]) == (403, "room_forbidden")
            assert livekit.calls == {}
        finally:
            for pid in others:
                os.kill(pid, signal.SIGCONT)
    server.close()
    livekit.close_room(BODY["room_name"])
    restarted = make_gunicorn()
    livekit.calls.clear()
    assert restarted.post("/livekit/token", BODY, tenants.headers("globex"))[1]["code"] == (
        "room_forbidden"
    )
    assert livekit.calls == {}
    assert restarted.post("/livekit/token", BODY, tenants.headers("acme"))[0] == 200
    assert livekit.calls == {}


def test_a_redis_that_may_evict_stops_start_up(make_app):
    """STORAGE_URL on a Redis with allkeys-lru: the service refuses to start, naming it."""
    from tokensvc import ConfigError

    server = RedisServer(
        shutil.which("redis-server") or unavailable("no redis-server"),
        find_free_port(),
        "--maxmemory-policy",
        "allkeys-lru",
    ).start()
    try:
        with pytest.raises(ConfigError, match="STORAGE_URL: .*maxmemory-policy allkeys-lru"):
            make_app(STORAGE_URL=server.url)
    finally:
        server.stop()
