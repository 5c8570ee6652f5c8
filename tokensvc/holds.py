"""The ownership record: which tenant holds which room name, and one creator per name at a time.

A LiveKit token names a room, not one life of it, so the service keeps its own record of who
holds each name (`STORAGE_URL`) and LiveKit's `metadata.auth_id` is only its mirror. A hold is
`(holder, until, gone, pending)`: the holder's tenant id ("" for the anonymous namespace), the
time (epoch ms) before which it cannot end, whether the service has seen the room gone from
LiveKit since the holder's last token, and whether LiveKit's word on the name is still to be
checked (a fresh claim). Every operation is one atomic step on its backend:

- `claim(name, holder, until)`: give the name to `holder` unless another holder has it (a new
  hold is pending); the holder's own hold is extended to `until` (never shortened) and its
  `gone` mark cleared; `verify` clears `pending` once LiveKit's word was checked;
- `mark_gone`, `transfer` and `drop`: change a hold only if it is still exactly as `seen`
  (compare-and-set), so a concurrent token of the holder wins;
- `lock(name, ttl)` / `unlock(name, token)`: an expiring per-name lock released only by its
  holder, held across "absent in LiveKit? then CreateRoom" by every instance.

Backends: SQLite on local disk (the default; one file serves every worker of one host) and Redis
(`redis://`, `rediss://`, `redis+sentinel://`; shared by every instance). A record is kept until
`RETENTION_MS` past its `until` (Redis key expiry; a sweep on SQLite), so the storage does not
grow with every name ever used. Any failure of the storage is `StorageUnavailable` (503).
No Flask here.
"""

import logging
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from .errors import StorageUnavailable

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


@dataclass(frozen=True)
class Hold:
    """One name's hold: who has it, until when at least (epoch ms), whether its room was seen
    gone, and whether it is pending (claimed, but LiveKit's word on the name not checked yet)."""

    holder: str
    until: int
    gone: bool = False
    pending: bool = False
    removed: bool = False  # (from a claim naming an identity) that identity was removed


def now_ms() -> int:
    """The current time in epoch milliseconds."""
    return int(time.time() * 1000)


class HoldStore(Protocol):
    """What the service needs of a storage backend."""

    where: str

    def claim(self, name: str, holder: str, until: int, identity: str | None = None) -> Hold:
        """Give `name` to `holder` unless held by another (a new hold is pending); extend the
        holder's own; return the hold as it now is, saying whether `identity` (when given) was
        removed from the room (one round trip for both)."""

    def get(self, name: str) -> Hold | None:
        """Return the hold on `name`, or None."""

    def verify(self, name: str, holder: str) -> None:
        """Clear the pending mark of `holder`'s hold (LiveKit's word was checked)."""

    def mark_gone(self, name: str, seen: Hold, until: int) -> bool:
        """If the hold is still `seen`: mark it gone and extend it to `until`."""

    def transfer(self, name: str, seen: Hold | None, holder: str, until: int,
                 pending: bool) -> bool:
        """If the hold is still `seen` (None: no record): give the name to `holder`."""

    def drop(self, name: str, seen: Hold) -> bool:
        """If the hold is still `seen`: delete it (a claim whose request was refused)."""

    def names_of(self, holder: str) -> list[str]:
        """The names `holder` holds (from the record: no scan of LiveKit's rooms)."""

    def remove(self, name: str, identity: str, until: int) -> None:
        """Record that `identity` was removed from room `name`, until `until` (epoch ms)."""

    def removed(self, name: str, identity: str) -> bool:
        """Whether `identity` was removed from room `name` and the removal still holds."""

    def lock(self, name: str, ttl_ms: int) -> str | None:
        """Take the per-name lock for `ttl_ms`; return its token, or None when taken."""

    def unlock(self, name: str, token: str) -> None:
        """Release the lock if `token` still holds it."""

    def close(self) -> None:
        """Close connections."""


