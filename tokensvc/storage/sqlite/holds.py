"""The ownership record in the embedded SQLite file: a row per held name, the per-name locks,
the removals of identities from rooms, and the store's epoch and seen event ids (`meta`)."""

import secrets
import sqlite3
import time
from collections.abc import Callable

from ...errors import StorageRecovering
from ..clock import StorageClock
from ..contracts import EXTEND_SLACK_MS, RETENTION_MS, Hold
from ..loss import report_loss
from .base import SqliteDatabase

#: The WHERE clause that matches a hold exactly as it was seen.
AS_SEEN = "name = ? AND holder = ? AND until = ? AND gone = ? AND pending = ?"
HOLD_COLUMNS = "SELECT holder, until, gone, pending FROM holds WHERE name = ?"
#: A claim's read, in one statement (one snapshot): the name's hold (NULLs: none), the epoch
#: (NULL: none or expired) and whether the identity's removal from the name still holds.
CLAIM_READ = (
    "SELECT h.holder, h.until, h.gone, h.pending,"
    " (SELECT value FROM meta WHERE key = 'epoch' AND (expires IS NULL OR expires > ?3)),"
    " EXISTS (SELECT 1 FROM removals WHERE name = ?1 AND identity = ?2 AND until > ?3)"
    " FROM (SELECT 1) LEFT JOIN holds h ON h.name = ?1"
)

#: A hold's row: holder, until, gone, pending.
Row = tuple[str, int, int, int]


def _seen(name: str, seen: Hold) -> tuple[str, str, int, int, int]:
    """The parameters of AS_SEEN."""
    return (name, seen.holder, seen.until, int(seen.gone), int(seen.pending))


