"""Tenants' webhook endpoints and deliveries, kept in the service's storage (`STORAGE_URL`:
the embedded SQLite file or Redis), shared by every instance and worker, on the storage's clock
(no Flask).

An endpoint belongs to one tenant; every read by id checks the tenant, so another tenant's id
is the same as a missing one. A delivery is one event for one endpoint: its body is fixed when
it is made (so `webhook-id`, its id, and the signed body are the same on every attempt), and its
state is `pending`, `delivered` or `failed`. The store is the truth about what is left to
deliver; the task queue only wakes workers up. A worker takes a delivery with a lease
(`start_attempt`: one atomic step that also bounds how many attempts run at once per endpoint)
and ends it with `finish_attempt`; a worker killed in between leaves a lease that runs out, and
the sweep (`overdue`) hands the delivery out again. Deadlines are on the storage's clock.
"""

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass

from .holds import _CLOCK, REDIS_PREFIX, StorageClock, _Transaction, connect_sqlite

#: How long a finished delivery's record is kept (what the deliveries route can show).
RETENTION_MS = 7 * 24 * 3600 * 1000
#: The newest deliveries kept listed per tenant.
LISTED_PER_TENANT = 1000
#: The prefix of every Redis key of tenants' webhooks.
PREFIX = REDIS_PREFIX + "wh:"
#: The fields of a delivery the routes show and the worker needs (the body aside).
DELIVERY_FIELDS = (
    "id",
    "tenant",
    "endpoint_id",
    "event_id",
    "type",
    "status",
    "attempts",
    "last_status_code",
    "last_error",
    "next_attempt_at",
    "created_at",
)
ENDPOINT_FIELDS = (
    "id",
    "tenant",
    "url",
    "events",
    "description",
    "created_at",
    "secret",
    "previous_secret",
    "previous_until",
)


@dataclass(frozen=True)
class Endpoint:
    """A tenant's subscribed URL; `previous_secret` still signs until `previous_until` (ms)."""

    id: str
    tenant: str
    url: str
    events: tuple
    description: str
    created_at: int
    secret: str
    previous_secret: str = ""
    previous_until: int = 0


@dataclass(frozen=True)
class Delivery:
    """One event for one endpoint, and how its delivery went (times in ms, storage clock)."""

    id: str
    tenant: str
    endpoint_id: str
    event_id: str
    type: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: int | None
    created_at: int


@dataclass(frozen=True)
class NewDelivery:
    """A delivery to make: its id, tenant, endpoint, event and fixed body."""

    id: str
    tenant: str
    endpoint_id: str
    event_id: str
    type: str
    body: str


@dataclass(frozen=True)
class Attempt:
    """What `start_attempt` found: `go` (with the body, the endpoint's URL and the secrets that
    sign now), or why not: `gone`, `done`, `leased`, `early` (wait_ms left), `busy` (the
    endpoint has its most attempts running), `orphan` (its endpoint was deleted: failed)."""

    outcome: str
    body: str = ""
    url: str = ""
    secrets: tuple = ()
    attempts: int = 0
    wait_ms: int = 0


@dataclass(frozen=True)
class Stats:
    """Deliveries by final outcome and failed attempts (counters), those pending, and the
    creation time of the oldest pending one (ms, or None), with the storage's now."""

    outcomes: dict
    pending: int
    oldest_pending: int | None
    now: int


def open_webhook_store(holds_store):
    """The webhook store beside a hold store: the same SQLite file or the same Redis, and the
    same clock."""
    if hasattr(holds_store, "client"):
        return RedisWebhookStore(holds_store.client, holds_store.clock, holds_store.where)
    return SqliteWebhookStore(holds_store.path, holds_store.timeout, holds_store.clock)


