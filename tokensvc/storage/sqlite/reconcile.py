"""The reconciliation's records in the ownership record's SQLite file, in its transactions:
the sweeper's lease, the rooms under watch, the repairs counted."""

from .base import InTheRecordsTransactions
from .holds import SqliteHolds


class SqliteReconcile(InTheRecordsTransactions):
    """The reconciliation's records beside the holds, on their connection and clock."""

    def __init__(self, holds: SqliteHolds) -> None:
        """Share `holds`' connection, lock and clock."""
        super().__init__(holds, "reconcile")

    def lease(self, name: str, owner: str, lease_ms: int) -> bool:
        """Take or renew the lease unless another owner's runs."""
        with self._write() as db:
            now = self.holds._now()
            row = db.execute("SELECT owner, expires FROM leases WHERE name = ?", (name,)).fetchone()
            if row is not None and row[0] != owner and row[1] > now:
                return False
            db.execute(
                "INSERT OR REPLACE INTO leases (name, owner, expires) VALUES (?, ?, ?)",
                (name, owner, now + lease_ms),
            )
            return True

    def release(self, name: str, owner: str) -> None:
        """Give the lease up if `owner` still has it."""
        with self._write() as db:
            db.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))

    def watch(self, name: str, for_ms: int) -> None:
        """Watch `name` until now + `for_ms` at least; forget watches run out."""
        with self._write() as db:
            now = self.holds._now()
            db.execute("DELETE FROM watches WHERE until <= ?", (now,))
            db.execute(
                "INSERT INTO watches (name, until) VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
                "SET until = max(until, excluded.until)",
                (name, now + for_ms),
            )

    def watched(self) -> list[str]:
        """The names whose watch runs, sorted."""
        with self._read() as db:
            now = self.holds._now()
            return [
                row[0]
                for row in db.execute(
                    "SELECT name FROM watches WHERE until > ? ORDER BY name", (now,)
                )
            ]

    def count(self, kind: str, n: int = 1) -> None:
        """Add `n` repairs of `kind`."""
        with self._write() as db:
            db.execute(
                "INSERT INTO repairs (kind, n) VALUES (?, ?) ON CONFLICT (kind) DO UPDATE "
                "SET n = n + excluded.n",
                (kind, n),
            )

    def counts(self) -> dict[str, int]:
        """The repairs by kind."""
        with self._read() as db:
            return {row[0]: row[1] for row in db.execute("SELECT kind, n FROM repairs")}

    def time_ms(self) -> int:
        """The storage's clock, shifted, ms."""
        return self.holds._now()

    def close(self) -> None:
        """The record closes the shared connection."""
