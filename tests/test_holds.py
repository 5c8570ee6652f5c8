"""The ownership record on both backends: atomic claims, compare-and-set, the per-name lock,
expiry, and a storage that is down (503 storage_unavailable, nothing written to LiveKit)."""

import logging
import os
import signal
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from support.tokens import BODY
from tokensvc.holds import EXTEND_SLACK_MS, RETENTION_MS, Hold, now_ms, open_holds, sqlite_path
from tokensvc.context import service_state
from tokensvc.testing.processes import find_free_port

SLACK = EXTEND_SLACK_MS


@pytest.fixture(params=["sqlite", "redis"])
def holds(request, tmp_path):
    """An empty hold store on each backend (Redis: a real redis-server on loopback)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/holds.sqlite3"
    else:
        url = request.getfixturevalue("redis_server").url
    store = open_holds(url, timeout=2.0)
    yield store
    store.close()


def test_claim_gives_a_free_name_and_refuses_a_held_one(holds):
    """The first claimant holds the name; another gets the hold as it is; nothing changes."""
    until = now_ms() + 60_000
    held = until + SLACK  # a hold is made (and extended) a little longer than asked
    assert holds.claim("room", "acme", until) == Hold("acme", held, False, pending=True)
    assert holds.claim("room", "globex", until + 5) == Hold("acme", held, False, True)
    assert holds.get("room") == Hold("acme", held, False, True)
    holds.verify("room", "globex")  # not globex's: nothing changes
    assert holds.get("room").pending
    holds.verify("room", "acme")
    assert holds.get("room") == Hold("acme", held, False, False)


def test_claim_extends_the_holders_own_hold_and_never_shortens_it(holds):
    """The holder's claim moves `until` forward only, clears the gone mark and keeps pending."""
    until = now_ms() + 60_000
    held = until + SLACK
    first = holds.claim("room", "acme", until)
    assert holds.mark_gone("room", first, until)
    assert holds.get("room") == Hold("acme", held, True, True)
    assert holds.claim("room", "acme", until - 1000) == Hold("acme", held, False, True)
    holds.verify("room", "acme")
    # Long enough already: nothing is written; past it, extended with the slack again.
    assert holds.claim("room", "acme", until + 1000) == Hold("acme", held, False, False)
    assert holds.claim("room", "acme", held + 1) == Hold("acme", held + 1 + SLACK, False, False)


def test_compare_and_set_applies_only_to_the_hold_as_seen(holds):
    """mark_gone, transfer and drop change nothing once the hold changed since it was read."""
    until = now_ms() + 60_000
    seen = holds.claim("room", "acme", until)
    holds.claim("room", "acme", until + SLACK + 1)  # the holder got a token meanwhile
    assert not holds.mark_gone("room", seen, until + 10)
    assert not holds.transfer("room", seen, "globex", until + 10, False)
    assert not holds.drop("room", seen)
    current = holds.get("room")
    assert current == Hold("acme", until + 2 * SLACK + 1, False, True)
    holds.verify("room", "acme")
    assert not holds.transfer("room", current, "globex", until + 10, False)  # pending changed
    current = holds.get("room")
    assert holds.transfer("room", current, "globex", until + 10, True)
    assert holds.get("room") == Hold("globex", until + 10, False, True)
    assert not holds.transfer("other", current, "globex", until, False)  # no record to change
    assert holds.transfer("other", None, "globex", until, False)
    assert not holds.transfer("other", None, "acme", until, False)
    assert holds.drop("other", holds.get("other")) and holds.get("other") is None


def test_concurrent_claims_give_the_name_to_exactly_one(holds):
    """Sixteen claimants at once, over 20 names: each name has exactly one holder, and only that
    holder was told it holds it."""
    until = now_ms() + 60_000

    def claim(pair):
        name, tenant = pair
        return name, tenant, holds.claim(name, tenant, until)

    asks = [(f"name-{n}", f"tenant-{t}") for n in range(20) for t in range(16)]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(claim, asks))
    for name in {name for name, _ in asks}:
        winners = {tenant for n, tenant, hold in results if n == name and hold.holder == tenant}
        assert len(winners) == 1
        assert holds.get(name).holder == winners.pop()