def _delivery(row) -> Delivery:
    """A Delivery from DELIVERY_FIELDS' values (strings or numbers)."""
    values = dict(zip(DELIVERY_FIELDS, row, strict=True))
    return Delivery(
        values["id"],
        values["tenant"],
        values["endpoint_id"],
        values["event_id"],
        values["type"],
        values["status"],
        int(values["attempts"] or 0),
        int(values["last_status_code"]) if values["last_status_code"] not in (None, "") else None,
        values["last_error"] or None,
        int(values["next_attempt_at"]) if values["next_attempt_at"] not in (None, "") else None,
        int(values["created_at"]),
    )


def _endpoint(row) -> Endpoint:
    """An Endpoint from ENDPOINT_FIELDS' values."""
    values = dict(zip(ENDPOINT_FIELDS, row, strict=True))
    return Endpoint(
        values["id"],
        values["tenant"],
        values["url"],
        tuple(json.loads(values["events"])),
        values["description"],
        int(values["created_at"]),
        values["secret"],
        values["previous_secret"] or "",
        int(values["previous_until"] or 0),
    )


SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    secret TEXT NOT NULL,
    previous_secret TEXT NOT NULL DEFAULT '',
    previous_until INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS webhook_endpoints_tenant ON webhook_endpoints (tenant);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_status_code INTEGER,
    last_error TEXT,
    next_attempt_at INTEGER,
    created_at INTEGER NOT NULL,
    deadline INTEGER NOT NULL,
    lease_until INTEGER NOT NULL DEFAULT 0,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_tenant ON webhook_deliveries (tenant, created_at);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS webhook_deliveries_endpoint ON webhook_deliveries
    (endpoint_id, lease_until);
