"""The embedded backend's plumbing: one SQLite file (WAL) shared by every process of one host,
a connection per process, transactions under the process's lock, schemas read from this
package's `.sql` files, and each store's sweep of expired rows on the host's clock."""

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from types import TracebackType
from typing import Literal, TypeVar
from urllib.parse import unquote

from ..clock import StorageClock
from ..observed import describe

log = logging.getLogger(__name__)

#: A store sweeps its expired rows at most this often (per process).
SWEEP_INTERVAL_S = 60.0

Result = TypeVar("Result")


def sqlite_path(url: str) -> str:
    """The file of a `sqlite:///relative` or `sqlite:////absolute` URL."""
    path = unquote(url.split("://", 1)[1])
    return path[1:] if path.startswith("/") else path


def schema(name: str) -> str:
    """The text of this package's `<name>.sql`."""
    return files(__package__ or __name__).joinpath(f"{name}.sql").read_text(encoding="utf-8")


def statements(name: str) -> list[str]:
    """The statements of this package's `<name>.sql`, one by one (to run inside a transaction,
    where `executescript` would commit first)."""
    return [text.strip() for text in schema(name).split(";") if text.strip()]


def connect_sqlite(path: str, timeout: float, script: str) -> sqlite3.Connection:
    """A connection to the SQLite file at `path` (its folder made on first use) in WAL mode,
    autocommit, with the schema `script` applied; closed again if setting it up fails."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(script)
    except BaseException:
        db.close()
        raise
    return db


class SqliteDatabase:
    """One store's access to the SQLite file at `path`: this process's connection (a forked
    child opens its own) with the store's schema, read and write transactions, and the store's
    sweep run at most once per SWEEP_INTERVAL_S before a write commits."""

    backend: Literal["sqlite"] = "sqlite"

    def __init__(self, path: str, timeout: float, clock: StorageClock, schema_name: str) -> None:
        """Use the file at `path` (made on first use) with the schema of `<schema_name>.sql`."""
        self.path = os.path.abspath(path)
        self.where = self.path
        self.timeout = timeout
        self.clock = clock
        self._schema = schema(schema_name)
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._swept_at = 0.0

    def _now(self) -> int:
        """The host's clock, shifted, ms."""
        return int(time.time() * 1000) + self.clock.shift_ms

    def _db(self) -> sqlite3.Connection:
        """This process's connection (a forked child opens its own)."""
        if self._connection is None or self._pid != os.getpid():
            self._connection, self._pid = (
                connect_sqlite(self.path, self.timeout, self._schema),
                os.getpid(),
            )
        return self._connection

    def _write(self) -> "Transaction":
        """A write transaction (BEGIN IMMEDIATE: no other writer between read and write)."""
        return Transaction(self, "BEGIN IMMEDIATE")

    def _read(self) -> "Transaction":
        """A read (autocommit)."""
        return Transaction(self, None)

    def _retried(self, operation: Callable[..., Result], *args: object) -> Result:
        """Run `operation`; an OperationalError (a busy file, a new file being set up by another
        process) is tried once more while STORAGE_TIMEOUT allows, and logged with its name."""
        started = time.monotonic()
        try:
            return operation(*args)
        except sqlite3.OperationalError as exc:
            if time.monotonic() - started >= self.timeout:
                raise
            log.info("storage at %s: %s; trying once more", self.where, describe(exc))
            return operation(*args)

    def sweep_due(self) -> bool:
        """Whether the sweep is due (at most once per SWEEP_INTERVAL_S); marks it done."""
        if time.monotonic() - self._swept_at < SWEEP_INTERVAL_S:
            return False
        self._swept_at = time.monotonic()
        return True

    def sweep(self, db: sqlite3.Connection) -> None:
        """Delete the store's expired rows (inside a write, before it commits); none here."""

    def close(self) -> None:
        """Close this process's connection."""
        with self._lock:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
            self._connection = None


class InTheRecordsTransactions:
    """A store kept in the ownership record's own transactions (usage, the reconciliation): it
    shares the hold store's connection, lock and clock, and makes its tables (`<name>.sql`) when
    it is opened and once per connection after."""

    backend: Literal["sqlite"] = "sqlite"

    def __init__(self, holds: SqliteDatabase, name: str) -> None:
        """Share `holds`' connection, lock and clock; the tables of `<name>.sql`."""
        self.holds = holds
        self.where = holds.where
        self.clock = holds.clock
        self._statements = statements(name)
        self._ready_for: sqlite3.Connection | None = None  # the connection the tables were made on
        # Made now, not at the first use: a read (a /metrics scrape, say) then writes nothing.
        with self._write():
            pass

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction of the record's, with the tables made."""
        with self.holds._write() as db:
            self._schema(db)
            yield db

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read of the record's, with the tables made."""
        with self.holds._read() as db:
            self._schema(db)
            yield db

    def _schema(self, db: sqlite3.Connection) -> None:
        """Make the tables once per connection."""
        if self._ready_for is not db:
            for statement in self._statements:
                db.execute(statement)
            self._ready_for = db


class Transaction:
    """`with` block around one SQLite transaction, holding the process's connection lock."""

    def __init__(self, database: SqliteDatabase, begin: str | None) -> None:
        """Remember the database and how to begin."""
        self.database, self.begin = database, begin

    def __enter__(self) -> sqlite3.Connection:
        """Lock, connect, begin."""
        self.database._lock.acquire()
        try:
            self.db = self.database._db()
            if self.begin:
                self.db.execute(self.begin)
        except BaseException:
            self.database._lock.release()
            raise
        return self.db

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Commit (sweeping first) or roll back, then unlock."""
        try:
            if self.begin:
                if kind is None:
                    try:
                        self.database.sweep(self.db)
                        self.db.execute("COMMIT")
                    except BaseException:
                        self._roll_back()  # never leave the connection inside a transaction
                        raise
                else:
                    self._roll_back()
        finally:
            self.database._lock.release()

    def _roll_back(self) -> None:
        """Roll back, if a transaction is still open."""
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")