def test_lock_is_exclusive_released_only_by_its_holder_and_expires(holds):
    """One lock per name; a wrong token does not release it; it expires by itself."""
    token = holds.lock("room", 300)
    assert token is not None
    assert holds.lock("room", 300) is None
    assert holds.lock("other-room", 300) is not None
    holds.unlock("room", "not-the-token")
    assert holds.lock("room", 300) is None
    holds.unlock("room", token)
    second = holds.lock("room", 200)
    assert second is not None
    time.sleep(0.3)
    assert holds.lock("room", 200) is not None


def test_sqlite_sweep_removes_records_long_expired(tmp_path):
    """Records past `until` + the retention are deleted by the sweep; others stay."""
    url = f"sqlite:///{tmp_path}/holds.sqlite3"
    store = open_holds(url, timeout=2.0)
    old = now_ms() - RETENTION_MS - SLACK - 1000
    store.claim("old", "acme", old)
    store.claim("recent", "acme", now_ms() - 1000)
    store.store._swept_at = 0.0  # the next write sweeps (it runs at most once a minute)
    store.claim("new", "acme", now_ms() + 1000)
    with sqlite3.connect(sqlite_path(url)) as db:
        names = sorted(row[0] for row in db.execute("SELECT name FROM holds"))
    assert names == ["new", "recent"]
    store.close()


def test_redis_records_expire_with_the_retention(redis_server):
    """Every Redis hold carries an expiry of `until` + the retention: storage does not grow."""
    import redis

    store = open_holds(redis_server.url, timeout=2.0)
    until = now_ms() + 60_000
    store.claim("room", "acme", until)
    client = redis.Redis.from_url(redis_server.url)
    expires_at = client.pexpiretime("tokensvc:hold:room")
    assert abs(expires_at - (until + SLACK + RETENTION_MS)) < 5
    assert client.pttl("tokensvc:lock:room") == -2
    store.lock("room", 5000)
    assert 0 < client.pttl("tokensvc:lock:room") <= 5000
    store.close()


def test_storage_down_is_503_with_nothing_written(make_app, tenants, livekit, caplog):
    """A Redis that refuses connections: 503 storage_unavailable well within the bound, LiveKit
    never called, one warning naming the storage host (no URL, no secret)."""
    url = f"redis://:a-redis-password@127.0.0.1:{find_free_port()}/0"
    client = make_app(STORAGE_URL=url, STORAGE_TIMEOUT="0.5").test_client()
    started = time.monotonic()
    response = client.post("/livekit/token", json=BODY, headers=tenants.headers("acme"))
    assert time.monotonic() - started < 2.0
    assert (response.status_code, response.json["code"]) == (503, "storage_unavailable")
    assert livekit.calls == {} and livekit.get_room(BODY["room_name"]) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                and "storage" in r.getMessage()]
    assert warnings == ["storage at 127.0.0.1 failed in claim (ConnectionError)"]
    assert "a-redis-password" not in response.get_data(as_text=True)


def test_storage_that_stops_answering_is_503_within_the_timeout(make_app, tenants, livekit,
                                                                redis_server):
    """A Redis that accepts but never answers (stopped with SIGSTOP): 503 after STORAGE_TIMEOUT,
    nothing written to LiveKit; it answers again once resumed."""
    client = make_app(STORAGE_URL=redis_server.url, STORAGE_TIMEOUT="0.5").test_client()
    assert client.post("/livekit/token", json=BODY, headers=tenants.headers()).status_code == 200
    livekit.calls.clear()
    redis_server.pause()
    try:
        started = time.monotonic()
        response = client.post("/livekit/token", json={**BODY, "room_name": "other"},
                               headers=tenants.headers())
        elapsed = time.monotonic() - started
    finally:
        redis_server.resume()
    assert (response.status_code, response.json["code"]) == (503, "storage_unavailable")
    assert 0.4 < elapsed < 2.0
    assert livekit.calls == {} and livekit.get_room("other") is None
    again = client.post("/livekit/token", json={**BODY, "room_name": "other"},
                        headers=tenants.headers())
    assert again.status_code == 200