CREATE TABLE IF NOT EXISTS webhook_outcomes (
    outcome TEXT PRIMARY KEY,
    count INTEGER NOT NULL
);
"""
SELECT_DELIVERY = f"SELECT {', '.join(DELIVERY_FIELDS)} FROM webhook_deliveries"
SELECT_ENDPOINT = f"SELECT {', '.join(ENDPOINT_FIELDS)} FROM webhook_endpoints"


class SqliteWebhookStore:
    """Endpoints and deliveries in the embedded SQLite file (WAL), beside the holds."""

    def __init__(self, path: str, timeout: float, clock: StorageClock):
        """Use the SQLite file at `path` (its own connection per process) and the holds' clock."""
        self.path, self.timeout, self.clock = path, timeout, clock
        self.where = path
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._swept_at = 0.0

    def _now(self) -> int:
        """The host's clock, shifted, ms."""
        return int(time.time() * 1000) + self.clock.shift_ms

    def _db(self) -> sqlite3.Connection:
        """This process's connection, with the tables made."""
        if self._connection is None or self._pid != os.getpid():
            self._connection, self._pid = (
                connect_sqlite(self.path, self.timeout, SCHEMA),
                os.getpid(),
            )
        return self._connection

    def prepare(self) -> None:
        """Make the tables now (at start-up), not at the first request that needs them."""
        with self._read():
            pass

    def sweep(self, db) -> None:
        """Delete finished deliveries past their retention (at most once a minute)."""
        if time.monotonic() - self._swept_at < 60:
            return
        self._swept_at = time.monotonic()
        db.execute(
            "DELETE FROM webhook_deliveries WHERE status != 'pending' AND created_at < ?",
            (self._now() - RETENTION_MS,),
        )

    def _write(self):
        """A write transaction."""
        return _Transaction(self, "BEGIN IMMEDIATE")

    def _read(self):
        """A read."""
        return _Transaction(self, None)

    def add_endpoint(self, endpoint: Endpoint, most: int) -> Endpoint | None:
        """Store a new endpoint (its created_at set now) unless the tenant has `most`."""
        with self._write() as db:
            count = db.execute(
                "SELECT count(*) FROM webhook_endpoints WHERE tenant = ?", (endpoint.tenant,)
            ).fetchone()[0]
            if count >= most:
                return None
            now = self._now()
            db.execute(
                "INSERT INTO webhook_endpoints (id, tenant, url, events, description, "
                "created_at, secret) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    endpoint.id,
                    endpoint.tenant,
                    endpoint.url,
                    json.dumps(endpoint.events),
                    endpoint.description,
                    now,
                    endpoint.secret,
                ),
            )
        return Endpoint(
            endpoint.id,
            endpoint.tenant,
            endpoint.url,
            endpoint.events,
            endpoint.description,
            now,
            endpoint.secret,
        )

    def endpoints(self, tenant: str) -> list[Endpoint]:
        """The tenant's endpoints, oldest first."""
        with self._read() as db:
            rows = db.execute(
                f"{SELECT_ENDPOINT} WHERE tenant = ? ORDER BY created_at, id", (tenant,)
            ).fetchall()
        return [_endpoint(row) for row in rows]

    def delete_endpoint(self, tenant: str, endpoint_id: str) -> bool:
        """Delete one of the tenant's endpoints; whether it was there."""
        with self._write() as db:
            return (
                db.execute(
                    "DELETE FROM webhook_endpoints WHERE id = ? AND tenant = ?",
                    (endpoint_id, tenant),
                ).rowcount
                == 1
            )

    def rotate(self, tenant: str, endpoint_id: str, secret: str, keep_ms: int) -> bool:
        """Replace an endpoint's secret; the old one signs too for `keep_ms`."""
        with self._write() as db:
            return (
                db.execute(
                    "UPDATE webhook_endpoints SET previous_secret = secret, previous_until = ?, "
                    "secret = ? WHERE id = ? AND tenant = ?",
                    (self._now() + keep_ms, secret, endpoint_id, tenant),
                ).rowcount
                == 1
            )

    def add_deliveries(self, deliveries: list[NewDelivery], period_ms: int) -> None:
        """Store pending deliveries, due now, to be tried for `period_ms`."""
        with self._write() as db:
            now = self._now()
            db.executemany(
                "INSERT INTO webhook_deliveries (id, tenant, endpoint_id, event_id, type, status, "
                "next_attempt_at, created_at, deadline, body) "
                "VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)",
                [
                    (
                        d.id,
                        d.tenant,
                        d.endpoint_id,
                        d.event_id,
                        d.type,
                        now,
                        now,
                        now + period_ms,
                        d.body,
                    )
                    for d in deliveries
                ],
            )

    def deliveries(
        self, tenant: str, endpoint_id: str | None, status: str | None, limit: int
    ) -> list[Delivery]:
        """The tenant's newest deliveries, filtered by endpoint and status."""
        query, args = f"{SELECT_DELIVERY} WHERE tenant = ?", [tenant]
        if endpoint_id is not None:
            query, args = query + " AND endpoint_id = ?", args + [endpoint_id]
        if status is not None:
            query, args = query + " AND status = ?", args + [status]
        with self._read() as db:
            rows = db.execute(
                query + " ORDER BY created_at DESC, id LIMIT ?", (*args, limit)
            ).fetchall()
        return [_delivery(row) for row in rows]

    def delivery(self, tenant: str, delivery_id: str) -> Delivery | None:
        """One of the tenant's deliveries, or None."""
        with self._read() as db:
            row = db.execute(
                f"{SELECT_DELIVERY} WHERE id = ? AND tenant = ?", (delivery_id, tenant)
            ).fetchone()
        return None if row is None else _delivery(row)

    def retry(self, tenant: str, delivery_id: str, period_ms: int) -> bool:
        """Make one of the tenant's deliveries pending and due now, for another period."""
        with self._write() as db:
            now = self._now()
            return (
                db.execute(
                    "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?, "
                    "deadline = ? WHERE id = ? AND tenant = ?",
                    (now, now + period_ms, delivery_id, tenant),
                ).rowcount
                == 1
            )

    def start_attempt(
        self, delivery_id: str, lease_ms: int, concurrency: int, slack_ms: int
    ) -> Attempt:
        """Lease a due pending delivery for one attempt, unless its endpoint already has
        `concurrency` attempts running."""
        with self._write() as db:
            now = self._now()
            row = db.execute(
                "SELECT status, next_attempt_at, lease_until, endpoint_id, body, "
                "attempts FROM webhook_deliveries WHERE id = ?",
                (delivery_id,),
            ).fetchone()
            if row is None:
                return Attempt("gone")
            status, due, lease, endpoint_id, body, attempts = row
            if status != "pending":
                return Attempt("done")
            if lease > now:
                return Attempt("leased", wait_ms=lease - now)
            if due > now + slack_ms:
                return Attempt("early", wait_ms=due - now)
            found = db.execute(
                "SELECT url, secret, previous_secret, previous_until FROM "
                "webhook_endpoints WHERE id = ?",
                (endpoint_id,),
            ).fetchone()
            if found is None:
                db.execute(
                    "UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = "
                    "NULL, last_error = 'the endpoint was deleted' WHERE id = ?",
                    (delivery_id,),
                )
                self._count(db, "failed")
                return Attempt("orphan")
            running = db.execute(
                "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = ? "
                "AND lease_until > ? AND status = 'pending'",
                (endpoint_id, now),
            ).fetchone()[0]
            if running >= concurrency:
                return Attempt("busy")
            db.execute(
                "UPDATE webhook_deliveries SET lease_until = ? WHERE id = ?",
                (now + lease_ms, delivery_id),
            )
        url, secret, previous, previous_until = found
        signing = (secret, previous) if previous and previous_until > now else (secret,)
        return Attempt("go", body, url, signing, attempts)

    def finish_attempt(
        self,
        delivery_id: str,
        delivered: bool,
        status_code: int | None,
        error: str | None,
        delay_ms: int,
    ) -> tuple[str, int | None]:
        """Record one attempt: delivered, or pending again in `delay_ms` while its deadline
        allows, else failed; return (status, next attempt's time or None)."""
        with self._write() as db:
            now = self._now()
            row = db.execute(
                "SELECT status, deadline FROM webhook_deliveries WHERE id = ?", (delivery_id,)
            ).fetchone()
            if row is None:
                return "gone", None
            db.execute(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, "
                "last_status_code = ?, last_error = ?, lease_until = 0 WHERE id = ?",
                (status_code, error, delivery_id),
            )
            if row[0] != "pending":
                return row[0], None
            if delivered:
                status, due = "delivered", None
            elif now + delay_ms <= row[1]:
                status, due = "pending", now + delay_ms
            else:
                status, due = "failed", None
            db.execute(
                "UPDATE webhook_deliveries SET status = ?, next_attempt_at = ? WHERE id = ?",
                (status, due, delivery_id),
            )
            self._count(db, "retried" if status == "pending" else status)
        return status, due

    @staticmethod
    def _count(db, outcome: str) -> None:
        """Add one to an outcome's counter (inside a write)."""
        db.execute(
            "INSERT INTO webhook_outcomes (outcome, count) VALUES (?, 1) ON CONFLICT "
            "(outcome) DO UPDATE SET count = count + 1",
            (outcome,),
        )

    def overdue(self, older_than_ms: int, limit: int) -> list[str]:
        """Pending deliveries due more than `older_than_ms` ago and not leased (their wake-up
        was lost: a worker killed mid-attempt, a queue write that failed)."""
        with self._read() as db:
            now = self._now()
            return [
                row[0]
                for row in db.execute(
                    "SELECT id FROM webhook_deliveries WHERE status = 'pending' AND "
                    "next_attempt_at < ? AND lease_until <= ? ORDER BY next_attempt_at LIMIT ?",
                    (now - older_than_ms, now, limit),
                )
            ]

    def stats(self) -> Stats:
        """The counters, the pending count and the oldest pending delivery's creation time."""
        with self._read() as db:
            outcomes = dict(db.execute("SELECT outcome, count FROM webhook_outcomes").fetchall())
            pending, oldest = db.execute(
                "SELECT count(*), min(created_at) FROM webhook_deliveries WHERE status = 'pending'"
            ).fetchone()
        return Stats(outcomes, pending, oldest, self._now())

    def time_ms(self) -> int:
        """The host's clock, shifted, ms."""
        return self._now()

    def close(self) -> None:
        """Close this process's connection."""
        with self._lock:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
            self._connection = None


