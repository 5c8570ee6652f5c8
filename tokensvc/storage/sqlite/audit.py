"""The audit trail in the embedded SQLite file, beside the holds (its own connection per
process, the holds' clock): entries older than the retention are swept."""

import sqlite3
from dataclasses import replace

from ..clock import StorageClock
from ..contracts import AuditEntry
from .base import SqliteDatabase

AUDIT_FIELDS = (
    "id",
    "at",
    "tenant",
    "actor",
    "subject",
    "identity",
    "action",
    "target",
    "outcome",
    "detail",
)
SELECT_AUDIT = f"SELECT {', '.join(AUDIT_FIELDS)} FROM audit"


class SqliteAudit(SqliteDatabase):
    """The audit trail in the embedded SQLite file (WAL), beside the holds."""

    def __init__(self, path: str, timeout: float, clock: StorageClock, retention_ms: int) -> None:
        """Use the SQLite file at `path` and the holds' clock; keep entries `retention_ms`."""
        super().__init__(path, timeout, clock, "audit")
        self.where = path
        self.retention_ms = retention_ms

    def sweep(self, db: sqlite3.Connection) -> None:
        """Delete entries past the retention (at most once a minute)."""
        if self.sweep_due():
            db.execute("DELETE FROM audit WHERE at < ?", (self._now() - self.retention_ms,))

    def add(self, entry: AuditEntry) -> AuditEntry:
        """Keep `entry`, its time the storage's now."""
        return self._retried(self._add, entry)

    def _add(self, entry: AuditEntry) -> AuditEntry:
        """One attempt of `add`."""
        with self._write() as db:
            kept = replace(entry, at=self._now())
            db.execute(
                f"INSERT INTO audit ({', '.join(AUDIT_FIELDS)}) VALUES "
                f"({', '.join('?' * len(AUDIT_FIELDS))})",
                tuple(getattr(kept, name) for name in AUDIT_FIELDS),
            )
        return kept

    def entries(self, tenant: str | None, limit: int) -> list[AuditEntry]:
        """The newest `limit` entries within the retention, of `tenant` (None: all)."""
        since = self._now() - self.retention_ms
        with self._read() as db:
            if tenant is None:
                rows = db.execute(
                    SELECT_AUDIT + " WHERE at >= ? ORDER BY at DESC, rowid DESC LIMIT ?",
                    (since, limit),
                ).fetchall()
            else:
                rows = db.execute(
                    SELECT_AUDIT
                    + " WHERE tenant = ? AND at >= ? ORDER BY at DESC, rowid DESC LIMIT ?",
                    (tenant, since, limit),
                ).fetchall()
        return [AuditEntry(*row) for row in rows]

    def time_ms(self) -> int:
        """The host's clock, shifted, ms."""
        return self._now()
