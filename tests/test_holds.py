"""The ownership record on both backends: atomic claims, compare-and-set, the per-name lock,
expiry, and a storage that is down (503 storage_unavailable, nothing written to LiveKit)."""

import logging
import os
import shutil
import signal
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from support.processes import RedisServer, unavailable
from support.tokens import BODY
from tokensvc.context import service_state
from tokensvc.errors import StorageRecovering, StorageUnavailable
from tokensvc.storage import EXTEND_SLACK_MS, RETENTION_MS, Hold, open_holds, sqlite_path
from tokensvc.storage.redis.holds import RedisHolds
from tokensvc.testing.processes import find_free_port

SLACK = EXTEND_SLACK_MS
MINUTE = 60_000


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


@pytest.fixture
def lose(holds, request):
    """Make the `holds` store lose every record, as a flush or a restart without persistence
    would (SQLite: every row deleted by another connection)."""

    def forget():
        if isinstance(holds.store, RedisHolds):
            request.getfixturevalue("redis_server").restart()
            return
        with sqlite3.connect(holds.store.path) as db:
            for table in ("holds", "removals", "locks", "meta"):
                db.execute(f"DELETE FROM {table}")

    return forget


def test_claim_gives_a_free_name_and_refuses_a_held_one(holds):
    """The first claimant holds the name until now + the duration (and the slack), on the
    storage's clock; another gets the hold as it is; nothing changes."""
    first = holds.claim("room", "acme", MINUTE)
    assert first == Hold("acme", first.now + MINUTE + SLACK, False, pending=True)
    assert holds.claim("room", "globex", 2 * MINUTE) == first
    assert holds.get("room") == first
    holds.verify("room", "globex")  # not globex's: nothing changes
    assert holds.get("room").pending
    holds.verify("room", "acme")
    assert holds.get("room") == Hold("acme", first.until, False, False)


def test_claim_extends_the_holders_own_hold_and_never_shortens_it(holds):
    """The holder's claim moves `until` forward only, clears the gone mark and keeps pending."""
    first = holds.claim("room", "acme", MINUTE)
    assert holds.mark_gone("room", first, 0)
    assert holds.get("room") == Hold("acme", first.until, True, True)
    assert holds.claim("room", "acme", 1000) == Hold("acme", first.until, False, True)
    holds.verify("room", "acme")
    # Long enough already: nothing is written; past it, extended with the slack again.
    assert holds.claim("room", "acme", MINUTE) == Hold("acme", first.until, False, False)
    longer = holds.claim("room", "acme", MINUTE + SLACK + 1000)
    assert longer.until == longer.now + MINUTE + 2 * SLACK + 1000


def test_holds_run_out_on_the_storages_clock(holds):
    """A hold runs out when the storage's clock passes `until`, whatever this process's says."""
    first = holds.claim("room", "acme", MINUTE)
    assert first.running
    holds.clock.advance(MINUTE + SLACK - 1000)
    assert holds.get("room").running
    holds.clock.advance(2000)
    aged = holds.get("room")
    assert not aged.running and aged.until == first.until
    assert holds.claim("room", "globex", MINUTE) == aged  # the decision is the caller's


def test_compare_and_set_applies_only_to_the_hold_as_seen(holds):
    """mark_gone, transfer and drop change nothing once the hold changed since it was read."""
    seen = holds.claim("room", "acme", MINUTE)
    holds.claim("room", "acme", MINUTE + SLACK + 1000)  # the holder got a token meanwhile
    assert not holds.mark_gone("room", seen, 10)
    assert not holds.transfer("room", seen, "globex", 10, False)
    assert not holds.drop("room", seen)
    current = holds.get("room")
    assert current.holder == "acme" and current.until > seen.until
    holds.verify("room", "acme")
    assert not holds.transfer("room", current, "globex", 10, False)  # pending changed
    current = holds.get("room")
    assert holds.transfer("room", current, "globex", MINUTE, True)
    moved = holds.get("room")
    assert (moved.holder, moved.pending, moved.until - moved.now <= MINUTE) == (
        "globex",
        True,
        True,
    )
    assert not holds.transfer("other", current, "globex", MINUTE, False)  # no record to change
    assert holds.transfer("other", None, "globex", MINUTE, False)
    assert not holds.transfer("other", None, "acme", MINUTE, False)
    assert holds.drop("other", holds.get("other")) and holds.get("other") is None


def test_concurrent_claims_give_the_name_to_exactly_one(holds):
    """Sixteen claimants at once, over 20 names: each name has exactly one holder, and only that
    holder was told it holds it."""

    def claim(pair):
        name, tenant = pair
        return name, tenant, holds.claim(name, tenant, MINUTE)

    asks = [(f"name-{n}", f"tenant-{t}") for n in range(20) for t in range(16)]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(claim, asks))
    for name in {name for name, _ in asks}:
        winners = {tenant for n, tenant, hold in results if n == name and hold.holder == tenant}
        assert len(winners) == 1
        assert holds.get(name).holder == winners.pop()


