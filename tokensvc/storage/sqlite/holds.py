"""The ownership record in the embedded SQLite file: a row per held name, the per-name locks,
the removals of identities from rooms, and the store's continuity record, quarantine and seen
event ids (`meta`).

Continuity (`loss.py`): the record keeps its epoch, birth time, origin and the identity (device,
inode) of the file it was born in; a witness file beside it (`.<file>.born`, a dot file, so
`rm tokensvc.sqlite3*` leaves it) is written at birth. A file with no record and no witness is
a new deployment (the first start on this host); with a witness, a file deleted while the
deployment lived (a loss); a record whose file identity is not the path's, a replaced or
restored file (a loss). A process whose connection is to a file deleted since opens the path
again. A wiped directory (file and witness gone) is a new deployment."""

import json
import os
import secrets
import sqlite3
import time
from collections.abc import Callable

from ...errors import StorageRecovering
from ..clock import StorageClock
from ..contracts import EXTEND_SLACK_MS, RETENTION_MS, Continuity, Hold, RecordState
from ..loss import CheckSchedule, report_loss
from .base import SqliteDatabase, log

#: The WHERE clause that matches a hold exactly as it was seen.
AS_SEEN = "name = ? AND holder = ? AND until = ? AND gone = ? AND pending = ?"
HOLD_COLUMNS = "SELECT holder, until, gone, pending FROM holds WHERE name = ?"
#: A claim's read, in one statement (one snapshot): the name's hold (NULLs: none), the epoch
#: (NULL: none or expired), the identity of the file the record was born in, and whether the
#: identity's removal from the name still holds.
CLAIM_READ = (
    "SELECT h.holder, h.until, h.gone, h.pending,"
    " (SELECT value FROM meta WHERE key = 'epoch' AND (expires IS NULL OR expires > ?3)),"
    " (SELECT value FROM meta WHERE key = 'file'),"
    " EXISTS (SELECT 1 FROM removals WHERE name = ?1 AND identity = ?2 AND until > ?3)"
    " FROM (SELECT 1) LEFT JOIN holds h ON h.name = ?1"
)

#: A hold's row: holder, until, gone, pending.
Row = tuple[str, int, int, int]
#: The continuity record's rows in `meta`.
RECORD_KEYS = ("epoch", "file", "born", "origin")
#: Tables whose rows show an earlier life of the record (those that exist in the file).
LIFE_TABLES = ("holds", "removals", "usage_rooms", "webhook_endpoints")


