"""STORAGE_REPLICAS on Redis: every write of every store (holds, usage, webhooks, tenants,
audit) waits for the replicas (WAIT on the connection that wrote), and reads do not; counted by
the real server."""

import shutil
import time

import pytest

from support.processes import RedisServer
from tokensvc.errors import StorageUnavailable
from tokensvc.storage import (
    AuditEntry,
    Endpoint,
    NewDelivery,
    ObservedHolds,
    Outcome,
    open_audit,
    open_holds,
    open_tenants,
    open_usage,
    open_webhook_store,
)
from tokensvc.testing.processes import find_free_port

MINUTE = 60_000
DAY = 24 * 60 * MINUTE


def waits(client) -> int:
    """How many WAIT commands the server has run."""
    return int(client.info("commandstats").get("cmdstat_wait", {}).get("calls", 0))


def test_without_the_replicas_every_store_refuses_to_write(redis_server):
    """No replica attached: a write of each store is StorageUnavailable once the timeout
    passes, where the webhook store used to write without waiting."""
    import redis

    holds = open_holds(redis_server.url, timeout=0.2, replicas=1)
    webhooks = ObservedHolds(open_webhook_store(holds.store))  # as the service opens it
    usage = open_usage(holds, MINUTE)
    endpoint = Endpoint("ep1", "acme", "https://acme.example/hook", ("room_started",), "", 0, "s")
    with pytest.raises(StorageUnavailable):
        webhooks.add_endpoint(endpoint, 5)
    with pytest.raises(StorageUnavailable):
        usage.release("acme", "room")
    with pytest.raises(StorageUnavailable):
        holds.first_seen("event", MINUTE)
    tenants = ObservedHolds(open_tenants(holds.store))
    with pytest.raises(StorageUnavailable):
        tenants.change("acme", {"max_rooms": 1})
    audit = ObservedHolds(open_audit(holds.store, MINUTE))
    with pytest.raises(StorageUnavailable):
        audit.add(AuditEntry("au_1", 0, "acme", "operator", "cli", "", "tenants.set", "acme", "ok"))
    client = redis.Redis.from_url(redis_server.url)
    assert waits(client) == 5
    client.close()
    holds.close()


def test_every_webhook_write_waits_for_the_replicas_and_reads_do_not(redis_server):
    """With a replica attached, each write of the webhook store runs one WAIT and is
    acknowledged; each read runs none."""
    import redis

    replica = RedisServer(
        shutil.which("redis-server"),
        find_free_port(),
        "--replicaof",
        "127.0.0.1",
        str(redis_server.port),
    ).start()
    client = redis.Redis.from_url(redis_server.url)
    holds = open_holds(redis_server.url, timeout=5.0, replicas=1)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                holds.claim("room", "acme", MINUTE)
                break
            except StorageUnavailable:  # the replica is still syncing
                assert time.monotonic() < deadline
        webhooks = open_webhook_store(holds.store)
        endpoint = Endpoint("ep1", "acme", "https://acme.example/h", ("room_started",), "", 0, "s")
        new = NewDelivery("d1", "acme", "ep1", "ev1", "room_started", "{}")
        writes = [
            lambda: webhooks.add_endpoint(endpoint, 5),
            lambda: webhooks.rotate("acme", "ep1", "s2", MINUTE),
            lambda: webhooks.add_deliveries([new], MINUTE, 2),
            lambda: webhooks.claim(10, MINUTE, 2),
            lambda: webhooks.finish(
                [Outcome("d1", "ep1", "failed", 500, "answered 500", 0)], 2, DAY, "failing"
            ),
            lambda: webhooks.reap(10, 2),
            lambda: webhooks.retry("acme", "d1", MINUTE, 2),
            lambda: webhooks.set_enabled("acme", "ep1", False, "off", MINUTE, 2),
            lambda: webhooks.replace_secrets("ep1", ("s2", "s"), ("s3", "")),
            lambda: webhooks.delete_endpoint("acme", "ep1"),
        ]
        reads = [
            lambda: webhooks.endpoints("acme"),
            lambda: webhooks.deliveries("acme", None, None, 10),
            lambda: webhooks.delivery("acme", "d1"),
            lambda: webhooks.stats(),
        ]
        for write in writes:
            before = waits(client)
            write()
            assert waits(client) == before + 1
        for read in reads:
            before = waits(client)
            read()
            assert waits(client) == before
        assert webhooks.delivery("acme", "d1").attempts == 1
        assert webhooks.endpoints("acme") == []
    finally:
        holds.close()
        client.close()
        replica.stop()