def test_a_pending_claim_takes_the_lock_that_verify_releases(holds):
    """A pending hold's claim takes the per-name lock in the same step; a second claim of the
    holder waits (no lock, and how long the first has left); a wrong token releases nothing;
    verify releases it and clears pending; a lock expires by itself."""
    first = holds.claim("room", "acme", MINUTE, lock_ms=5000)
    assert first.pending and first.lock is not None
    second = holds.claim("room", "acme", MINUTE, lock_ms=5000)
    assert second.pending and second.lock is None and 0 < second.lock_wait_ms <= 5000
    assert holds.claim("room", "globex", MINUTE, lock_ms=5000).lock is None  # not its hold
    holds.unlock("room", "not-the-token")
    assert holds.claim("room", "acme", MINUTE, lock_ms=5000).lock is None
    holds.verify("room", "acme", first.lock)
    assert not holds.get("room").pending
    assert holds.claim("room", "acme", MINUTE, lock_ms=5000).lock is None  # not pending: no lock
    short = holds.claim("other", "acme", MINUTE, lock_ms=200)
    assert short.lock is not None
    time.sleep(0.3)
    assert holds.claim("other", "acme", MINUTE, lock_ms=200).lock is not None


def test_drop_deletes_the_claim_and_releases_its_lock(holds):
    """A refused pending claim goes in one step with its lock: the next claimant gets both."""
    first = holds.claim("room", "acme", MINUTE, lock_ms=5000)
    assert holds.drop("room", first, first.lock)
    again = holds.claim("room", "globex", MINUTE, lock_ms=5000)
    assert again.holder == "globex" and again.lock is not None


def test_keep_extends_a_recorded_hold_and_sets_its_gone_mark(holds):
    """A LiveKit event for a held name: the hold lasts at least the grace past it; room_finished
    marks it gone, a start or a join clears that; no record, nothing written."""
    assert holds.keep("room", MINUTE, False) is None and holds.get("room") is None
    first = holds.claim("room", "acme", 1000)
    finished = holds.keep("room", 10 * MINUTE, True)
    assert (finished.holder, finished.gone) == ("acme", True)
    assert finished.until >= finished.now + 10 * MINUTE > first.until
    started = holds.keep("room", MINUTE, False)
    assert (started.gone, started.until) == (False, finished.until)  # never shortened
    assert holds.get("room") == Hold("acme", finished.until, False, True)


def test_event_ids_are_seen_once(holds):
    """first_seen: true for a new event id, false for a duplicate."""
    assert holds.first_seen("EV_1", MINUTE)
    assert not holds.first_seen("EV_1", MINUTE)
    assert holds.first_seen("EV_2", MINUTE)


def test_a_store_that_lost_its_data_quarantines_shared_names(holds, lose):
    """The store forgets everything while the instance runs: the next claim of a shared name with
    no record is refused for one grace (StorageRecovering with the time left), a per-tenant name
    is not; after the grace, shared names are claimed again."""
    holds.store.quarantine_ms = 10 * MINUTE
    holds.claim("room", "acme", MINUTE)
    lose()
    with pytest.raises(StorageRecovering) as refused:
        holds.claim("room", "globex", MINUTE)
    assert 599 <= refused.value.retry_after <= 600
    assert holds.get("room") is None
    assert holds.claim("per-tenant", "globex", MINUTE, shared=False).holder == "globex"
    holds.clock.advance(10 * MINUTE + 1)
    assert holds.claim("room", "globex", MINUTE).holder == "globex"


def test_a_fresh_store_is_not_a_lost_one(holds):
    """The first claim on an empty store writes its epoch and is no loss."""
    assert holds.claim("room", "acme", MINUTE).holder == "acme"
    assert holds.claim("other", "globex", MINUTE).holder == "globex"


def test_sqlite_sweep_removes_records_long_expired(tmp_path):
    """Records past `until` + the retention are deleted by the sweep; others stay."""
    url = f"sqlite:///{tmp_path}/holds.sqlite3"
    store = open_holds(url, timeout=2.0)
    store.claim("old", "acme", 1000)
    store.clock.advance(RETENTION_MS + SLACK)
    store.claim("recent", "acme", 1000)
    store.clock.advance(SLACK + 2000)
    store.store._swept_at = 0.0  # the next write sweeps (it runs at most once a minute)
    store.claim("new", "acme", 1000)
    with sqlite3.connect(sqlite_path(url)) as db:
        names = sorted(row[0] for row in db.execute("SELECT name FROM holds"))
    assert names == ["new", "recent"]
    store.close()


