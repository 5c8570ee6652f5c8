"""The hold store's contract on both backends: atomic claims, compare-and-set, the per-name
lock, removals, event ids, expiry on the storage's clock, and a store that lost its data."""

import shutil
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from support.processes import RedisServer, unavailable
from tokensvc.errors import StorageRecovering, StorageUnavailable
from tokensvc.storage import EXTEND_SLACK_MS, RETENTION_MS, Hold, open_holds, sqlite_path
from tokensvc.storage.redis.holds import RedisHolds
from tokensvc.testing.processes import find_free_port

SLACK = EXTEND_SLACK_MS
MINUTE = 60_000


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
    assert holds.recovering_ms() == 0
    lose()
    with pytest.raises(StorageRecovering) as refused:
        holds.claim("room", "globex", MINUTE)
    assert 599 <= refused.value.retry_after <= 600
    assert holds.get("room") is None
    assert holds.claim("per-tenant", "globex", MINUTE, shared=False).holder == "globex"
    holds.clock.advance(10 * MINUTE + 1)
    assert holds.recovering_ms() == 0
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