def file_identity(path: str) -> str | None:
    """The identity (device:inode) of the file at `path`, or None when there is none."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return f"{found.st_dev}:{found.st_ino}"


def witness_path(path: str) -> str:
    """The witness beside the file at `path`: `.<name>.born` in its folder."""
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.born")


def _seen(name: str, seen: Hold) -> tuple[str, str, int, int, int]:
    """The parameters of AS_SEEN."""
    return (name, seen.holder, seen.until, int(seen.gone), int(seen.pending))


class SqliteHolds(SqliteDatabase):
    """Holds in one SQLite file (WAL), shared by every process of one host, on its clock."""

    #: How long a quarantine lasts (the ownership record sets it to one grace).
    quarantine_ms = 0
    #: How often (seconds) the continuity is checked in full (open_holds sets it).
    check_interval_s = 5.0

    def __init__(self, path: str, timeout: float) -> None:
        """Open (creating it and its folder on first use) the database at `path`."""
        super().__init__(path, timeout, StorageClock(), "holds")
        self.on_loss: Callable[[], None] | None = None
        self.witness = witness_path(self.path)
        self._schedule = CheckSchedule()
        self._connected_file: str | None = None  # the file this process's connection opened

    def _db(self) -> sqlite3.Connection:
        """This process's connection; the identity of the file it opened is kept."""
        fresh = self._connection is None or self._pid != os.getpid()
        db = super()._db()
        if fresh:
            self._connected_file = file_identity(self.path)
        return db

    def _reopen_if_moved(self) -> None:
        """A connection to a file deleted or replaced since it opened: open the path again."""
        if self._connection is not None and self._connected_file != file_identity(self.path):
            self.close()

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
        if self._schedule.due(self.check_interval_s):
            self._check_continuity()
        with self._read() as db:
            now = self._now()
            *found, epoch, born_in, removed_flag = db.execute(
                CLAIM_READ, (name, identity, now)
            ).fetchone()
        row: Row | None = None if found[0] is None else (found[0], found[1], found[2], found[3])
        removed = bool(removed_flag)
        current = epoch is not None and born_in == file_identity(self.path)
        if (
            current
            and row is not None
            and (row[0] != holder or (row[1] >= now + hold_ms and not row[2] and not row[3]))
        ):
            return Hold(row[0], row[1], bool(row[2]), bool(row[3]), removed, now)
        if not current:
            self._reopen_if_moved()
        with self._write() as db:
            now = self._now()
            if not self._record_current(db):
                self._judge(db, now, "check")
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

    def _record_current(self, db: sqlite3.Connection) -> bool:
        """Whether the record exists and was born in the file at the path."""
        epoch, born_in = (self._meta(db, key, 0) for key in ("epoch", "file"))
        return epoch is not None and born_in == file_identity(self.path)

    def check_continuity(self) -> Continuity:
        """Judge the file now (opening the path again if this process's file was deleted)."""
        return self._retried(self._check_continuity)

    def _check_continuity(self) -> Continuity:
        """One attempt of `check_continuity`."""
        self._reopen_if_moved()
        with self._write() as db:
            return self._judge(db, self._now(), "check")

    def init_record(self) -> Continuity:
        """Birth the record (origin `init`) and end the quarantine."""
        self._reopen_if_moved()
        with self._write() as db:
            return self._judge(db, self._now(), "init")

    def record_state(self) -> RecordState:
        """The record's origin and quarantine, and whether a table shows an earlier life."""
        self._reopen_if_moved()
        with self._read() as db:
            now = self._now()
            origin = self._meta(db, "origin", now)
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
            empty = not any(
                db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone()
                for table in LIFE_TABLES
                if table in tables
            )
            left = self._meta_ttl(db, "recovering", now)
        return RecordState(origin is not None, origin or "", left, empty)

    def _judge(self, db: sqlite3.Connection, now: int, mode: str) -> Continuity:
        """Inside a write: judge the file from its record and the witness beside it, birth a
        record where needed, start (or extend) the quarantine on a loss, keep the witness."""
        epoch, born_in, born, origin = (self._meta(db, key, now) for key in RECORD_KEYS)
        here = file_identity(self.path)
        lost = ""
        if mode == "init":
            epoch, origin = self._birth(db, now, "init", here)
            db.execute("DELETE FROM meta WHERE key = 'recovering'")
        elif epoch is None:
            lost = "deleted" if os.path.exists(self.witness) else ""
            epoch, origin = self._birth(db, now, "loss" if lost else "new", here)
        elif born_in is None:  # an earlier version's record: adopted
            self._set(db, "file", here or "")
            self._set(db, "born", str(now))
            self._set(db, "origin", origin := "upgrade")
        elif born_in != here:
            lost = "replaced"
            epoch, origin = self._birth(db, now, "loss", here)
        if lost:
            grace = self.quarantine_ms
            if self._meta_ttl(db, "recovering", now) < grace:
                db.execute(
                    "INSERT OR REPLACE INTO meta (key, value, expires) VALUES ('recovering', ?, ?)",
                    (epoch, now + grace),
                )
            report_loss(self.where, lost, grace, self.on_loss)
        born = self._meta(db, "born", now)
        self._keep_witness(epoch, here, born or "")
        return Continuity(
            lost,
            None,
            epoch,
            int(born or 0),
            origin or "",
            self._meta_ttl(db, "recovering", now),
        )

    def _birth(
        self, db: sqlite3.Connection, now: int, origin: str, here: str | None
    ) -> tuple[str, str]:
        """Write a new record born now in the file `here`; its (epoch, origin)."""
        epoch = secrets.token_hex(8)
        for key, value in zip(RECORD_KEYS, (epoch, here or "", str(now), origin), strict=True):
            self._set(db, key, value)
        return epoch, origin

    @staticmethod
    def _set(db: sqlite3.Connection, key: str, value: str) -> None:
        """Write a meta value that does not expire."""
        db.execute(
            "INSERT OR REPLACE INTO meta (key, value, expires) VALUES (?, ?, NULL)", (key, value)
        )

    def _keep_witness(self, epoch: str, here: str | None, born: str) -> None:
        """Write the witness beside the file unless it already names this record (a folder
        that cannot be written to leaves it missing: a later deletion then looks new)."""
        content = json.dumps({"epoch": epoch, "file": here, "born": born}, sort_keys=True)
        try:
            with open(self.witness, encoding="utf-8") as found:
                if found.read() == content:
                    return
        except OSError:
            pass
        try:
            with open(self.witness + ".tmp", "w", encoding="utf-8") as written:
                written.write(content)
            os.replace(self.witness + ".tmp", self.witness)
        except OSError as exc:
            log.warning(
                "storage at %s: the witness %s could not be written (%s): a deletion of the "
                "file would look like a new deployment",
                self.where,
                self.witness,
                type(exc).__name__,
            )

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
