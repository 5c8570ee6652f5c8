"""The ownership record's storage: which tenant holds which room name, on one clock.

A LiveKit token names a room, not one life of it, so the service keeps its own record of who
holds each name (`STORAGE_URL`); `ownership.py` decides with it. A hold is `(holder, until, gone,
pending)`: the holder's tenant id ("" for the anonymous namespace), the time before which it
cannot end, whether the room was seen gone from LiveKit since, and whether LiveKit's word on the
name is still to be checked (a fresh claim).

**One clock.** Every deadline is decided on the storage's clock: callers pass durations, never
absolute times; Redis scripts read `TIME`, the embedded store the one host's clock. A `Hold`
carries the storage's `now` at the read, so a caller compares `until` with the same clock that
wrote it. `StorageClock.shift_ms` moves that clock for tests (0 in production).

**A storage that does not forget.** Each store keeps an epoch (a random id written once). An
instance remembers the epoch it saw; a claim that finds it gone or changed means the store lost
its data while instances ran (flush, restart without persistence, failover to an empty
replica): a quarantine of one grace starts (shared by every instance), during which a shared
name with no record is refused with `StorageRecovering` unless the caller proves its room in
LiveKit (`ownership.py`). Redis must not evict (`durability_problem`), and with
`STORAGE_REPLICAS` every write waits for that many replicas (`WAIT`).

Every operation is one atomic step on its backend; any failure is `StorageUnavailable` (503).
No Flask here.
"""

import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import ApiError, StorageRecovering, StorageUnavailable

log = logging.getLogger(__name__)

#: How long a record is kept past its hold's `until`: a name whose room still lives is decided
#: by the live room's `auth_id` (and recorded again) once its record is gone.
RETENTION_MS = 24 * 3600 * 1000
#: A hold extended is extended this much further, so the holder's next tokens for a while find
#: it long enough and write nothing (the hold only ever ends later for it).
EXTEND_SLACK_MS = 30_000
#: The embedded store sweeps expired records at most this often (per process).
SWEEP_INTERVAL_S = 60.0
#: The prefix of every Redis key the record writes.
REDIS_PREFIX = "tokensvc:"
#: The prefix of the per-holder sets of names.
NAMES_PREFIX = REDIS_PREFIX + "names:"
#: The Redis eviction policy that never drops a key.
NO_EVICTION = "noeviction"


@dataclass(frozen=True)
class Hold:
    """One name's hold: who has it, until when at least (storage clock, ms), whether its room was
    seen gone, and whether it is pending (claimed, LiveKit's word on the name not checked yet).
    The fields after `pending` say what the read found and are not part of the hold itself."""

    holder: str
    until: int
    gone: bool = False
    pending: bool = False
    removed: bool = field(default=False, compare=False)  # the identity claimed for was removed
    now: int = field(default=0, compare=False)  # the storage's clock at the read
    lock: str | None = field(default=None, compare=False)  # the per-name lock this claim took
    lock_wait_ms: int = field(default=0, compare=False)  # another's lock: how long it has left

    @property
    def running(self) -> bool:
        """Whether the hold has not run out, on the storage's clock."""
        return self.until > self.now


class StorageClock:
    """The storage's clock as the record reads it: the storage's own, moved by `shift_ms`
    (tests move it to age holds on either backend; production leaves it at 0)."""

    def __init__(self):
        """Start unshifted."""
        self.shift_ms = 0

    def advance(self, ms: int) -> None:
        """Move the storage's clock forward by `ms`."""
        self.shift_ms += ms


