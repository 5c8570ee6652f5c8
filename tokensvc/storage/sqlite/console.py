"""The console's one-use tickets in the embedded SQLite file (WAL), beside the holds."""

import sqlite3

from ..clock import StorageClock
from .base import SqliteDatabase


class SqliteConsoleTickets(SqliteDatabase):
    """One-use tickets in the SQLite file: a row per ticket id, deleted when redeemed."""

    def __init__(self, path: str, timeout: float, clock: StorageClock) -> None:
        """Use the SQLite file at `path` (its own connection per process) and the holds' clock."""
        super().__init__(path, timeout, clock, "console")
        self.where = path

    def sweep(self, db: sqlite3.Connection) -> None:
        """Delete tickets past their time (at most once a minute)."""
        if self.sweep_due():
            db.execute("DELETE FROM console_tickets WHERE expires <= ?", (self._now(),))

    def issue(self, ticket_id: str, payload: str, ttl_ms: int) -> None:
        """Keep `payload` under `ticket_id` until now + `ttl_ms`."""
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO console_tickets (id, payload, expires) VALUES (?, ?, ?)",
                (ticket_id, payload, self._now() + ttl_ms),
            )

    def redeem(self, ticket_id: str) -> str | None:
        """The payload once (read and delete in one transaction), or None."""
        with self._write() as db:
            row = db.execute(
                "DELETE FROM console_tickets WHERE id = ? RETURNING payload, expires", (ticket_id,)
            ).fetchone()
        if row is None or row[1] <= self._now():
            return None
        payload: str = row[0]
        return payload

    def time_ms(self) -> int:
        """The host's clock, shifted, ms."""
        return self._now()
