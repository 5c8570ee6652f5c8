"""Tenants' webhook endpoints and deliveries in the embedded SQLite file, beside the holds (its
own connection per process, the holds' clock)."""

import json
import sqlite3
from collections import deque
from collections.abc import Sequence
from typing import Any

from ..clock import StorageClock
from ..contracts import (
    DELIVERY_RETENTION_MS,
    Claim,
    Delivery,
    Endpoint,
    Finished,
    NewDelivery,
    Outcome,
    Stats,
)
from ..webhook_rows import DELIVERY_FIELDS, ENDPOINT_FIELDS, delivery_from, endpoint_from
from .base import SqliteDatabase

#: A row as sqlite3 gives it.
Row = tuple[Any, ...]
SELECT_DELIVERY = f"SELECT {', '.join(DELIVERY_FIELDS)} FROM webhook_deliveries"
SELECT_ENDPOINT = f"SELECT {', '.join(ENDPOINT_FIELDS)} FROM webhook_endpoints"
#: Columns a file made by an earlier version lacks, added when the store first connects.
ADDED_COLUMNS = {
    "disabled_at": "INTEGER",
    "disabled_reason": "TEXT NOT NULL DEFAULT ''",
    "failing_since": "INTEGER",
    "failures": "INTEGER NOT NULL DEFAULT 0",
    "probe_at": "INTEGER NOT NULL DEFAULT 0",
    "served_at": "INTEGER NOT NULL DEFAULT 0",
}
#: What a deleted endpoint's waiting deliveries say.
DELETED = "the endpoint was deleted"