def open_holds(url: str, timeout: float, observe=None) -> "ObservedHolds":
    """The hold store named by `url` (sqlite:///path or a Redis URL), reporting each call to
    `observe(operation, outcome, seconds)` when given."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        store = SqliteHolds(sqlite_path(url), timeout)
    else:
        store = RedisHolds(url, timeout)
    return ObservedHolds(store, observe)


def sqlite_path(url: str) -> str:
    """The file of a `sqlite:///relative` or `sqlite:////absolute` URL."""
    path = unquote(url.split("://", 1)[1])
    return path[1:] if path.startswith("/") else path


class ObservedHolds:
    """A hold store whose every call is timed, counted, and failures turned into 503."""

    def __init__(self, store: HoldStore, observe=None):
        """Wrap `store`; `observe(operation, outcome, seconds)` is told of every call."""
        self.store = store
        self.where = store.where
        self._observe = observe

    def __getattr__(self, operation: str):
        """Each store operation, wrapped."""
        method = getattr(self.store, operation)
        if operation == "close":
            return method

        def call(*args):
            started, outcome = time.perf_counter(), "ok"
            try:
                return method(*args)
            except StorageUnavailable:
                outcome = "storage_unavailable"
                raise
            except Exception as exc:  # sqlite3, redis-py and socket errors alike
                outcome = "storage_unavailable"
                # sqlite3's messages name no secret; a Redis error's may quote its URL.
                detail = f": {exc}" if isinstance(exc, sqlite3.Error) else ""
                log.warning("storage at %s failed in %s (%s%s)", self.where, operation,
                            type(exc).__name__, detail)
                raise StorageUnavailable() from None
            finally:
                if self._observe is not None:
                    self._observe(operation, outcome, time.perf_counter() - started)

        return call


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
"""
#: The WHERE clause that matches a hold exactly as it was seen.
AS_SEEN = "name = ? AND holder = ? AND until = ? AND gone = ? AND pending = ?"


def _seen(name: str, seen: Hold) -> tuple:
    """The parameters of AS_SEEN."""
    return (name, seen.holder, seen.until, int(seen.gone), int(seen.pending))