class HoldStore(Protocol):
    """What the ownership record needs of a storage backend. Durations in ms."""

    where: str
    clock: StorageClock
    #: Told of each detected loss of the store's data (open_holds sets it).
    on_loss: Callable[[], None] | None

    def claim(
        self,
        name: str,
        holder: str,
        hold_ms: int,
        identity: str | None = None,
        lock_ms: int = 0,
        shared: bool = True,
    ) -> Hold:
        """Give `name` to `holder` unless held by another (a new hold is pending); extend the
        holder's own to at least now + `hold_ms`; with `lock_ms`, take the per-name lock when the
        result is the caller's pending hold; say whether `identity` was removed. A shared name
        with no record during a quarantine: StorageRecovering."""

    def get(self, name: str) -> Hold | None:
        """Return the hold on `name`, or None."""

    def verify(self, name: str, holder: str, lock: str | None = None) -> None:
        """Clear the pending mark of `holder`'s hold and release `lock` (one step)."""

    def mark_gone(self, name: str, seen: Hold, grace_ms: int) -> bool:
        """If the hold is still `seen`: mark it gone and extend it to now + `grace_ms`."""

    def transfer(
        self, name: str, seen: Hold | None, holder: str, hold_ms: int, pending: bool
    ) -> bool:
        """If the hold is still `seen` (None: no record): give the name to `holder`."""

    def drop(self, name: str, seen: Hold, lock: str | None = None) -> bool:
        """If the hold is still `seen`: delete it; release `lock` either way."""

    def keep(self, name: str, grace_ms: int, gone: bool) -> Hold | None:
        """A LiveKit event for a held name: extend the hold to at least now + `grace_ms` and set
        its gone mark to `gone`; None (nothing written) when there is no record."""

    def names_of(self, holder: str) -> list[str]:
        """The names `holder` holds (from the record: no scan of LiveKit's rooms)."""

    def remove(self, name: str, identity: str, for_ms: int) -> None:
        """Record that `identity` was removed from room `name`, for `for_ms`."""

    def removed(self, name: str, identity: str) -> bool:
        """Whether `identity` was removed from room `name` and the removal still holds."""

    def unlock(self, name: str, token: str) -> None:
        """Release the lock if `token` still holds it."""

    def first_seen(self, event_id: str, keep_ms: int) -> bool:
        """Remember an event id for `keep_ms`; whether it was new."""

    def time_ms(self) -> int:
        """The storage's clock (unshifted), ms."""

    def durability_problem(self) -> str | None:
        """Why this storage may forget holds on its own (Redis evicting keys), or None."""

    def close(self) -> None:
        """Close connections."""


def open_holds(
    url: str,
    timeout: float,
    observe=None,
    replicas: int = 0,
    on_loss: Callable[[], None] | None = None,
) -> "ObservedHolds":
    """The hold store named by `url` (sqlite:///path or a Redis URL), reporting each call to
    `observe(operation, outcome, seconds)` and each detected loss of the store to `on_loss()`;
    on Redis, every write waits for `replicas` replicas."""
    scheme = urlsplit(url).scheme
    store: HoldStore
    if scheme == "sqlite":
        store = SqliteHolds(sqlite_path(url), timeout)
    else:
        store = RedisHolds(url, timeout, replicas)
    store.on_loss = on_loss
    return ObservedHolds(store, observe)


def sqlite_path(url: str) -> str:
    """The file of a `sqlite:///relative` or `sqlite:////absolute` URL."""
    path = unquote(url.split("://", 1)[1])
    return path[1:] if path.startswith("/") else path


def _store_lost(store, grace_ms: int) -> None:
    """Say once, loudly, that the store lost its data while instances ran."""
    log.warning(
        "storage at %s lost its data while the service ran (its epoch is gone): shared "
        "names without a record go only to tenants whose room LiveKit lists, for %d s",
        store.where,
        grace_ms // 1000,
    )
    if getattr(store, "on_loss", None) is not None:
        store.on_loss()


class ObservedHolds:
    """A hold store whose every call is timed, counted, and failures turned into 503."""

    def __init__(self, store: HoldStore, observe=None):
        """Wrap `store`; `observe(operation, outcome, seconds)` is told of every call."""
        self.store = store
        self.where = store.where
        self.clock = store.clock
        self._observe = observe

    def __getattr__(self, operation: str):
        """Each store operation, wrapped."""
        method = getattr(self.store, operation)
        if operation == "close":
            return method

        def call(*args, **kwargs):
            started, outcome = time.perf_counter(), "ok"
            try:
                return method(*args, **kwargs)
            except ApiError as exc:
                outcome = exc.error_code
                raise
            except Exception as exc:  # sqlite3, redis-py and socket errors alike
                outcome = "storage_unavailable"
                log.warning(
                    "storage at %s failed in %s (%s)", self.where, operation, _describe(exc)
                )
                raise StorageUnavailable() from None
            finally:
                if self._observe is not None:
                    self._observe(operation, outcome, time.perf_counter() - started)

        setattr(self, operation, call)  # made once: the next lookup finds it
        return call