# Redis: a hash per endpoint (ep:<id>) and a set of each tenant's endpoint ids (eps:<tenant>);
# a hash per delivery (d:<id>), a sorted set of each tenant's newest deliveries by creation
# (ds:<tenant>), the pending ones by creation (pending) and by next attempt (due), the leases of
# each endpoint's running attempts (inflight:<endpoint>), and the outcome counters (outcomes).
_ADD_ENDPOINT = (
    _CLOCK
    + """
local endpoints_key, endpoint_key = KEYS[1], KEYS[2]
local most, id, tenant, url, events, description, secret, shift = unpack(ARGV)
if redis.call('SCARD', endpoints_key) >= tonumber(most) then return -1 end
local now = clock(shift)
redis.call('HSET', endpoint_key, 'id', id, 'tenant', tenant, 'url', url, 'events', events,
           'description', description, 'created_at', string.format('%d', now), 'secret', secret,
           'previous_secret', '', 'previous_until', '0')
redis.call('SADD', endpoints_key, id)
return now
"""
)
_DELETE_ENDPOINT = """
if redis.call('HGET', KEYS[2], 'tenant') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[1], ARGV[2])
return 1
"""
_ROTATE = (
    _CLOCK
    + """
local found = redis.call('HMGET', KEYS[1], 'tenant', 'secret')
local tenant, secret, keep_ms, shift = unpack(ARGV)
if found[1] ~= tenant then return 0 end
redis.call('HSET', KEYS[1], 'previous_secret', found[2],
           'previous_until', string.format('%d', clock(shift) + tonumber(keep_ms)),
           'secret', secret)
return 1
"""
)
_ADD_DELIVERY = (
    _CLOCK
    + """
local delivery_key, listed_key, due_key, pending_key = unpack(KEYS)
local id, tenant, endpoint_id, event_id, kind, body, period_ms, retention_ms, listed, shift =
  unpack(ARGV)
local now = clock(shift)
redis.call('HSET', delivery_key, 'id', id, 'tenant', tenant, 'endpoint_id', endpoint_id,
           'event_id', event_id, 'type', kind, 'status', 'pending', 'attempts', '0',
           'last_status_code', '', 'last_error', '', 'next_attempt_at', string.format('%d', now),
           'created_at', string.format('%d', now),
           'deadline', string.format('%d', now + tonumber(period_ms)), 'lease_until', '0',
           'body', body)
redis.call('PEXPIRE', delivery_key, tonumber(period_ms) + tonumber(retention_ms))
redis.call('ZADD', listed_key, now, id)
local extra = redis.call('ZCARD', listed_key) - tonumber(listed)
if extra > 0 then redis.call('ZREMRANGEBYRANK', listed_key, 0, extra - 1) end
redis.call('PEXPIRE', listed_key, tonumber(period_ms) + tonumber(retention_ms))
redis.call('ZADD', due_key, now, id)
redis.call('ZADD', pending_key, now, id)
return 1
"""
)
_RETRY = (
    _CLOCK
    + """
local delivery_key, due_key, pending_key = unpack(KEYS)
local tenant, id, period_ms, retention_ms, shift = unpack(ARGV)
local found = redis.call('HMGET', delivery_key, 'tenant', 'created_at')
if found[1] ~= tenant then return 0 end
local now = clock(shift)
redis.call('HSET', delivery_key, 'status', 'pending', 'next_attempt_at', string.format('%d', now),
           'deadline', string.format('%d', now + tonumber(period_ms)))
redis.call('PEXPIRE', delivery_key, tonumber(period_ms) + tonumber(retention_ms))
redis.call('ZADD', due_key, now, id)
redis.call('ZADD', pending_key, tonumber(found[2]), id)
return 1
"""
)
_START = (
    _CLOCK
    + """
local delivery_key, due_key, pending_key, outcomes_key = unpack(KEYS)
local id, lease_ms, concurrency, slack_ms, prefix, shift = unpack(ARGV)
local now = clock(shift)
local found = redis.call('HMGET', delivery_key, 'status', 'next_attempt_at', 'lease_until',
                         'endpoint_id', 'attempts')
if not found[1] then return {'gone'} end
if found[1] ~= 'pending' then return {'done'} end
if tonumber(found[3]) > now then return {'leased', string.format('%d', found[3] - now)} end
local due = tonumber(found[2])
if due > now + tonumber(slack_ms) then return {'early', string.format('%d', due - now)} end
local endpoint = redis.call('HMGET', prefix .. 'ep:' .. found[4], 'url', 'secret',
                            'previous_secret', 'previous_until')
if not endpoint[1] then
  redis.call('HSET', delivery_key, 'status', 'failed', 'next_attempt_at', '',
             'last_error', 'the endpoint was deleted')
  redis.call('ZREM', due_key, id)
  redis.call('ZREM', pending_key, id)
  redis.call('HINCRBY', outcomes_key, 'failed', 1)
  return {'orphan'}
end
local running_key = prefix .. 'inflight:' .. found[4]
redis.call('ZREMRANGEBYSCORE', running_key, '-inf', now)
if redis.call('ZCARD', running_key) >= tonumber(concurrency) then return {'busy'} end
local lease = now + tonumber(lease_ms)
redis.call('ZADD', running_key, lease, id)
redis.call('PEXPIRE', running_key, tonumber(lease_ms))
redis.call('HSET', delivery_key, 'lease_until', string.format('%d', lease))
local previous = ''
if tonumber(endpoint[4]) > now then previous = endpoint[3] end
return {'go', redis.call('HGET', delivery_key, 'body'), endpoint[1], endpoint[2], previous,
        found[5]}
"""
)
_FINISH = (
    _CLOCK
    + """
local delivery_key, due_key, pending_key, outcomes_key = unpack(KEYS)
local id, delivered, status_code, error, delay_ms, retention_ms, prefix, shift = unpack(ARGV)
local now = clock(shift)
local found = redis.call('HMGET', delivery_key, 'status', 'endpoint_id', 'deadline')
if not found[1] then return {'gone', ''} end
redis.call('ZREM', prefix .. 'inflight:' .. found[2], id)
redis.call('HINCRBY', delivery_key, 'attempts', 1)
redis.call('HSET', delivery_key, 'last_status_code', status_code, 'last_error', error,
           'lease_until', '0')
if found[1] ~= 'pending' then return {found[1], ''} end
local status, due = 'failed', ''
if delivered == '1' then
  status = 'delivered'
elseif now + tonumber(delay_ms) <= tonumber(found[3]) then
  status, due = 'pending', string.format('%d', now + tonumber(delay_ms))
end
redis.call('HSET', delivery_key, 'status', status, 'next_attempt_at', due)
if status == 'pending' then
  redis.call('ZADD', due_key, tonumber(due), id)
  redis.call('HINCRBY', outcomes_key, 'retried', 1)
else
  redis.call('ZREM', due_key, id)
  redis.call('ZREM', pending_key, id)
  redis.call('HINCRBY', outcomes_key, status, 1)
  redis.call('PEXPIRE', delivery_key, tonumber(retention_ms))
end
return {status, due}
"""
)