class SqliteHolds:
    """Holds in one SQLite file (WAL), shared by every process of one host."""

    def __init__(self, path: str, timeout: float):
        """Open (creating it and its folder on first use) the database at `path`."""
        self.path = os.path.abspath(path)
        self.where = self.path
        self.timeout = timeout
        self._lock = threading.Lock()
        self._connection, self._pid = None, None
        self._swept_at = 0.0

    def claim(self, name, holder, until, identity=None):
        """Insert, extend the holder's own hold, or return another's (one transaction; a read
        alone when the hold is already long enough)."""
        with self._read() as db:
            row = db.execute("SELECT holder, until, gone, pending FROM holds WHERE name = ?",
                             (name,)).fetchone()
            removed = identity is not None and self._removed(db, name, identity)
        if row is not None and (row[0] != holder or (row[1] >= until and not row[2])):
            return Hold(row[0], row[1], bool(row[2]), bool(row[3]), removed)
        until += EXTEND_SLACK_MS
        with self._write() as db:
            row = db.execute("SELECT holder, until, gone, pending FROM holds WHERE name = ?",
                             (name,)).fetchone()
            if row is None:
                db.execute("INSERT INTO holds (name, holder, until, gone, pending) "
                           "VALUES (?, ?, ?, 0, 1)", (name, holder, until))
                return Hold(holder, until, False, True, removed)
            if row[0] != holder:
                return Hold(row[0], row[1], bool(row[2]), bool(row[3]), removed)
            until = max(until, row[1])
            db.execute("UPDATE holds SET until = ?, gone = 0 WHERE name = ?", (until, name))
            return Hold(holder, until, False, bool(row[3]), removed)

    def get(self, name):
        """The hold on `name`, or None."""
        with self._read() as db:
            row = db.execute("SELECT holder, until, gone, pending FROM holds WHERE name = ?",
                             (name,)).fetchone()
        return None if row is None else Hold(row[0], row[1], bool(row[2]), bool(row[3]))

    def verify(self, name, holder):
        """Clear the pending mark."""
        with self._write() as db:
            db.execute("UPDATE holds SET pending = 0 WHERE name = ? AND holder = ?",
                       (name, holder))

    def mark_gone(self, name, seen, until):
        """Compare-and-set the gone mark."""
        with self._write() as db:
            changed = db.execute(f"UPDATE holds SET gone = 1, until = max(until, ?) "
                                 f"WHERE {AS_SEEN}", (until, *_seen(name, seen))).rowcount
        return changed == 1

    def transfer(self, name, seen, holder, until, pending):
        """Compare-and-set the holder."""
        with self._write() as db:
            if seen is None:
                changed = db.execute(
                    "INSERT OR IGNORE INTO holds (name, holder, until, gone, pending) "
                    "VALUES (?, ?, ?, 0, ?)", (name, holder, until, int(pending))).rowcount
            else:
                changed = db.execute(
                    f"UPDATE holds SET holder = ?, until = ?, gone = 0, pending = ? "
                    f"WHERE {AS_SEEN}", (holder, until, int(pending), *_seen(name, seen)),
                ).rowcount
        return changed == 1

    def drop(self, name, seen):
        """Compare-and-delete."""
        with self._write() as db:
            changed = db.execute(f"DELETE FROM holds WHERE {AS_SEEN}", _seen(name, seen)).rowcount
        return changed == 1

    def names_of(self, holder):
        """Every name the holder holds (an index on holder)."""
        with self._read() as db:
            return [row[0] for row in db.execute(
                "SELECT name FROM holds WHERE holder = ? ORDER BY name", (holder,))]

    def remove(self, name, identity, until):
        """Insert or extend a removal."""
        with self._write() as db:
            db.execute("INSERT INTO removals (name, identity, until) VALUES (?, ?, ?) "
                       "ON CONFLICT (name, identity) DO UPDATE SET "
                       "until = max(until, excluded.until)", (name, identity, until))

    def removed(self, name, identity):
        """A removal that has not run out."""
        with self._read() as db:
            return self._removed(db, name, identity)

    @staticmethod
    def _removed(db, name, identity) -> bool:
        """Whether a removal of `identity` from `name` still holds (inside a transaction)."""
        row = db.execute("SELECT until FROM removals WHERE name = ? AND identity = ?",
                         (name, identity)).fetchone()
        return row is not None and row[0] > now_ms()

    def lock(self, name, ttl_ms):
        """Take the lock unless someone else's has not expired."""
        token, now = secrets.token_hex(16), now_ms()
        with self._write() as db:
            changed = db.execute(
                "INSERT INTO locks (name, token, expires) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET token = excluded.token, "
                "expires = excluded.expires WHERE locks.expires <= ?",
                (name, token, now + ttl_ms, now),
            ).rowcount
        return token if changed == 1 else None

    def unlock(self, name, token):
        """Delete the lock if it is still ours."""
        with self._write() as db:
            db.execute("DELETE FROM locks WHERE name = ? AND token = ?", (name, token))

    def close(self):
        """Close this process's connection."""
        with self._lock:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
            self._connection = None

    def _db(self) -> sqlite3.Connection:
        """This process's connection (a forked child opens its own)."""
        if self._connection is None or self._pid != os.getpid():
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None,
                                 check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(SCHEMA)
            self._connection, self._pid = db, os.getpid()
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
        now = now_ms()
        db.execute("DELETE FROM holds WHERE until < ?", (now - RETENTION_MS,))
        db.execute("DELETE FROM locks WHERE expires < ?", (now,))
        db.execute("DELETE FROM removals WHERE until < ?", (now,))


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
# and one set per holder of the names it holds (checked against the hashes when read).
_CLAIM = """
local removed = '0'
if ARGV[8] ~= '' then
  local until_removed = redis.call('HGET', ARGV[7], ARGV[8])
  if until_removed and tonumber(until_removed) > tonumber(ARGV[9]) then removed = '1' end
end
local holder = redis.call('HGET', KEYS[1], 'holder')
if not holder then
  local till = string.format('%d', tonumber(ARGV[2]) + tonumber(ARGV[4]))
  redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'until', till, 'gone', '0', 'pending', '1')
  redis.call('PEXPIREAT', KEYS[1], tonumber(till) + tonumber(ARGV[3]))
  local names = ARGV[5] .. ARGV[1]
  redis.call('SADD', names, ARGV[6])
  if redis.call('PEXPIRETIME', names) < tonumber(till) + tonumber(ARGV[3]) then
    redis.call('PEXPIREAT', names, tonumber(till) + tonumber(ARGV[3]))
  end
  return {ARGV[1], till, '0', '1', removed}
end
local stored = redis.call('HGET', KEYS[1], 'until')
local pending = redis.call('HGET', KEYS[1], 'pending')
local gone = redis.call('HGET', KEYS[1], 'gone')
if holder ~= ARGV[1] or (tonumber(stored) >= tonumber(ARGV[2]) and gone == '0') then
  return {holder, stored, gone, pending, removed}
end
local till = math.max(tonumber(stored), tonumber(ARGV[2]) + tonumber(ARGV[4]))
redis.call('HSET', KEYS[1], 'until', string.format('%d', till), 'gone', '0')
redis.call('PEXPIREAT', KEYS[1], till + tonumber(ARGV[3]))
local names = ARGV[5] .. holder
redis.call('SADD', names, ARGV[6])
if redis.call('PEXPIRETIME', names) < till + tonumber(ARGV[3]) then
  redis.call('PEXPIREAT', names, till + tonumber(ARGV[3]))
end
return {holder, string.format('%d', till), '0', pending, removed}
"""
# ARGV: the hold as seen (holder, until, gone, pending, and '1' for "no record"), then the new
# holder, until, pending, the retention, the mode ('transfer', 'gone' or 'drop'), the prefix of
# the holders' name sets and the name.
_COMPARE_AND_SET = """
local holder = redis.call('HGET', KEYS[1], 'holder')
if ARGV[5] == '1' then
  if holder then return 0 end
else
  if holder ~= ARGV[1] or redis.call('HGET', KEYS[1], 'until') ~= ARGV[2]
     or redis.call('HGET', KEYS[1], 'gone') ~= ARGV[3]
     or redis.call('HGET', KEYS[1], 'pending') ~= ARGV[4] then return 0 end
end
if ARGV[10] == 'drop' or (ARGV[10] == 'transfer' and holder) then
  if holder then redis.call('SREM', ARGV[11] .. holder, ARGV[12]) end
end
if ARGV[10] == 'drop' then
  redis.call('DEL', KEYS[1])
  return 1
end
local till = tonumber(ARGV[7])
if ARGV[10] == 'gone' then
  till = math.max(till, tonumber(ARGV[2]))
  redis.call('HSET', KEYS[1], 'until', string.format('%d', till), 'gone', '1')
else
  redis.call('HSET', KEYS[1], 'holder', ARGV[6], 'until', ARGV[7], 'gone', '0',
             'pending', ARGV[8])
  local names = ARGV[11] .. ARGV[6]
  redis.call('SADD', names, ARGV[12])
  if redis.call('PEXPIRETIME', names) < till + tonumber(ARGV[9]) then
    redis.call('PEXPIREAT', names, till + tonumber(ARGV[9]))
  end
end
redis.call('PEXPIREAT', KEYS[1], till + tonumber(ARGV[9]))
return 1
"""
_REMOVE = """
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local till = math.max(current, tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d', till))
if redis.call('PEXPIRETIME', KEYS[1]) < till then redis.call('PEXPIREAT', KEYS[1], till) end
return 0
"""
_VERIFY = """
if redis.call('HGET', KEYS[1], 'holder') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'pending', '0')
end
return 0
"""
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisHolds:
    """Holds in Redis, shared by every instance (redis-py; Lua scripts for atomic steps)."""

    def __init__(self, url: str, timeout: float):
        """Connect lazily to the Redis at `url` (`redis+sentinel://host:port[,host:port]/name`
        for Sentinel); every call is bounded by `timeout` seconds."""
        import redis  # imported here: the embedded default needs no Redis client

        parts = urlsplit(url)
        self.where = parts.hostname or "redis"
        options = {"socket_timeout": timeout, "socket_connect_timeout": timeout,
                   "retry_on_timeout": False}
        if parts.scheme == "redis+sentinel":
            from redis.sentinel import Sentinel

            hosts = [(h.rsplit(":", 1)[0], int(h.rsplit(":", 1)[1]) if ":" in h else 26379)
                     for h in parts.netloc.rsplit("@", 1)[-1].split(",")]
            service = parts.path.strip("/").split("/")[0] or "mymaster"
            query = parse_qs(parts.query)
            sentinel = Sentinel(hosts, sentinel_kwargs=options, password=parts.password,
                                db=int(query.get("db", ["0"])[0]), **options)
            self.client = sentinel.master_for(service)
            self.where = hosts[0][0]
        else:
            self.client = redis.Redis.from_url(url, **options)
        self._claim = self.client.register_script(_CLAIM)
        self._cas = self.client.register_script(_COMPARE_AND_SET)
        self._unlock = self.client.register_script(_UNLOCK)
        self._verify = self.client.register_script(_VERIFY)
        self._remove = self.client.register_script(_REMOVE)

    @staticmethod
    def _key(kind: str, name: str) -> str:
        """The key of a name's hold or lock."""
        return f"{REDIS_PREFIX}{kind}:{name}"

    def claim(self, name, holder, until, identity=None):
        """One script: insert, extend the holder's own hold, or return another's; and whether
        `identity` was removed from the room."""
        found = self._claim(keys=[self._key("hold", name)],
                            args=[holder, until, RETENTION_MS, EXTEND_SLACK_MS,
                                  self._key("names", ""), name, self._key("removed", name),
                                  identity if identity is not None else "", now_ms()])
        holder, until, gone, pending, removed = (part.decode() for part in found)
        return Hold(holder, int(until), gone == "1", pending == "1", removed == "1")

    def get(self, name):
        """The hold on `name`, or None."""
        found = self.client.hgetall(self._key("hold", name))
        if not found:
            return None
        return Hold(found[b"holder"].decode(), int(found[b"until"]), found[b"gone"] == b"1",
                    found[b"pending"] == b"1")

    def verify(self, name, holder):
        """Clear the pending mark."""
        self._verify(keys=[self._key("hold", name)], args=[holder])

    def mark_gone(self, name, seen, until):
        """Compare-and-set the gone mark."""
        return self._compare_and_set(name, seen, (seen.holder, until, False), "gone")

    def transfer(self, name, seen, holder, until, pending):
        """Compare-and-set the holder."""
        return self._compare_and_set(name, seen, (holder, until, pending), "transfer")

    def drop(self, name, seen):
        """Compare-and-delete."""
        return self._compare_and_set(name, seen, (seen.holder, seen.until, False), "drop")

    def _compare_and_set(self, name, seen, new, mode) -> bool:
        """Run the compare-and-set script."""
        expected = ("", "", "", "", "1") if seen is None else (
            seen.holder, str(seen.until), "1" if seen.gone else "0",
            "1" if seen.pending else "0", "0")
        holder, until, pending = new
        done = self._cas(keys=[self._key("hold", name)],
                         args=[*expected, holder, until, "1" if pending else "0", RETENTION_MS,
                               mode, self._key("names", ""), name])
        return done == 1

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
        stale = [name for name, found in zip(names, holders) if found != holder.encode()]
        if stale:
            self.client.srem(key, *stale)
        return [name for name in names if name not in stale]

    def remove(self, name, identity, until):
        """One hash of removals per room, expiring with its last removal."""
        self._remove(keys=[self._key("removed", name)], args=[identity, until])

    def removed(self, name, identity):
        """A removal that has not run out."""
        until = self.client.hget(self._key("removed", name), identity)
        return until is not None and int(until) > now_ms()

    def lock(self, name, ttl_ms):
        """SET NX PX."""
        token = secrets.token_hex(16)
        taken = self.client.set(self._key("lock", name), token, nx=True, px=ttl_ms)
        return token if taken else None

    def unlock(self, name, token):
        """Compare-and-delete."""
        self._unlock(keys=[self._key("lock", name)], args=[token])

    def close(self):
        """Close the connection pool."""
        self.client.close()