def test_storage_calls_are_in_metrics_without_tenant_or_room(make_app, tenants):
    """/metrics counts storage calls by operation and outcome, with no tenant or room label."""
    client = make_app(METRICS_ENABLED="true").test_client()
    client.post("/livekit/token", json={**BODY, "room_name": "metrics-room"},
                headers=tenants.headers("metrics-tenant"))
    text = client.get("/metrics").get_data(as_text=True)
    claims = [line for line in text.splitlines()
              if line.startswith("tokensvc_storage_calls_total{")]
    assert any('operation="claim"' in line and 'outcome="ok"' in line for line in claims)
    assert any('operation="lock"' in line for line in claims)
    assert "metrics-tenant" not in text and "metrics-room" not in text


def test_default_storage_is_a_file_in_the_instance_folder(make_app):
    """STORAGE_URL unset: a SQLite file named tokensvc.sqlite3 in the app's instance folder."""
    app = make_app(STORAGE_URL=None)
    assert service_state(app).issuer.holds.where == f"{app.instance_path}/tokensvc.sqlite3"


@pytest.mark.parametrize("url, message", [
    ("memory://", "STORAGE_URL: expected sqlite:///path or a redis://"),
    ("postgres://db/x", "STORAGE_URL: expected sqlite:///path or a redis://"),
    ("sqlite://", "STORAGE_URL: a sqlite URL names a file"),
])
def test_unusable_storage_url_stops_start_up(make_app, url, message):
    """A STORAGE_URL of another kind stops the service at start-up, naming the setting."""
    from tokensvc import ConfigError

    with pytest.raises(ConfigError, match=message):
        make_app(STORAGE_URL=url)


@pytest.mark.slow
def test_every_worker_sees_the_same_holds_and_a_restart_keeps_them(make_gunicorn, tenants,
                                                                   livekit):
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
            status, body, _ = server.post("/livekit/token", BODY, tenants.headers("globex"),
                                          timeout=10)
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
        "room_forbidden")
    assert livekit.calls == {}
    assert restarted.post("/livekit/token", BODY, tenants.headers("acme"))[0] == 200
    assert livekit.calls == {}


def test_names_of_lists_only_what_the_holder_holds_now(holds):
    """A holder's names come from the record; a name passed on leaves its list."""
    until = now_ms() + 60_000
    for name in ("b-room", "a-room"):
        holds.claim(name, "acme", until)
    holds.claim("c-room", "globex", until)
    assert holds.names_of("acme") == ["a-room", "b-room"]
    seen = holds.get("b-room")
    assert holds.transfer("b-room", seen, "globex", until, False)
    assert holds.names_of("acme") == ["a-room"]
    assert holds.names_of("globex") == ["b-room", "c-room"]
    assert holds.drop("a-room", holds.get("a-room"))
    assert holds.names_of("acme") == [] and holds.names_of("nobody") == []


def test_removal_holds_until_it_runs_out(holds):
    """A removal is per room and identity, extended but never shortened, and runs out."""
    holds.remove("room", "bob", now_ms() + 60_000)
    holds.remove("room", "bob", now_ms() + 1000)  # never shortened
    assert holds.removed("room", "bob")
    assert not holds.removed("room", "alice") and not holds.removed("other", "bob")
    holds.remove("room", "carol", now_ms() - 1)
    assert not holds.removed("room", "carol")


def test_claim_says_whether_the_identity_was_removed(holds):
    """A claim naming an identity tells, in the same step, whether it was removed from the room."""
    until = now_ms() + 60_000
    assert not holds.claim("room", "acme", until, "bob").removed
    holds.remove("room", "bob", now_ms() + 60_000)
    assert holds.claim("room", "acme", until, "bob").removed
    assert holds.claim("room", "globex", until, "bob").removed  # refused either way
    assert not holds.claim("room", "acme", until, "alice").removed
    assert not holds.claim("room", "acme", until).removed