class SqliteHolds(SqliteDatabase):
    """Holds in one SQLite file (WAL), shared by every process of one host, on its clock."""

    #: How long a quarantine lasts (the ownership record sets it to one grace).
    quarantine_ms = 0

    def __init__(self, path: str, timeout: float) -> None:
        """Open (creating it and its folder on first use) the database at `path`."""
        super().__init__(path, timeout, StorageClock(), "holds")
        self.epoch: str | None = None  # the epoch this process saw
        self.on_loss: Callable[[], None] | None = None

    def claim(
        self,
        name: str,
        holder: str,
        hold_ms: int,
        identity: str | None = None,
        lock_ms: int = 0,
        shared: bool = True,
    ) -> Hold:
        """Insert, extend the holder's own hold, or return another's; take the lock for the
        caller's pending hold (a read alone when the hold is long enough and not pending)."""
        return self._retried(self._claim, name, holder, hold_ms, identity, lock_ms, shared)

    def _claim(
        self,
        name: str,
        holder: str,
        hold_ms: int,
        identity: str | None,
        lock_ms: int,
        shared: bool,
    ) -> Hold:
        """One attempt of `claim`."""
        with self._read() as db:
            now = self._now()
            *found, epoch, removed_flag = db.execute(CLAIM_READ, (name, identity, now)).fetchone()
        row: Row | None = None if found[0] is None else (found[0], found[1], found[2], found[3])
        removed = bool(removed_flag)
        if (
            epoch == self.epoch
            and row is not None
            and (row[0] != holder or (row[1] >= now + hold_ms and not row[2] and not row[3]))
        ):
            return Hold(row[0], row[1], bool(row[2]), bool(row[3]), removed, now)
        with self._write() as db:
            now = self._now()
            self._check_epoch(db, now)
            row = db.execute(HOLD_COLUMNS, (name,)).fetchone()
            if row is None:
                recovering = self._meta_ttl(db, "recovering", now)
                if shared and recovering:
                    raise StorageRecovering(retry_after_ms=recovering)
                until = now + hold_ms + EXTEND_SLACK_MS
                db.execute(
                    "INSERT INTO holds (name, holder, until, gone, pending) VALUES (?, ?, ?, 0, 1)",
                    (name, holder, until),
                )
                hold = Hold(holder, until, False, True, removed, now)
            elif row[0] != holder:
                return Hold(row[0], row[1], bool(row[2]), bool(row[3]), removed, now)
            else:
                until = row[1]
                if until < now + hold_ms or row[2]:
                    until = max(until, now + hold_ms + EXTEND_SLACK_MS)
                    db.execute("UPDATE holds SET until = ?, gone = 0 WHERE name = ?", (until, name))
                hold = Hold(holder, until, False, bool(row[3]), removed, now)
            if hold.pending and lock_ms:
                token, wait = self._take_lock(db, name, lock_ms, now)
                return Hold(hold.holder, hold.until, False, True, removed, now, token, wait)
            return hold

    def _check_epoch(self, db: sqlite3.Connection, now: int) -> None:
        """Inside a write: the epoch this process saw is still the store's, or a quarantine
        starts (a first sight of a store with none just writes one)."""
        epoch = self._meta(db, "epoch", now)
        if epoch is not None and epoch == self.epoch:
            return
        if epoch is None:
            epoch = secrets.token_hex(8)
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value, expires) VALUES ('epoch', ?, NULL)",
                (epoch,),
            )
        if self.epoch is not None:  # this process saw another epoch: the data was lost
            grace = self.quarantine_ms
            if self._meta_ttl(db, "recovering", now) == 0:
                db.execute(
                    "INSERT OR REPLACE INTO meta (key, value, expires) VALUES ('recovering', ?, ?)",
                    (epoch, now + grace),
                )
            report_loss(self.where, grace, self.on_loss)
        self.epoch = epoch

    @staticmethod
    def _meta(db: sqlite3.Connection, key: str, now: int) -> str | None:
        """A meta value that has not expired."""
        row = db.execute("SELECT value, expires FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None or (row[1] is not None and row[1] <= now):
            return None
        value: str = row[0]
        return value

    @staticmethod
    def _meta_ttl(db: sqlite3.Connection, key: str, now: int) -> int:
        """How long an expiring meta value has left, ms (0: none)."""
        row = db.execute("SELECT expires FROM meta WHERE key = ?", (key,)).fetchone()
        return max(0, row[0] - now) if row is not None and row[0] is not None else 0

    def _take_lock(
        self, db: sqlite3.Connection, name: str, ttl_ms: int, now: int
    ) -> tuple[str | None, int]:
        """Take the per-name lock unless another's has not expired: (token, 0) or (None, what
        the other's has left)."""
        token = secrets.token_hex(16)
        changed = db.execute(
            "INSERT INTO locks (name, token, expires) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET token = excluded.token, "
            "expires = excluded.expires WHERE locks.expires <= ?",
            (name, token, now + ttl_ms, now),
        ).rowcount
        if changed == 1:
            return token, 0
        row = db.execute("SELECT expires FROM locks WHERE name = ?", (name,)).fetchone()
        return None, max(1, row[0] - now)

    def get(self, name: str) -> Hold | None:
        """The hold on `name`, or None."""
        with self._read() as db:
            row = db.execute(HOLD_COLUMNS, (name,)).fetchone()
        now = self._now()
        return None if row is None else Hold(row[0], row[1], bool(row[2]), bool(row[3]), now=now)

    def verify(self, name: str, holder: str, lock: str | None = None) -> None:
        """Clear the pending mark and release the lock."""
        with self._write() as db:
            db.execute("UPDATE holds SET pending = 0 WHERE name = ? AND holder = ?", (name, holder))
            if lock is not None:
                db.execute("DELETE FROM locks WHERE name = ? AND token = ?", (name, lock))

    def mark_gone(self, name: str, seen: Hold, grace_ms: int) -> bool:
        """Compare-and-set the gone mark."""
        with self._write() as db:
            changed = db.execute(
                f"UPDATE holds SET gone = 1, until = max(until, ?) WHERE {AS_SEEN}",
                (self._now() + grace_ms, *_seen(name, seen)),
            ).rowcount
        return changed == 1

    def transfer(
        self, name: str, seen: Hold | None, holder: str, hold_ms: int, pending: bool
    ) -> bool:
        """Compare-and-set the holder."""
        with self._write() as db:
            until = self._now() + hold_ms
            if seen is None:
                changed = db.execute(
                    "INSERT OR IGNORE INTO holds (name, holder, until, gone, pending) "
                    "VALUES (?, ?, ?, 0, ?)",
                    (name, holder, until, int(pending)),
                ).rowcount
            else:
                changed = db.execute(
                    f"UPDATE holds SET holder = ?, until = ?, gone = 0, pending = ? "
                    f"WHERE {AS_SEEN}",
                    (holder, until, int(pending), *_seen(name, seen)),
                ).rowcount
        return changed == 1

    def drop(self, name: str, seen: Hold, lock: str | None = None) -> bool:
        """Compare-and-delete; release the lock."""
        with self._write() as db:
            changed = db.execute(f"DELETE FROM holds WHERE {AS_SEEN}", _seen(name, seen)).rowcount
            if lock is not None:
                db.execute("DELETE FROM locks WHERE name = ? AND token = ?", (name, lock))
        return changed == 1

    def keep(self, name: str, grace_ms: int, gone: bool) -> Hold | None:
        """Extend a recorded hold and set its gone mark."""
        with self._write() as db:
            now = self._now()
            row = db.execute(HOLD_COLUMNS, (name,)).fetchone()
            if row is None:
                return None
            until = max(row[1], now + grace_ms)
            db.execute(
                "UPDATE holds SET until = ?, gone = ? WHERE name = ?", (until, int(gone), name)
            )
        return Hold(row[0], until, gone, bool(row[3]), now=now)

    def names_of(self, holder: str) -> list[str]:
        """Every name the holder holds (an index on holder)."""
        with self._read() as db:
            return [
                row[0]
                for row in db.execute(
                    "SELECT name FROM holds WHERE holder = ? ORDER BY name", (holder,)
                )
            ]

    def remove(self, name: str, identity: str, for_ms: int) -> None:
        """Insert or extend a removal."""
        with self._write() as db:
            db.execute(
                "INSERT INTO removals (name, identity, until) VALUES (?, ?, ?) "
                "ON CONFLICT (name, identity) DO UPDATE SET "
                "until = max(until, excluded.until)",
                (name, identity, self._now() + for_ms),
            )

    def removed(self, name: str, identity: str) -> bool:
        """A removal that has not run out."""
        with self._read() as db:
            row = db.execute(
                "SELECT until FROM removals WHERE name = ? AND identity = ?", (name, identity)
            ).fetchone()
            return row is not None and row[0] > self._now()

    def unlock(self, name: str, token: str) -> None:
        """Delete the lock if it is still ours."""
        with self._write() as db:
            db.execute("DELETE FROM locks WHERE name = ? AND token = ?", (name, token))

    def first_seen(self, event_id: str, keep_ms: int) -> bool:
        """Insert the event id unless present and unexpired."""
        key = "event:" + event_id
        with self._write() as db:
            now = self._now()
            if self._meta(db, key, now) is not None:
                return False
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value, expires) VALUES (?, '1', ?)",
                (key, now + keep_ms),
            )
        return True

    def time_ms(self) -> int:
        """The host's clock: the embedded store has no other."""
        return int(time.time() * 1000)

    def recovering_ms(self) -> int:
        """How long the quarantine still lasts, ms (0: none)."""
        with self._read() as db:
            return self._meta_ttl(db, "recovering", self._now())

    def durability_problem(self) -> str | None:
        """A file on local disk forgets nothing by itself."""
        return None

    def sweep(self, db: sqlite3.Connection) -> None:
        """Delete records and locks long expired (at most once a minute per process)."""
        if not self.sweep_due():
            return
        now = self._now()
        db.execute("DELETE FROM holds WHERE until < ?", (now - RETENTION_MS,))
        db.execute("DELETE FROM locks WHERE expires < ?", (now,))
        db.execute("DELETE FROM removals WHERE until < ?", (now,))
        db.execute("DELETE FROM meta WHERE expires < ?", (now,))
