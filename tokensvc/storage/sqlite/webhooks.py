"""Tenants' webhook endpoints and deliveries in the embedded SQLite file, beside the holds (its
own connection per process, the holds' clock)."""

import json
import sqlite3

from ..clock import StorageClock
from ..contracts import (
    DELIVERY_RETENTION_MS,
    Attempt,
    Delivery,
    Endpoint,
    NewDelivery,
    Stats,
)
from ..webhook_rows import DELIVERY_FIELDS, ENDPOINT_FIELDS, delivery_from, endpoint_from
from .base import SqliteDatabase

SELECT_DELIVERY = f"SELECT {', '.join(DELIVERY_FIELDS)} FROM webhook_deliveries"
SELECT_ENDPOINT = f"SELECT {', '.join(ENDPOINT_FIELDS)} FROM webhook_endpoints"


class SqliteWebhookStore(SqliteDatabase):
    """Endpoints and deliveries in the embedded SQLite file (WAL), beside the holds."""

    def __init__(self, path: str, timeout: float, clock: StorageClock) -> None:
        """Use the SQLite file at `path` (its own connection per process) and the holds' clock."""
        super().__init__(path, timeout, clock, "webhooks")
        self.where = path

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
        return [delivery_from(row) for row in rows]

    def delivery(self, tenant: str, delivery_id: str) -> Delivery | None:
        """One of the tenant's deliveries, or None."""
        with self._read() as db:
            row = db.execute(
                f"{SELECT_DELIVERY} WHERE id = ? AND tenant = ?", (delivery_id, tenant)
            ).fetchone()
        return None if row is None else delivery_from(row)

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
                return str(row[0]), None
            due: int | None
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
    def _count(db: sqlite3.Connection, outcome: str) -> None:
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