class RedisWebhookStore:
    """Endpoints and deliveries in the Redis of the holds (its client, its clock)."""

    def __init__(self, client, clock: StorageClock, where: str):
        """Use the holds' Redis client and clock."""
        self.client, self.clock, self.where = client, clock, where
        self._scripts = {
            name: client.register_script(text)
            for name, text in (
                ("add_endpoint", _ADD_ENDPOINT),
                ("delete_endpoint", _DELETE_ENDPOINT),
                ("rotate", _ROTATE),
                ("add_delivery", _ADD_DELIVERY),
                ("retry", _RETRY),
                ("start", _START),
                ("finish", _FINISH),
            )
        }

    def prepare(self) -> None:
        """Nothing to make: Redis keys appear when written."""

    @staticmethod
    def _key(kind: str, name: str = "") -> str:
        """A key of tenants' webhooks."""
        return f"{PREFIX}{kind}:{name}" if name else f"{PREFIX}{kind}"

    def _run(self, script: str, keys: list, args: list, client=None):
        """Run one of the scripts."""
        return self._scripts[script](keys=keys, args=args, client=client)

    def add_endpoint(self, endpoint: Endpoint, most: int) -> Endpoint | None:
        """Store a new endpoint unless the tenant has `most`."""
        now = self._run(
            "add_endpoint",
            [self._key("eps", endpoint.tenant), self._key("ep", endpoint.id)],
            [
                most,
                endpoint.id,
                endpoint.tenant,
                endpoint.url,
                json.dumps(endpoint.events),
                endpoint.description,
                endpoint.secret,
                self.clock.shift_ms,
            ],
        )
        if now == -1:
            return None
        return Endpoint(
            endpoint.id,
            endpoint.tenant,
            endpoint.url,
            endpoint.events,
            endpoint.description,
            int(now),
            endpoint.secret,
        )

    def endpoints(self, tenant: str) -> list[Endpoint]:
        """The tenant's endpoints, oldest first."""
        ids = sorted(member.decode() for member in self.client.smembers(self._key("eps", tenant)))
        pipe = self.client.pipeline(transaction=False)
        for endpoint_id in ids:
            pipe.hmget(self._key("ep", endpoint_id), ENDPOINT_FIELDS)
        found = [
            _endpoint([None if v is None else v.decode() for v in row])
            for row in pipe.execute()
            if row[0] is not None
        ]
        return sorted((e for e in found if e.tenant == tenant), key=lambda e: (e.created_at, e.id))

    def delete_endpoint(self, tenant: str, endpoint_id: str) -> bool:
        """Delete one of the tenant's endpoints."""
        return (
            self._run(
                "delete_endpoint",
                [self._key("eps", tenant), self._key("ep", endpoint_id)],
                [tenant, endpoint_id],
            )
            == 1
        )

    def rotate(self, tenant: str, endpoint_id: str, secret: str, keep_ms: int) -> bool:
        """Replace an endpoint's secret; the old one signs too for `keep_ms`."""
        return (
            self._run(
                "rotate",
                [self._key("ep", endpoint_id)],
                [tenant, secret, keep_ms, self.clock.shift_ms],
            )
            == 1
        )

    def add_deliveries(self, deliveries: list[NewDelivery], period_ms: int) -> None:
        """Store pending deliveries, due now (one pipeline of scripts)."""
        pipe = self.client.pipeline(transaction=True)
        for d in deliveries:
            self._run(
                "add_delivery",
                [
                    self._key("d", d.id),
                    self._key("ds", d.tenant),
                    self._key("due"),
                    self._key("pending"),
                ],
                [
                    d.id,
                    d.tenant,
                    d.endpoint_id,
                    d.event_id,
                    d.type,
                    d.body,
                    period_ms,
                    RETENTION_MS,
                    LISTED_PER_TENANT,
                    self.clock.shift_ms,
                ],
                client=pipe,
            )
        pipe.execute()

    def deliveries(
        self, tenant: str, endpoint_id: str | None, status: str | None, limit: int
    ) -> list[Delivery]:
        """The tenant's newest deliveries, filtered by endpoint and status."""
        ids = self.client.zrevrange(self._key("ds", tenant), 0, LISTED_PER_TENANT - 1)
        pipe = self.client.pipeline(transaction=False)
        for delivery_id in ids:
            pipe.hmget(self._key("d", delivery_id.decode()), DELIVERY_FIELDS)
        found = []
        for row in pipe.execute():
            if row[0] is None:
                continue
            delivery = _delivery([None if v is None else v.decode() for v in row])
            if delivery.tenant != tenant or (
                endpoint_id is not None and delivery.endpoint_id != endpoint_id
            ):
                continue
            if status is None or delivery.status == status:
                found.append(delivery)
            if len(found) == limit:
                break
        return found

    def delivery(self, tenant: str, delivery_id: str) -> Delivery | None:
        """One of the tenant's deliveries, or None."""
        row = self.client.hmget(self._key("d", delivery_id), DELIVERY_FIELDS)
        if row[0] is None:
            return None
        delivery = _delivery([None if v is None else v.decode() for v in row])
        return delivery if delivery.tenant == tenant else None

    def retry(self, tenant: str, delivery_id: str, period_ms: int) -> bool:
        """Make one of the tenant's deliveries pending and due now, for another period."""
        return (
            self._run(
                "retry",
                [self._key("d", delivery_id), self._key("due"), self._key("pending")],
                [tenant, delivery_id, period_ms, RETENTION_MS, self.clock.shift_ms],
            )
            == 1
        )

    def _delivery_keys(self, delivery_id: str) -> list:
        """The keys the attempt scripts name."""
        return [
            self._key("d", delivery_id),
            self._key("due"),
            self._key("pending"),
            self._key("outcomes"),
        ]

    def start_attempt(
        self, delivery_id: str, lease_ms: int, concurrency: int, slack_ms: int
    ) -> Attempt:
        """Lease a due pending delivery for one attempt (one script)."""
        found = [
            part.decode()
            for part in self._run(
                "start",
                self._delivery_keys(delivery_id),
                [delivery_id, lease_ms, concurrency, slack_ms, PREFIX, self.clock.shift_ms],
            )
        ]
        if found[0] in ("leased", "early"):
            return Attempt(found[0], wait_ms=int(found[1]))
        if found[0] != "go":
            return Attempt(found[0])
        body, url, secret, previous, attempts = found[1:]
        return Attempt(
            "go", body, url, (secret, previous) if previous else (secret,), int(attempts)
        )

    def finish_attempt(
        self,
        delivery_id: str,
        delivered: bool,
        status_code: int | None,
        error: str | None,
        delay_ms: int,
    ) -> tuple[str, int | None]:
        """Record one attempt (one script)."""
        status, due = (
            part.decode()
            for part in self._run(
                "finish",
                self._delivery_keys(delivery_id),
                [
                    delivery_id,
                    "1" if delivered else "0",
                    "" if status_code is None else status_code,
                    error or "",
                    delay_ms,
                    RETENTION_MS,
                    PREFIX,
                    self.clock.shift_ms,
                ],
            )
        )
        return status, int(due) if due else None

    def overdue(self, older_than_ms: int, limit: int) -> list[str]:
        """Pending deliveries due more than `older_than_ms` ago (records that expired are
        dropped from the index); the attempt itself checks the lease."""
        now = self.time_ms()
        ids = [
            member.decode()
            for member in self.client.zrangebyscore(
                self._key("due"), "-inf", now - older_than_ms, start=0, num=limit
            )
        ]
        if not ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for delivery_id in ids:
            pipe.exists(self._key("d", delivery_id))
        alive = pipe.execute()
        lost = [delivery_id for delivery_id, found in zip(ids, alive, strict=True) if not found]
        if lost:
            self.client.zrem(self._key("due"), *lost)
            self.client.zrem(self._key("pending"), *lost)
        return [delivery_id for delivery_id, found in zip(ids, alive, strict=True) if found]

    def stats(self) -> Stats:
        """The counters, the pending count and the oldest pending delivery's creation time."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self._key("outcomes"))
        pipe.zcard(self._key("pending"))
        pipe.zrange(self._key("pending"), 0, 0, withscores=True)
        outcomes, pending, oldest = pipe.execute()
        return Stats(
            {k.decode(): int(v) for k, v in outcomes.items()},
            pending,
            int(oldest[0][1]) if oldest else None,
            self.time_ms(),
        )

    def time_ms(self) -> int:
        """Redis's clock, shifted, ms."""
        seconds, micros = self.client.time()
        return seconds * 1000 + micros // 1000 + self.clock.shift_ms

    def close(self) -> None:
        """The holds close the shared client."""