def _describe(exc: Exception) -> str:
    """An exception's kind, and SQLite's error name and message (they name no secret; a Redis
    error's message may quote its URL)."""
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", None)
        return f"{type(exc).__name__} {name}: {exc}" if name else f"{type(exc).__name__}: {exc}"
    return type(exc).__name__


SCHEMA = """
CREATE TABLE IF NOT EXISTS holds (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until INTEGER NOT NULL,
    gone INTEGER NOT NULL DEFAULT 0,
    pending INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS holds_until ON holds (until);
CREATE INDEX IF NOT EXISTS holds_holder ON holds (holder);
CREATE TABLE IF NOT EXISTS removals (
    name TEXT NOT NULL,
    identity TEXT NOT NULL,
    until INTEGER NOT NULL,
    PRIMARY KEY (name, identity)
);
CREATE TABLE IF NOT EXISTS locks (
    name TEXT PRIMARY KEY,
    token TEXT NOT NULL,
    expires INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    expires INTEGER
);
"""
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


def _seen(name: str, seen: Hold) -> tuple:
    """The parameters of AS_SEEN."""
    return (name, seen.holder, seen.until, int(seen.gone), int(seen.pending))


class SqliteHolds:
    """Holds in one SQLite file (WAL), shared by every process of one host, on its clock."""

    def __init__(self, path: str, timeout: float):
        """Open (creating it and its folder on first use) the database at `path`."""
        self.path = os.path.abspath(path)
        self.where = self.path
        self.timeout = timeout
        self.clock = StorageClock()
        self.epoch: str | None = None  # the epoch this process saw
        self.on_loss: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._swept_at = 0.0

    def _now(self) -> int:
        """The host's clock, shifted, ms."""
        return int(time.time() * 1000) + self.clock.shift_ms

    def claim(self, name, holder, hold_ms, identity=None, lock_ms=0, shared=True):
        """Insert, extend the holder's own hold, or return another's; take the lock for the
        caller's pending hold (a read alone when the hold is long enough and not pending)."""
        return self._retried(self._claim, name, holder, hold_ms, identity, lock_ms, shared)

    def _claim(self, name, holder, hold_ms, identity, lock_ms, shared):
        """One attempt of `claim`."""
        with self._read() as db:
            now = self._now()
            *row, epoch, removed = db.execute(CLAIM_READ, (name, identity, now)).fetchone()
        row = None if row[0] is None else row
        removed = bool(removed)
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

    def _check_epoch(self, db, now) -> None:
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
            _store_lost(self, grace)
        self.epoch = epoch

    #: How long a quarantine lasts (the ownership record sets it to one grace).
    quarantine_ms = 0

    @staticmethod
    def _meta(db, key, now) -> str | None:
        """A meta value that has not expired."""
        row = db.execute("SELECT value, expires FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None or (row[1] is not None and row[1] <= now):
            return None
        return row[0]

    @staticmethod
    def _meta_ttl(db, key, now) -> int:
        """How long an expiring meta value has left, ms (0: none)."""
        row = db.execute("SELECT expires FROM meta WHERE key = ?", (key,)).fetchone()
        return max(0, row[0] - now) if row is not None and row[0] is not None else 0

    def _take_lock(self, db, name, ttl_ms, now) -> tuple[str | None, int]:
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

    def get(self, name):
        """The hold on `name`, or None."""
        with self._read() as db:
            row = db.execute(HOLD_COLUMNS, (name,)).fetchone()
        now = self._now()
        return None if row is None else Hold(row[0], row[1], bool(row[2]), bool(row[3]), now=now)

    def verify(self, name, holder, lock=None):
        """Clear the pending mark and release the lock."""
        with self._write() as db:
            db.execute("UPDATE holds SET pending = 0 WHERE name = ? AND holder = ?", (name, holder))
            if lock is not None:
                db.execute("DELETE FROM locks WHERE name = ? AND token = ?", (name, lock))

    def mark_gone(self, name, seen, grace_ms):
        """Compare-and-set the gone mark."""
        with self._write() as db:
            changed = db.execute(
                f"UPDATE holds SET gone = 1, until = max(until, ?) WHERE {AS_SEEN}",
                (self._now() + grace_ms, *_seen(name, seen)),
            ).rowcount
        return changed == 1

    def transfer(self, name, seen, holder, hold_ms, pending):
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

    def drop(self, name, seen, lock=None):
        """Compare-and-delete; release the lock."""
        with self._write() as db:
            changed = db.execute(f"DELETE FROM holds WHERE {AS_SEEN}", _seen(name, seen)).rowcount
            if lock is not None:
                db.execute("DELETE FROM locks WHERE name = ? AND token = ?", (name, lock))
        return changed == 1

    def keep(self, name, grace_ms, gone):
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

    def names_of(self, holder):
        """Every name the holder holds (an index on holder)."""
        with self._read() as db:
            return [
                row[0]
                for row in db.execute(
                    "SELECT name FROM holds WHERE holder = ? ORDER BY name", (holder,)
                )
            ]

    def remove(self, name, identity, for_ms):
        """Insert or extend a removal."""
        with self._write() as db:
            db.execute(
                "INSERT INTO removals (name, identity, until) VALUES (?, ?, ?) "
                "ON CONFLICT (name, identity) DO UPDATE SET "
                "until = max(until, excluded.until)",
                (name, identity, self._now() + for_ms),
            )

    def removed(self, name, identity):
        """A removal that has not run out."""
        with self._read() as db:
            return self._removed(db, name, identity, self._now())

    @staticmethod
    def _removed(db, name, identity, now) -> bool:
        """Whether a removal of `identity` from `name` still holds (inside a transaction)."""
        row = db.execute(
            "SELECT until FROM removals WHERE name = ? AND identity = ?", (name, identity)
        ).fetchone()
        return row is not None and row[0] > now

    def unlock(self, name, token):
        """Delete the lock if it is still ours."""
        with self._write() as db:
            db.execute("DELETE FROM locks WHERE name = ? AND token = ?", (name, token))

    def first_seen(self, event_id, keep_ms):
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

    def time_ms(self):
        """The host's clock: the embedded store has no other."""
        return int(time.time() * 1000)

    def durability_problem(self):
        """A file on local disk forgets nothing by itself."""
        return None

    def close(self):
        """Close this process's connection."""
        with self._lock:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
            self._connection = None

    def _retried(self, operation, *args):
        """Run `operation`; an OperationalError (a busy file, a new file being set up by another
        process) is tried once more while STORAGE_TIMEOUT allows, and logged with its name."""
        started = time.monotonic()
        try:
            return operation(*args)
        except sqlite3.OperationalError as exc:
            if time.monotonic() - started >= self.timeout:
                raise
            log.info("storage at %s: %s; trying once more", self.where, _describe(exc))
            return operation(*args)

    def _db(self) -> sqlite3.Connection:
        """This process's connection (a forked child opens its own)."""
        if self._connection is None or self._pid != os.getpid():
            self._connection, self._pid = (
                connect_sqlite(self.path, self.timeout, SCHEMA),
                os.getpid(),
            )
        return self._connection

    def _write(self):
        """A write transaction (BEGIN IMMEDIATE: no other writer between read and write)."""
        return _Transaction(self, "BEGIN IMMEDIATE")

    def _read(self):
        """A read (autocommit)."""
        return _Transaction(self, None)

    def sweep(self, db: sqlite3.Connection) -> None:
        """Delete records and locks long expired (at most once a minute per process)."""
        if time.monotonic() - self._swept_at < SWEEP_INTERVAL_S:
            return
        self._swept_at = time.monotonic()
        now = self._now()
        db.execute("DELETE FROM holds WHERE until < ?", (now - RETENTION_MS,))
        db.execute("DELETE FROM locks WHERE expires < ?", (now,))
        db.execute("DELETE FROM removals WHERE until < ?", (now,))
        db.execute("DELETE FROM meta WHERE expires < ?", (now,))


def connect_sqlite(path: str, timeout: float, schema: str) -> sqlite3.Connection:
    """A connection to the SQLite file at `path` (its folder made on first use) in WAL mode,
    autocommit, with `schema` applied; closed again if setting it up fails."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(schema)
    except BaseException:
        db.close()
        raise
    return db


class _Transaction:
    """`with` block around one SQLite transaction, holding the process's connection lock."""

    def __init__(self, holds: SqliteHolds, begin: str | None):
        """Remember the store and how to begin."""
        self.holds, self.begin = holds, begin

    def __enter__(self) -> sqlite3.Connection:
        """Lock, connect, begin."""
        self.holds._lock.acquire()
        try:
            self.db = self.holds._db()
            if self.begin:
                self.db.execute(self.begin)
        except BaseException:
            self.holds._lock.release()
            raise
        return self.db

    def __exit__(self, kind, value, traceback):
        """Commit (sweeping first) or roll back, then unlock."""
        try:
            if self.begin:
                if kind is None:
                    try:
                        self.holds.sweep(self.db)
                        self.db.execute("COMMIT")
                    except BaseException:
                        self._roll_back()  # never leave the connection inside a transaction
                        raise
                else:
                    self._roll_back()
        finally:
            self.holds._lock.release()

    def _roll_back(self) -> None:
        """Roll back, if a transaction is still open."""
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")


# Redis: one hash per name {holder, until, gone, pending}, expiring RETENTION_MS after `until`,
# and one set per holder of the names it holds (checked against the hashes when read). Every
# script reads the clock from TIME and names its arguments first.
_CLOCK = """
local function clock(shift)
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(shift)
end
local function keep_names(names_key, name, expire_at)
  redis.call('SADD', names_key, name)
  if redis.call('PEXPIRETIME', names_key) < expire_at then
    redis.call('PEXPIREAT', names_key, expire_at)
  end
end
"""
_CLAIM = (
    _CLOCK
    + """
local hold_key, removed_key, lock_key, epoch_key, recovering_key = unpack(KEYS)
local holder, hold_ms, slack, retention, names_prefix, name, identity, known_epoch,
      lock_token, lock_ms, shared, shift = unpack(ARGV)
hold_ms, slack, retention, lock_ms = tonumber(hold_ms), tonumber(slack), tonumber(retention),
                                     tonumber(lock_ms)
local now = clock(shift)
local epoch = redis.call('GET', epoch_key)
if epoch ~= known_epoch then return {'epoch', epoch or ''} end
local removed = '0'
if identity ~= '' then
  local until_removed = redis.call('HGET', removed_key, identity)
  if until_removed and tonumber(until_removed) > now then removed = '1' end
end
local found = redis.call('HMGET', hold_key, 'holder', 'until', 'gone', 'pending')
local held_by, till, gone, pending = found[1], found[2], found[3], found[4]
if not held_by then
  if shared == '1' then
    local recovering_until = tonumber(redis.call('GET', recovering_key) or '0')
    if recovering_until > now then
      return {'recovering', string.format('%d', recovering_until - now)}
    end
  end
  held_by, till, gone, pending = holder, now + hold_ms + slack, '0', '1'
  redis.call('HSET', hold_key, 'holder', holder, 'until', string.format('%d', till),
             'gone', '0', 'pending', '1')
  redis.call('PEXPIREAT', hold_key, till + retention)
  keep_names(names_prefix .. holder, name, till + retention)
elseif held_by == holder then
  till = tonumber(till)
  if till < now + hold_ms or gone == '1' then
    till = math.max(till, now + hold_ms + slack)
    gone = '0'
    redis.call('HSET', hold_key, 'until', string.format('%d', till), 'gone', '0')
    redis.call('PEXPIREAT', hold_key, till + retention)
    keep_names(names_prefix .. holder, name, till + retention)
  end
end
local locked, wait = '', 0
if held_by == holder and pending == '1' and lock_ms > 0 then
  if redis.call('SET', lock_key, lock_token, 'NX', 'PX', lock_ms) then
    locked = lock_token
  else
    wait = redis.call('PTTL', lock_key)
  end
end
return {'hold', held_by, string.format('%d', till), gone, pending, removed,
        string.format('%d', now), locked, tostring(wait)}
"""
)
_RECOVER = (
    _CLOCK
    + """
local epoch_key, recovering_key = unpack(KEYS)
local known_epoch, new_epoch, quarantine_ms, shift = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local epoch = redis.call('GET', epoch_key)
if not epoch then
  redis.call('SET', epoch_key, new_epoch)
  epoch = new_epoch
end
local lost = '0'
if known_epoch ~= '' and epoch ~= known_epoch then
  lost = '1'
  local recovering_until = string.format('%d', clock(shift) + quarantine_ms)
  redis.call('SET', recovering_key, recovering_until, 'NX', 'PX', quarantine_ms)
end
return {epoch, lost}
"""
)
_COMPARE_AND_SET = (
    _CLOCK
    + """
local hold_key, lock_key = unpack(KEYS)
local seen_holder, seen_until, seen_gone, seen_pending, no_record, holder, duration_ms, pending,
      retention, mode, names_prefix, name, lock_token, shift = unpack(ARGV)
local now = clock(shift)
if lock_token ~= '' and redis.call('GET', lock_key) == lock_token then
  redis.call('DEL', lock_key)
end
local found = redis.call('HMGET', hold_key, 'holder', 'until', 'gone', 'pending')
if no_record == '1' then
  if found[1] then return 0 end
elseif found[1] ~= seen_holder or found[2] ~= seen_until or found[3] ~= seen_gone
       or found[4] ~= seen_pending then
  return 0
end
if (mode == 'drop' or mode == 'transfer') and found[1] then
  redis.call('SREM', names_prefix .. found[1], name)
end
if mode == 'drop' then
  redis.call('DEL', hold_key)
  return 1
end
local till = now + tonumber(duration_ms)
if mode == 'gone' then
  till = math.max(till, tonumber(seen_until))
  redis.call('HSET', hold_key, 'until', string.format('%d', till), 'gone', '1')
else
  redis.call('HSET', hold_key, 'holder', holder, 'until', string.format('%d', till), 'gone', '0',
             'pending', pending)
  keep_names(names_prefix .. holder, name, till + tonumber(retention))
end
redis.call('PEXPIREAT', hold_key, till + tonumber(retention))
return 1
"""
)
_KEEP = (
    _CLOCK
    + """
local hold_key = KEYS[1]
local grace_ms, gone, retention, names_prefix, name, shift = unpack(ARGV)
local now = clock(shift)
local found = redis.call('HMGET', hold_key, 'holder', 'until', 'pending')
if not found[1] then return {} end
local till = math.max(tonumber(found[2]), now + tonumber(grace_ms))
redis.call('HSET', hold_key, 'until', string.format('%d', till), 'gone', gone)
redis.call('PEXPIREAT', hold_key, till + tonumber(retention))
keep_names(names_prefix .. found[1], name, till + tonumber(retention))
return {found[1], string.format('%d', till), found[3], string.format('%d', now)}
"""
)
_VERIFY = """
local hold_key, lock_key = unpack(KEYS)
local holder, lock_token = unpack(ARGV)
if redis.call('HGET', hold_key, 'holder') == holder then
  redis.call('HSET', hold_key, 'pending', '0')
end
if lock_token ~= '' and redis.call('GET', lock_key) == lock_token then
  redis.call('DEL', lock_key)
end
return 0
"""
_REMOVE = (
    _CLOCK
    + """
local removed_key = KEYS[1]
local identity, for_ms, shift = unpack(ARGV)
local till = math.max(tonumber(redis.call('HGET', removed_key, identity) or '0'),
                      clock(shift) + tonumber(for_ms))
redis.call('HSET', removed_key, identity, string.format('%d', till))
if redis.call('PEXPIRETIME', removed_key) < till then redis.call('PEXPIREAT', removed_key, till) end
return 0
"""
)
_REMOVED = (
    _CLOCK
    + """
local until_removed = redis.call('HGET', KEYS[1], ARGV[1])
if until_removed and tonumber(until_removed) > clock(ARGV[2]) then return 1 end
return 0
"""
)
_GET = (
    _CLOCK
    + """
local found = redis.call('HMGET', KEYS[1], 'holder', 'until', 'gone', 'pending')
return {found[1] or '', found[2] or '0', found[3] or '0', found[4] or '0',
        string.format('%d', clock(ARGV[1]))}
"""
)
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisHolds:
    """Holds in Redis, shared by every instance (redis-py; Lua scripts for atomic steps)."""

    def __init__(self, url: str, timeout: float, replicas: int = 0):
        """Connect lazily to the Redis at `url` (`redis+sentinel://host:port[,host:port]/name`
        for Sentinel); every call is bounded by `timeout` seconds; with `replicas`, every write
        is acknowledged only once that many replicas have it."""
        import redis  # imported here: the embedded default needs no Redis client

        parts = urlsplit(url)
        self.where = parts.hostname or "redis"
        self.timeout = timeout
        self.replicas = replicas
        self.clock = StorageClock()
        self.epoch: str | None = None
        self.on_loss: Callable[[], None] | None = None
        options = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "retry_on_timeout": False,
        }
        if parts.scheme == "redis+sentinel":
            from redis.sentinel import Sentinel

            hosts = [
                (h.rsplit(":", 1)[0], int(h.rsplit(":", 1)[1]) if ":" in h else 26379)
                for h in parts.netloc.rsplit("@", 1)[-1].split(",")
            ]
            service = parts.path.strip("/").split("/")[0] or "mymaster"
            query = parse_qs(parts.query)
            sentinel = Sentinel(
                hosts,
                sentinel_kwargs=options,
                password=parts.password,
                db=int(query.get("db", ["0"])[0]),
                **options,
            )
            self.client = sentinel.master_for(service)
            self.where = hosts[0][0]
        else:
            self.client = redis.Redis.from_url(url, **options)
        self._scripts = {
            name: self.client.register_script(text)
            for name, text in (
                ("claim", _CLAIM),
                ("recover", _RECOVER),
                ("cas", _COMPARE_AND_SET),
                ("keep", _KEEP),
                ("verify", _VERIFY),
                ("remove", _REMOVE),
                ("removed", _REMOVED),
                ("get", _GET),
                ("unlock", _UNLOCK),
            )
        }

    #: How long a quarantine lasts (the ownership record sets it to one grace).
    quarantine_ms = 0

    @staticmethod
    def _key(kind: str, name: str = "") -> str:
        """The key of a name's hold, lock or removals, or of the store's own records."""
        return f"{REDIS_PREFIX}{kind}:{name}" if name else f"{REDIS_PREFIX}{kind}"

    def _run(self, script: str, keys: list, args: list, write: bool = True):
        """Run a script; a write waits for STORAGE_REPLICAS replicas (WAIT, on the same
        connection), else StorageUnavailable."""
        if not (write and self.replicas):
            return self._scripts[script](keys=keys, args=args)
        pipe = self.client.pipeline(transaction=False)
        self._scripts[script](keys=keys, args=args, client=pipe)
        pipe.execute_command("WAIT", self.replicas, int(self.timeout * 1000))
        result, acknowledged = pipe.execute()
        if acknowledged < self.replicas:
            log.warning(
                "storage at %s: a write reached %d of %d replicas in time",
                self.where,
                acknowledged,
                self.replicas,
            )
            raise StorageUnavailable()
        return result

    def claim(self, name, holder, hold_ms, identity=None, lock_ms=0, shared=True):
        """One script: insert, extend the holder's own hold, or return another's; take the
        lock; say whether `identity` was removed. A changed epoch: recover, then once more."""
        for _ in range(2):
            found = self._run(
                "claim",
                [
                    self._key("hold", name),
                    self._key("removed", name),
                    self._key("lock", name),
                    self._key("epoch"),
                    self._key("recovering"),
                ],
                [
                    holder,
                    hold_ms,
                    EXTEND_SLACK_MS,
                    RETENTION_MS,
                    NAMES_PREFIX,
                    name,
                    identity if identity is not None else "",
                    self.epoch or "",
                    secrets.token_hex(16),
                    lock_ms,
                    "1" if shared else "0",
                    self.clock.shift_ms,
                ],
            )
            kind = found[0].decode()
            if kind == "hold":
                held_by, until, gone, pending, removed, now, lock, wait = (
                    part.decode() for part in found[1:]
                )
                return Hold(
                    held_by,
                    int(until),
                    gone == "1",
                    pending == "1",
                    removed == "1",
                    int(now),
                    lock or None,
                    int(wait),
                )
            if kind == "recovering":
                raise StorageRecovering(retry_after_ms=int(found[1]))
            self._recover()
        raise StorageUnavailable()

    def _recover(self) -> None:
        """The epoch this instance saw is gone or changed: adopt the store's (writing a new
        one where there is none) and, if this instance had seen another, start a quarantine."""
        epoch, lost = (
            part.decode()
            for part in self._run(
                "recover",
                [self._key("epoch"), self._key("recovering")],
                [
                    self.epoch or "",
                    secrets.token_hex(8),
                    max(1, self.quarantine_ms),
                    self.clock.shift_ms,
                ],
            )
        )
        if lost == "1":
            _store_lost(self, self.quarantine_ms)
        self.epoch = epoch

    def get(self, name):
        """The hold on `name`, or None."""
        holder, until, gone, pending, now = (
            part.decode()
            for part in self._run(
                "get", [self._key("hold", name)], [self.clock.shift_ms], write=False
            )
        )
        if not holder:
            return None
        return Hold(holder, int(until), gone == "1", pending == "1", now=int(now))

    def verify(self, name, holder, lock=None):
        """Clear the pending mark and release the lock."""
        self._run(
            "verify", [self._key("hold", name), self._key("lock", name)], [holder, lock or ""]
        )

    def mark_gone(self, name, seen, grace_ms):
        """Compare-and-set the gone mark."""
        return self._compare_and_set(name, seen, (seen.holder, grace_ms, False), "gone")

    def transfer(self, name, seen, holder, hold_ms, pending):
        """Compare-and-set the holder."""
        return self._compare_and_set(name, seen, (holder, hold_ms, pending), "transfer")

    def drop(self, name, seen, lock=None):
        """Compare-and-delete; release the lock."""
        return self._compare_and_set(name, seen, (seen.holder, 0, False), "drop", lock)

    def _compare_and_set(self, name, seen, new, mode, lock=None) -> bool:
        """Run the compare-and-set script."""
        expected = (
            ("", "", "", "", "1")
            if seen is None
            else (
                seen.holder,
                str(seen.until),
                "1" if seen.gone else "0",
                "1" if seen.pending else "0",
                "0",
            )
        )
        holder, duration, pending = new
        done = self._run(
            "cas",
            [self._key("hold", name), self._key("lock", name)],
            [
                *expected,
                holder,
                duration,
                "1" if pending else "0",
                RETENTION_MS,
                mode,
                NAMES_PREFIX,
                name,
                lock or "",
                self.clock.shift_ms,
            ],
        )
        return done == 1

    def keep(self, name, grace_ms, gone):
        """Extend a recorded hold and set its gone mark."""
        found = self._run(
            "keep",
            [self._key("hold", name)],
            [grace_ms, "1" if gone else "0", RETENTION_MS, NAMES_PREFIX, name, self.clock.shift_ms],
        )
        if not found:
            return None
        holder, until, pending, now = (part.decode() for part in found)
        return Hold(holder, int(until), gone, pending == "1", now=int(now))

    def names_of(self, holder):
        """The holder's set of names, each checked against its hold (stale ones dropped)."""
        key = self._key("names", holder)
        names = sorted(member.decode() for member in self.client.smembers(key))
        if not names:
            return []
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.hget(self._key("hold", name), "holder")
        holders = pipe.execute()
        stale = [
            name for name, found in zip(names, holders, strict=True) if found != holder.encode()
        ]
        if stale:
            self.client.srem(key, *stale)
        return [name for name in names if name not in stale]

    def remove(self, name, identity, for_ms):
        """One hash of removals per room, expiring with its last removal."""
        self._run("remove", [self._key("removed", name)], [identity, for_ms, self.clock.shift_ms])

    def removed(self, name, identity):
        """A removal that has not run out."""
        return (
            self._run(
                "removed",
                [self._key("removed", name)],
                [identity, self.clock.shift_ms],
                write=False,
            )
            == 1
        )

    def unlock(self, name, token):
        """Compare-and-delete."""
        self._run("unlock", [self._key("lock", name)], [token])

    def first_seen(self, event_id, keep_ms):
        """SET NX PX."""
        return bool(self.client.set(self._key("event", event_id), "1", nx=True, px=keep_ms))

    def time_ms(self):
        """Redis's TIME, ms."""
        seconds, micros = self.client.time()
        return seconds * 1000 + micros // 1000

    def durability_problem(self):
        """A `maxmemory-policy` other than noeviction evicts holds under memory pressure (read
        from CONFIG, else from INFO where CONFIG is disabled)."""
        import redis

        try:
            policy = self.client.config_get("maxmemory-policy").get("maxmemory-policy")
        except redis.ResponseError:
            policy = self.client.info("memory").get("maxmemory_policy")
        if policy != NO_EVICTION:
            return (
                f"Redis at {self.where} has maxmemory-policy {policy}: it may evict holds; "
                f"set maxmemory-policy noeviction"
            )
        return None

    def close(self):
        """Close the connection pool."""
        self.client.close()