class SqliteWebhookStore(SqliteDatabase):
    """Endpoints and deliveries in the embedded SQLite file (WAL), beside the holds."""

    def __init__(self, path: str, timeout: float, clock: StorageClock) -> None:
        """Use the SQLite file at `path` (its own connection per process) and the holds' clock."""
        super().__init__(path, timeout, clock, "webhooks")
        self.where = path

    def _db(self) -> sqlite3.Connection:
        """This process's connection, the endpoints' table given the columns an earlier
        version's file lacks."""
        fresh = self._connection is None
        db = super()._db()
        if fresh:
            have = {row[1] for row in db.execute("PRAGMA table_info(webhook_endpoints)")}
            for column, kind in ADDED_COLUMNS.items():
                if column not in have:
                    try:
                        db.execute(f"ALTER TABLE webhook_endpoints ADD COLUMN {column} {kind}")
                    except sqlite3.OperationalError:  # another process added it meanwhile
                        pass
        return db

    def prepare(self) -> None:
        """Make the tables now (at start-up), not at the first request that needs them."""
        with self._read():
            pass

    def sweep(self, db: sqlite3.Connection) -> None:
        """Delete finished deliveries past their retention (at most once a minute)."""
        if not self.sweep_due():
            return
        db.execute(
            "DELETE FROM webhook_deliveries WHERE status != 'pending' AND created_at < ?",
            (self._now() - DELIVERY_RETENTION_MS,),
        )

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
        return [endpoint_from(row) for row in rows]

    def delete_endpoint(self, tenant: str, endpoint_id: str) -> bool:
        """Delete one of the tenant's endpoints (its waiting deliveries fail); whether it was
        there."""
        with self._write() as db:
            if (
                db.execute(
                    "DELETE FROM webhook_endpoints WHERE id = ? AND tenant = ?",
                    (endpoint_id, tenant),
                ).rowcount
                != 1
            ):
                return False
            failed = db.execute(
                "UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL, "
                "last_error = ? WHERE endpoint_id = ? AND status = 'pending' AND lease_until <= ?",
                (DELETED, endpoint_id, self._now()),
            ).rowcount
            for _ in range(failed):
                self._count(db, "failed")
            return True

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

    def set_enabled(
        self,
        tenant: str,
        endpoint_id: str,
        enabled: bool,
        reason: str,
        period_ms: int,
        concurrency: int,
    ) -> bool:
        """Enable one of the tenant's endpoints (failures forgotten, what waited due now for
        another period), or disable it with `reason`."""
        with self._write() as db:
            now = self._now()
            found = db.execute(
                "SELECT disabled_at FROM webhook_endpoints WHERE id = ? AND tenant = ?",
                (endpoint_id, tenant),
            ).fetchone()
            if found is None:
                return False
            if not enabled:
                if found[0] is None:
                    db.execute(
                        "UPDATE webhook_endpoints SET disabled_at = ?, disabled_reason = ? "
                        "WHERE id = ?",
                        (now, reason, endpoint_id),
                    )
                return True
            db.execute(
                "UPDATE webhook_endpoints SET disabled_at = NULL, disabled_reason = '', "
                "failing_since = NULL, failures = 0, probe_at = 0 WHERE id = ?",
                (endpoint_id,),
            )
            if found[0] is not None:
                db.execute(
                    "UPDATE webhook_deliveries SET next_attempt_at = ?, deadline = ? "
                    "WHERE endpoint_id = ? AND status = 'pending'",
                    (now, now + period_ms, endpoint_id),
                )
            return True

    def secrets(self) -> list[tuple[str, str, str]]:
        """Every endpoint's (id, secret, previous secret) as stored."""
        with self._read() as db:
            rows = db.execute(
                "SELECT id, secret, previous_secret FROM webhook_endpoints ORDER BY id"
            ).fetchall()
        return [(str(a), str(b), str(c)) for a, b, c in rows]

    def replace_secrets(self, endpoint_id: str, old: tuple[str, str], new: tuple[str, str]) -> bool:
        """Replace an endpoint's (secret, previous secret) if they are still `old`."""
        with self._write() as db:
            return (
                db.execute(
                    "UPDATE webhook_endpoints SET secret = ?, previous_secret = ? "
                    "WHERE id = ? AND secret = ? AND previous_secret = ?",
                    (*new, endpoint_id, *old),
                ).rowcount
                == 1
            )

    def add_deliveries(
        self, deliveries: list[NewDelivery], period_ms: int, concurrency: int
    ) -> None:
        """Store pending deliveries, due now, to be tried for `period_ms`."""
        if not deliveries:
            return
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
        return [delivery_from(row) for row in rows]

    def delivery(self, tenant: str, delivery_id: str) -> Delivery | None:
        """One of the tenant's deliveries, or None."""
        with self._read() as db:
            row = db.execute(
                f"{SELECT_DELIVERY} WHERE id = ? AND tenant = ?", (delivery_id, tenant)
            ).fetchone()
        return None if row is None else delivery_from(row)

    def retry(self, tenant: str, delivery_id: str, period_ms: int, concurrency: int) -> bool:
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

    def claim(
        self, limit: int, lease_ms: int, concurrency: int, skip: Sequence[str] = ()
    ) -> list[Claim]:
        """Lease up to `limit` due deliveries, one per tenant in turn and one per endpoint in
        turn within a tenant (those served longest ago first), each endpoint's oldest due first,
        at most `concurrency` leases per endpoint (one while failing)."""
        with self._write() as db:
            now = self._now()
            running = dict(
                db.execute(
                    "SELECT endpoint_id, count(*) FROM webhook_deliveries WHERE lease_until > ? "
                    "AND status = 'pending' GROUP BY endpoint_id",
                    (now,),
                ).fetchall()
            )
            ready = db.execute(
                "SELECT e.id, e.tenant, e.url, e.secret, e.previous_secret, e.previous_until, "
                "e.failing_since, e.failures FROM webhook_endpoints e "
                "LEFT JOIN webhook_tenants t ON t.tenant = e.tenant "
                "WHERE e.disabled_at IS NULL AND e.probe_at <= ? AND EXISTS (SELECT 1 FROM "
                "webhook_deliveries d WHERE d.endpoint_id = e.id AND d.status = 'pending' AND "
                "d.next_attempt_at <= ? AND d.lease_until <= ?) "
                "ORDER BY coalesce(t.served_at, 0), e.tenant, e.served_at, e.id",
                (now, now, now),
            ).fetchall()
            turns: dict[str, deque[tuple[Row, deque[Row]]]] = {}
            for endpoint in ready:
                endpoint_id, tenant, failing = endpoint[0], endpoint[1], endpoint[6]
                room = (1 if failing is not None else concurrency) - running.get(endpoint_id, 0)
                if room <= 0 or tenant in skip:
                    continue
                due = db.execute(
                    "SELECT id, body, attempts FROM webhook_deliveries WHERE endpoint_id = ? AND "
                    "status = 'pending' AND next_attempt_at <= ? AND lease_until <= ? "
                    "ORDER BY next_attempt_at, created_at LIMIT ?",
                    (endpoint_id, now, now, min(room, limit)),
                ).fetchall()
                if due:
                    turns.setdefault(tenant, deque()).append((endpoint, deque(due)))
            claimed: list[Claim] = []
            while turns and len(claimed) < limit:
                for tenant in list(turns):
                    if len(claimed) == limit:
                        break
                    queue = turns[tenant]
                    endpoint, waiting = queue.popleft()
                    delivery_id, body, attempts = waiting.popleft()
                    previous = endpoint[4] if endpoint[5] > now else ""
                    claimed.append(
                        Claim(
                            delivery_id,
                            tenant,
                            endpoint[0],
                            endpoint[2],
                            endpoint[3],
                            previous,
                            body,
                            attempts,
                            endpoint[7],
                        )
                    )
                    if waiting:
                        queue.append((endpoint, waiting))
                    if not queue:
                        del turns[tenant]
            if not claimed:
                return []
            db.executemany(
                "UPDATE webhook_deliveries SET lease_until = ? WHERE id = ?",
                [(now + lease_ms, claim.id) for claim in claimed],
            )
            served = {claim.endpoint_id for claim in claimed}
            db.executemany(
                "UPDATE webhook_endpoints SET served_at = ? WHERE id = ?",
                [(now, endpoint_id) for endpoint_id in served],
            )
            db.executemany(
                "INSERT INTO webhook_tenants (tenant, served_at) VALUES (?, ?) "
                "ON CONFLICT (tenant) DO UPDATE SET served_at = excluded.served_at",
                [(tenant, now) for tenant in {claim.tenant for claim in claimed}],
            )
        return claimed

    def finish(
        self, outcomes: Sequence[Outcome], concurrency: int, disable_after_ms: int, reason: str
    ) -> list[Finished]:
        """Record what came of claimed deliveries (one transaction)."""
        finished: list[Finished] = []
        with self._write() as db:
            now = self._now()
            for outcome in outcomes:
                finished.append(self._finish(db, now, outcome, disable_after_ms, reason))
        return finished

    def _finish(
        self,
        db: sqlite3.Connection,
        now: int,
        outcome: Outcome,
        disable_after_ms: int,
        reason: str,
    ) -> Finished:
        """Record one outcome (inside a write)."""
        row = db.execute(
            "SELECT status, deadline FROM webhook_deliveries WHERE id = ?", (outcome.id,)
        ).fetchone()
        if row is None:
            return Finished(outcome.id, "gone")
        if outcome.kind == "released":
            db.execute("UPDATE webhook_deliveries SET lease_until = 0 WHERE id = ?", (outcome.id,))
            return Finished(outcome.id, str(row[0]))
        delivered = outcome.kind == "delivered"
        db.execute(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, last_status_code = ?, "
            "last_error = ?, lease_until = 0 WHERE id = ?",
            (outcome.status_code, None if delivered else outcome.error, outcome.id),
        )
        endpoint = db.execute(
            "SELECT failing_since, disabled_at FROM webhook_endpoints WHERE id = ?",
            (outcome.endpoint_id,),
        ).fetchone()
        disabled = False
        if endpoint is not None and delivered:
            db.execute(
                "UPDATE webhook_endpoints SET failing_since = NULL, failures = 0, probe_at = 0 "
                "WHERE id = ?",
                (outcome.endpoint_id,),
            )
        elif endpoint is not None:
            since = endpoint[0] if endpoint[0] is not None else now
            db.execute(
                "UPDATE webhook_endpoints SET failing_since = ?, failures = failures + 1, "
                "probe_at = ? WHERE id = ?",
                (since, now + outcome.delay_ms, outcome.endpoint_id),
            )
            if endpoint[1] is None and now - since >= disable_after_ms:
                db.execute(
                    "UPDATE webhook_endpoints SET disabled_at = ?, disabled_reason = ? "
                    "WHERE id = ?",
                    (now, f"{reason} (last: {outcome.error})", outcome.endpoint_id),
                )
                disabled = True
        if row[0] != "pending":
            return Finished(outcome.id, str(row[0]), disabled)
        due: int | None
        if delivered:
            status, due = "delivered", None
        elif endpoint is not None and now + outcome.delay_ms <= row[1]:
            status, due = "pending", now + outcome.delay_ms
        else:
            status, due = "failed", None
        db.execute(
            "UPDATE webhook_deliveries SET status = ?, next_attempt_at = ? WHERE id = ?",
            (status, due, outcome.id),
        )
        self._count(db, "retried" if status == "pending" else status)
        return Finished(outcome.id, status, disabled)

    @staticmethod
    def _count(db: sqlite3.Connection, outcome: str) -> None:
        """Add one to an outcome's counter (inside a write)."""
        db.execute(
            "INSERT INTO webhook_outcomes (outcome, count) VALUES (?, 1) ON CONFLICT "
            "(outcome) DO UPDATE SET count = count + 1",
            (outcome,),
        )

    def reap(self, limit: int, concurrency: int) -> int:
        """Clear up to `limit` leases that ran out (a lease past its time already lets the
        delivery be claimed here; this only tidies); how many."""
        with self._write() as db:
            now = self._now()
            return db.execute(
                "UPDATE webhook_deliveries SET lease_until = 0 WHERE id IN (SELECT id FROM "
                "webhook_deliveries WHERE lease_until > 0 AND lease_until <= ? LIMIT ?)",
                (now, limit),
            ).rowcount

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
