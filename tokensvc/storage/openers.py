"""The stores a `STORAGE_URL` names, each on the backend the URL's scheme picks: the hold store
opens the backend (the SQLite file or the Redis connection), and the usage, webhook, tenant and
audit stores open beside it, on the same backend and clock."""

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from .contracts import (
    AuditStore,
    ConsoleTicketStore,
    HoldStore,
    ReconcileStore,
    TenantStore,
    UsageStore,
    WebhookStore,
)
from .observed import ObservedHolds
from .redis.audit import RedisAudit
from .redis.base import RedisConnection
from .redis.console import RedisConsoleTickets
from .redis.holds import RedisHolds
from .redis.reconcile import RedisReconcile
from .redis.tenants import RedisTenants
from .redis.usage import RedisUsage
from .redis.webhooks import RedisWebhookStore
from .sqlite.audit import SqliteAudit
from .sqlite.base import sqlite_path
from .sqlite.console import SqliteConsoleTickets
from .sqlite.holds import SqliteHolds
from .sqlite.reconcile import SqliteReconcile
from .sqlite.tenants import SqliteTenants
from .sqlite.usage import SqliteUsage
from .sqlite.webhooks import SqliteWebhookStore


def open_holds(
    url: str,
    timeout: float,
    observe: Any = None,
    replicas: int = 0,
    on_loss: Callable[[], None] | None = None,
    check_interval: float = 5.0,
) -> ObservedHolds[HoldStore]:
    """The hold store named by `url` (sqlite:///path or a Redis URL), reporting each call to
    `observe(operation, outcome, seconds)` and each detected loss of the store to `on_loss()`,
    its continuity checked in full every `check_interval` seconds by each process; on Redis,
    every write (of every store beside it) waits for `replicas` replicas."""
    store: HoldStore
    if urlsplit(url).scheme == "sqlite":
        store = SqliteHolds(sqlite_path(url), timeout)
    else:
        store = RedisHolds(RedisConnection(url, timeout, replicas))
    store.on_loss = on_loss
    store.check_interval_s = check_interval
    return ObservedHolds(store, observe)


def open_usage(
    holds: ObservedHolds[HoldStore], retention_ms: int, observe: Any = None
) -> ObservedHolds[UsageStore]:
    """The usage store beside a hold store, on its backend, connection and clock, keeping each
    record `retention_ms` past its last event; every call timed, counted and reported to
    `observe(operation, outcome, seconds)` as the record's are, failures turned into 503."""
    store = holds.store
    usage: UsageStore
    if isinstance(store, SqliteHolds):
        usage = SqliteUsage(store, retention_ms)
    elif isinstance(store, RedisHolds):
        usage = RedisUsage(store.connection, retention_ms)
    else:
        raise TypeError(f"no usage store beside a {store.backend} hold store")
    return ObservedHolds(usage, observe)


def open_webhook_store(holds_store: HoldStore) -> WebhookStore:
    """The webhook store beside a hold store: the same SQLite file or the same Redis, and the
    same clock."""
    if isinstance(holds_store, SqliteHolds):
        return SqliteWebhookStore(holds_store.path, holds_store.timeout, holds_store.clock)
    if isinstance(holds_store, RedisHolds):
        return RedisWebhookStore(holds_store.connection)
    raise TypeError(f"no webhook store beside a {holds_store.backend} hold store")


def open_console_tickets(holds_store: HoldStore) -> ConsoleTicketStore:
    """The console's ticket store beside a hold store: the same SQLite file or the same Redis,
    and the same clock."""
    if isinstance(holds_store, SqliteHolds):
        return SqliteConsoleTickets(holds_store.path, holds_store.timeout, holds_store.clock)
    if isinstance(holds_store, RedisHolds):
        return RedisConsoleTickets(holds_store.connection)
    raise TypeError(f"no console ticket store beside a {holds_store.backend} hold store")


def open_tenants(holds_store: HoldStore) -> TenantStore:
    """The tenants' records beside a hold store: the same SQLite file or Redis, the same clock."""
    if isinstance(holds_store, SqliteHolds):
        return SqliteTenants(holds_store.path, holds_store.timeout, holds_store.clock)
    if isinstance(holds_store, RedisHolds):
        return RedisTenants(holds_store.connection)
    raise TypeError(f"no tenant store beside a {holds_store.backend} hold store")


def open_audit(holds_store: HoldStore, retention_ms: int) -> AuditStore:
    """The audit trail beside a hold store, keeping each entry `retention_ms`."""
    if isinstance(holds_store, SqliteHolds):
        return SqliteAudit(holds_store.path, holds_store.timeout, holds_store.clock, retention_ms)
    if isinstance(holds_store, RedisHolds):
        return RedisAudit(holds_store.connection, retention_ms)
    raise TypeError(f"no audit store beside a {holds_store.backend} hold store")


def open_reconcile(
    holds: ObservedHolds[HoldStore], observe: Any = None
) -> ObservedHolds[ReconcileStore]:
    """The reconciliation's store beside a hold store (the sweeper's lease, the watches, the
    repairs counted), on its backend, connection and clock; every call observed as the
    record's are, failures turned into 503."""
    store = holds.store
    found: ReconcileStore
    if isinstance(store, SqliteHolds):
        found = SqliteReconcile(store)
    elif isinstance(store, RedisHolds):
        found = RedisReconcile(store.connection)
    else:
        raise TypeError(f"no reconciliation store beside a {store.backend} hold store")
    return ObservedHolds(found, observe)