def test_redis_records_expire_with_the_retention(redis_server):
    """Every Redis hold carries an expiry of `until` + the retention: storage does not grow."""
    import redis

    store = open_holds(redis_server.url, timeout=2.0)
    hold = store.claim("room", "acme", MINUTE)
    client = redis.Redis.from_url(redis_server.url)
    expires_at = client.pexpiretime("tokensvc:hold:room")
    assert expires_at == hold.until + RETENTION_MS
    assert client.pttl("tokensvc:lock:room") == -2
    store.claim("locked", "acme", MINUTE, lock_ms=5000)
    assert 0 < client.pttl("tokensvc:lock:locked") <= 5000
    store.close()


def test_storage_down_is_503_with_nothing_written(make_app, tenants, livekit, caplog):
    """A Redis that refuses connections: 503 storage_unavailable well within the bound, LiveKit
    never called, one warning naming the storage host (no URL, no secret)."""
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
    assert warnings == ["storage at 127.0.0.1 failed in claim (ConnectionError)"]
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


def test_names_of_lists_only_what_the_holder_holds_now(holds):
    """A holder's names come from the record; a name passed on leaves its list."""
    for name in ("b-room", "a-room"):
        holds.claim(name, "acme", MINUTE)
    holds.claim("c-room", "globex", MINUTE)
    assert holds.names_of("acme") == ["a-room", "b-room"]
    seen = holds.get("b-room")
    assert holds.transfer("b-room", seen, "globex", MINUTE, False)
    assert holds.names_of("acme") == ["a-room"]
    assert holds.names_of("globex") == ["b-room", "c-room"]
    assert holds.drop("a-room", holds.get("a-room"))
    assert holds.names_of("acme") == [] and holds.names_of("nobody") == []


def test_removal_holds_until_it_runs_out(holds):
    """A removal is per room and identity, extended but never shortened, and runs out on the
    storage's clock."""
    holds.remove("room", "bob", MINUTE)
    holds.remove("room", "bob", 1000)  # never shortened
    assert holds.removed("room", "bob")
    assert not holds.removed("room", "alice") and not holds.removed("other", "bob")
    holds.remove("room", "carol", 1000)
    holds.clock.advance(2000)
    assert holds.removed("room", "bob") and not holds.removed("room", "carol")
    holds.clock.advance(MINUTE)
    assert not holds.removed("room", "bob")


def test_claim_says_whether_the_identity_was_removed(holds):
    """A claim naming an identity tells, in the same step, whether it was removed from the room."""
    assert not holds.claim("room", "acme", MINUTE, "bob").removed
    holds.remove("room", "bob", MINUTE)
    assert holds.claim("room", "acme", MINUTE, "bob").removed
    assert holds.claim("room", "globex", MINUTE, "bob").removed  # refused either way
    assert not holds.claim("room", "acme", MINUTE, "alice").removed
    assert not holds.claim("room", "acme", MINUTE).removed


@pytest.mark.parametrize(
    "options, problem",
    [
        ((), None),
        (("--maxmemory-policy", "allkeys-lru"), "maxmemory-policy allkeys-lru"),
        (
            ("--maxmemory-policy", "volatile-lru", "--rename-command", "CONFIG", ""),
            "maxmemory-policy volatile-lru",
        ),
    ],
    ids=["noeviction", "allkeys-lru", "volatile-lru-without-config"],
)
def test_a_redis_that_may_evict_is_named(options, problem):
    """durability_problem reads Redis's eviction policy (from INFO where CONFIG is disabled)."""
    server = RedisServer(
        shutil.which("redis-server") or unavailable("no redis-server"), find_free_port(), *options
    ).start()
    try:
        store = open_holds(server.url, timeout=2.0)
        found = store.durability_problem()
        assert (found is None) if problem is None else (problem in found)
        store.close()
    finally:
        server.stop()


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


def test_writes_wait_for_the_replicas_asked_for(redis_server):
    """STORAGE_REPLICAS=1: a write with a replica attached is acknowledged; with none, it is
    503 storage_unavailable once STORAGE_TIMEOUT passes (WAIT)."""
    alone = open_holds(redis_server.url, timeout=0.3, replicas=1)
    with pytest.raises(StorageUnavailable):
        alone.claim("room", "acme", MINUTE)
    alone.close()
    replica = RedisServer(
        shutil.which("redis-server"),
        find_free_port(),
        "--replicaof",
        "127.0.0.1",
        str(redis_server.port),
    ).start()
    try:
        store = open_holds(redis_server.url, timeout=5.0, replicas=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                assert store.claim("room", "acme", MINUTE).holder == "acme"
                break
            except StorageUnavailable:  # the replica is still syncing
                assert time.monotonic() < deadline
        store.close()
    finally:
        replica.stop()
