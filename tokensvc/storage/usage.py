"""The usage and quota storage: LiveKit's events per tenant and room, the rooms a tenant has live,
the seats taken in each room, and each tenant's limits; on the ownership record's storage and
clock (SQLite or Redis, the same `STORAGE_URL`), so every instance sees the same counts.

Idempotent by construction: a room is keyed by its `sid`, a session by its participant's `sid`,
and each keeps the times the events themselves carry (the earliest start seen, the first end
seen), so an event delivered twice or out of order writes what it wrote before. Every operation
is one atomic step (a Redis script, a SQLite write transaction); times are ms on the storage's
clock, durations are passed, never deadlines. No Flask here.
"""

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast

from ..errors import StorageUnavailable
from .holds import REDIS_PREFIX, HoldStore, ObservedHolds, RedisHolds, SqliteHolds

#: The Redis sorted set of the tenants with usage (by their last event).
TENANTS_KEY = REDIS_PREFIX + "usage:tenants"
#: The storage's sweep of old usage runs at most this often (per process), SQLite only (Redis
#: keys expire by themselves).
SWEEP_INTERVAL_S = 60.0


@dataclass(frozen=True)
class EventFacts:
    """What one LiveKit event says, in the storage's terms. Times in ms (0: not given)."""

    kind: str
    tenant: str  # the room name's holder ("" when the record does not know it)
    name: str  # LiveKit's room name
    room_sid: str
    room_started: int  # the room's creation time, else the event's
    at: int  # the event's creation time
    participant_sid: str = ""
    identity: str = ""
    joined: int = 0  # the participant's join time


@dataclass(frozen=True)
class RoomRecord:
    """One life of a room (one sid): its tenant and name, when it started and finished."""

    sid: str
    tenant: str
    name: str
    started: int
    finished: int | None


@dataclass(frozen=True)
class SessionRecord:
    """One participant session (one participant sid) in one room life."""

    sid: str
    room_sid: str
    identity: str
    joined: int | None
    left: int | None


@dataclass(frozen=True)
class MintCheck:
    """The answer of `check_mint`: the quota refused (None: none) and the count it found, and
    whether this call reserved a room slot (to release if the token is not issued)."""

    refused: str | None
    count: int = 0
    reserved: bool = False


def open_usage(holds: ObservedHolds, retention_ms: int, observe=None) -> ObservedHolds:
    """The usage store beside a hold store, on its backend, connection and clock, keeping each
    record `retention_ms` past its last event; every call timed, counted and reported to
    `observe(operation, outcome, seconds)` as the record's are, failures turned into 503."""
    store = holds.store
    usage: SqliteUsage | RedisUsage
    if isinstance(store, SqliteHolds):
        usage = SqliteUsage(store, retention_ms)
    else:
        usage = RedisUsage(cast(RedisHolds, store), retention_ms)
    return ObservedHolds(cast(HoldStore, usage), observe)


def _limit_text(value: int | None) -> str:
    """A limit as the storage keeps it ("" for none)."""
    return "" if value is None else str(value)


SQLITE_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS usage_rooms (
        sid TEXT PRIMARY KEY, tenant TEXT NOT NULL, name TEXT NOT NULL,
        started_at INTEGER NOT NULL, finished_at INTEGER, seen_at INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS usage_rooms_tenant ON usage_rooms (tenant, started_at)",
    "CREATE INDEX IF NOT EXISTS usage_rooms_name ON usage_rooms (name)",
    """CREATE TABLE IF NOT EXISTS usage_sessions (
        sid TEXT PRIMARY KEY, room_sid TEXT NOT NULL, identity TEXT NOT NULL,
        joined_at INTEGER, left_at INTEGER,
        seated INTEGER NOT NULL DEFAULT 0, refused INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX IF NOT EXISTS usage_sessions_room ON usage_sessions (room_sid)",
    """CREATE TABLE IF NOT EXISTS quota_rooms (
        tenant TEXT NOT NULL, name TEXT NOT NULL, sid TEXT, reserved_until INTEGER,
        PRIMARY KEY (tenant, name))""",
    """CREATE TABLE IF NOT EXISTS quota_limits (
        tenant TEXT PRIMARY KEY, max_rooms INTEGER, max_participants INTEGER)""",
)
#: The seats taken in the live lives of a room name (seated, not left, room not finished).
SEATED = """SELECT DISTINCT s.identity FROM usage_sessions s JOIN usage_rooms r
            ON s.room_sid = r.sid WHERE r.name = ? AND r.finished_at IS NULL
            AND s.left_at IS NULL AND s.seated = 1"""


class SqliteUsage:
    """Usage and quotas in the ownership record's SQLite file, in its transactions."""

    def __init__(self, holds: SqliteHolds, retention_ms: int):
        """Share `holds`' connection, lock and clock."""
        self.holds = holds
        self.where = holds.where
        self.clock = holds.clock
        self.retention_ms = retention_ms
        self._ready_for = None  # the connection the schema was made on
        self._swept_at = 0.0

    @contextmanager
    def _write(self):
        """A write transaction of the record's, with the usage tables made."""
        with self.holds._write() as db:
            self._schema(db)
            yield db

    @contextmanager
    def _read(self):
        """A read of the record's, with the usage tables made."""
        with self.holds._read() as db:
            self._schema(db)
            yield db

    def _schema(self, db) -> None:
        """Make the usage tables once per connection."""
        if self._ready_for is not db:
            for statement in SQLITE_SCHEMA:
                db.execute(statement)
            self._ready_for = db

    def record(self, facts: EventFacts, default_max_participants: int | None) -> str:
        """Apply one event: the room, the session, the tenant's live rooms and the room's
        seats. Return "metered", "over_quota" (a join beyond the room's participant limit: not
        seated) or "ignored" (a room of no known tenant)."""
        return self.holds._retried(self._record, facts, default_max_participants)

    def _record(self, facts, default_max):
        """One attempt of `record`."""
        with self._write() as db:
            now = self.holds._now()
            self._sweep(db, now)
            room = db.execute(
                "SELECT tenant, started_at, finished_at FROM usage_rooms WHERE sid = ?",
                (facts.room_sid,),
            ).fetchone()
            tenant = room[0] if room is not None else facts.tenant
            if not tenant:
                return "ignored"
            started = min(t for t in (facts.room_started, facts.joined, room and room[1]) if t)
            finished = room[2] if room is not None else None
            if facts.kind == "room_finished" and finished is None:
                finished = facts.at
            db.execute(
                "INSERT INTO usage_rooms (sid, tenant, name, started_at, finished_at, "
                "seen_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (sid) DO UPDATE SET "
                "started_at = excluded.started_at, finished_at = excluded.finished_at, "
                "seen_at = excluded.seen_at",
                (facts.room_sid, tenant, facts.name, started, finished, now),
            )
            if finished is None:
                db.execute(
                    "INSERT INTO quota_rooms (tenant, name, sid, reserved_until) "
                    "VALUES (?, ?, ?, NULL) ON CONFLICT (tenant, name) DO UPDATE SET "
                    "sid = excluded.sid, reserved_until = NULL",
                    (tenant, facts.name, facts.room_sid),
                )
            else:
                db.execute(
                    "DELETE FROM quota_rooms WHERE tenant = ? AND name = ? AND sid = ?",
                    (tenant, facts.name, facts.room_sid),
                )
            if not facts.participant_sid:
                return "metered"
            return self._session(db, facts, tenant, finished, default_max)

    def _session(self, db, facts, tenant, finished, default_max) -> str:
        """The participant's session: its join and leave times, and on a join its seat."""
        found = db.execute(
            "SELECT joined_at, left_at, seated, refused FROM usage_sessions WHERE sid = ?",
            (facts.participant_sid,),
        ).fetchone()
        joined, left, seated, refused = found if found is not None else (None, None, 0, 0)
        if facts.joined and (joined is None or facts.joined < joined):
            joined = facts.joined
        if facts.kind == "participant_left" and left is None:
            left = facts.at
        outcome = "metered"
        if (
            facts.kind == "participant_joined"
            and left is None
            and finished is None
            and not seated
            and not refused
        ):
            limit = self._max_participants(db, tenant, default_max)
            others = [
                row[0] for row in db.execute(SEATED, (facts.name,)) if row[0] != facts.identity
            ]
            if limit is not None and len(others) >= limit:
                refused, outcome = 1, "over_quota"
            else:
                seated = 1
        db.execute(
            "INSERT INTO usage_sessions (sid, room_sid, identity, joined_at, left_at, "
            "seated, refused) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sid) DO UPDATE "
            "SET joined_at = excluded.joined_at, left_at = excluded.left_at, "
            "seated = excluded.seated, refused = excluded.refused",
            (facts.participant_sid, facts.room_sid, facts.identity, joined, left, seated, refused),
        )
        return outcome

    @staticmethod
    def _max_participants(db, tenant, default_max) -> int | None:
        """The tenant's participant limit as last recorded at a mint, else the default."""
        row = db.execute(
            "SELECT max_participants FROM quota_limits WHERE tenant = ?", (tenant,)
        ).fetchone()
        return row[0] if row is not None else default_max

    def check_mint(
        self, tenant, name, identity, max_rooms, max_participants, reserve_ms
    ) -> MintCheck:
        """Record the tenant's limits; refuse a seat in a full room (unless `identity` is
        seated) or a room beyond the tenant's live rooms; else reserve the room for
        `reserve_ms` when it is not counted yet."""
        return self.holds._retried(
            self._check_mint, tenant, name, identity, max_rooms, max_participants, reserve_ms
        )

    def _check_mint(self, tenant, name, identity, max_rooms, max_participants, reserve_ms):
        """One attempt of `check_mint`."""
        with self._write() as db:
            now = self.holds._now()
            db.execute(
                "INSERT INTO quota_limits (tenant, max_rooms, max_participants) "
                "VALUES (?, ?, ?) ON CONFLICT (tenant) DO UPDATE SET max_rooms = "
                "excluded.max_rooms, max_participants = excluded.max_participants "
                "WHERE max_rooms IS NOT excluded.max_rooms OR max_participants IS NOT "
                "excluded.max_participants",
                (tenant, max_rooms, max_participants),
            )
            if max_participants is not None:
                others = [row[0] for row in db.execute(SEATED, (name,)) if row[0] != identity]
                if len(others) >= max_participants:
                    return MintCheck("max_participants", len(others))
            if max_rooms is None:
                return MintCheck(None)
            row = db.execute(
                "SELECT sid, reserved_until FROM quota_rooms WHERE tenant = ? AND name = ?",
                (tenant, name),
            ).fetchone()
            if row is not None and (row[0] is not None or row[1] > now):
                if row[0] is None:
                    db.execute(
                        "UPDATE quota_rooms SET reserved_until = max(reserved_until, ?) "
                        "WHERE tenant = ? AND name = ?",
                        (now + reserve_ms, tenant, name),
                    )
                return MintCheck(None)
            db.execute(
                "DELETE FROM quota_rooms WHERE tenant = ? AND sid IS NULL AND reserved_until <= ?",
                (tenant, now),
            )
            count = db.execute(
                "SELECT count(*) FROM quota_rooms WHERE tenant = ?", (tenant,)
            ).fetchone()[0]
            if count >= max_rooms:
                return MintCheck("max_rooms", count)
            db.execute(
                "INSERT INTO quota_rooms (tenant, name, sid, reserved_until) VALUES "
                "(?, ?, NULL, ?)",
                (tenant, name, now + reserve_ms),
            )
            return MintCheck(None, count, True)

    def release(self, tenant, name) -> None:
        """Drop the tenant's reservation of `name` (a room seen live stays counted)."""
        with self._write() as db:
            db.execute(
                "DELETE FROM quota_rooms WHERE tenant = ? AND name = ? AND sid IS NULL",
                (tenant, name),
            )

    def live_rooms(self, tenant) -> list[str]:
        """The names the tenant has counted as live or reserved now."""
        with self._read() as db:
            now = self.holds._now()
            return [
                row[0]
                for row in db.execute(
                    "SELECT name FROM quota_rooms WHERE tenant = ? AND (sid IS NOT NULL OR "
                    "reserved_until > ?) ORDER BY name",
                    (tenant, now),
                )
            ]

    def usage(self, tenant: str | None, start: int, end: int):
        """(the storage's now, rooms, sessions) of the rooms of `tenant` (None: every tenant)
        whose lives overlap [start, end)."""
        with self._read() as db:
            now = self.holds._now()
            where = "started_at < ? AND (finished_at IS NULL OR finished_at >= ?)"
            parameters: list[int | str] = [end, start]
            if tenant is not None:
                where += " AND tenant = ?"
                parameters.append(tenant)
            rooms = [
                RoomRecord(*row)
                for row in db.execute(
                    f"SELECT sid, tenant, name, started_at, finished_at FROM usage_rooms "
                    f"WHERE {where}",
                    parameters,
                )
            ]
            sessions = []
            for room in rooms:
                sessions += [
                    SessionRecord(*row)
                    for row in db.execute(
                        "SELECT sid, room_sid, identity, joined_at, left_at FROM usage_sessions "
                        "WHERE room_sid = ?",
                        (room.sid,),
                    )
                ]
        return now, rooms, sessions

    def _sweep(self, db, now) -> None:
        """Delete rooms (and their sessions) last seen more than the retention ago."""
        if time.monotonic() - self._swept_at < SWEEP_INTERVAL_S or not self.retention_ms:
            return
        self._swept_at = time.monotonic()
        cutoff = now - self.retention_ms
        db.execute(
            "DELETE FROM usage_sessions WHERE room_sid IN (SELECT sid FROM usage_rooms "
            "WHERE coalesce(finished_at, seen_at) < ?)",
            (cutoff,),
        )
        db.execute("DELETE FROM usage_rooms WHERE coalesce(finished_at, seen_at) < ?", (cutoff,))
        db.execute(
            "DELETE FROM quota_rooms WHERE sid IS NOT NULL AND sid NOT IN "
            "(SELECT sid FROM usage_rooms)"
        )

    def time_ms(self) -> int:
        """The storage's clock, shifted, ms."""
        return self.holds._now()

    def close(self) -> None:
        """The record closes the shared connection."""


# Redis: per room life `usage:room:<sid>` {tenant, name, started, finished}; per session
# `usage:session:<participant sid>` {room, identity, joined, left, seated, refused}; per room life
# the set `usage:sessions:<sid>`; per tenant the sorted set `usage:rooms:<tenant>` (room sids by
# start) and the sorted set `usage:tenants`; per tenant the hash `quota:rooms:<tenant>` (name ->
# "s:<sid>" live, or "r:<until>" reserved), per room name the hash `quota:seats:<name>`
# (participant sid -> "<room sid>|<identity>") and per tenant `quota:limits:<tenant>`. Every key
# expires the retention after its last write. Scripts read the clock from TIME.
_CLOCK = """
local function clock(shift)
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(shift)
end
local function seated_others(seats_key, identity)
  local seen, count = {}, 0
  for _, value in ipairs(redis.call('HVALS', seats_key)) do
    local who = string.sub(value, string.find(value, '|', 1, true) + 1)
    if who ~= identity and not seen[who] then seen[who] = true; count = count + 1 end
  end
  return count
end
"""
_RECORD = (
    _CLOCK
    + """
local kind, tenant, name, room_sid, room_started, at, psid, identity, joined, retention,
      default_max, prefix, shift = unpack(ARGV)
room_started, at, joined, retention = tonumber(room_started), tonumber(at), tonumber(joined),
                                      tonumber(retention)
local now = clock(shift)
local room_key = prefix .. 'usage:room:' .. room_sid
local found = redis.call('HMGET', room_key, 'tenant', 'started', 'finished')
if found[1] then tenant = found[1] end
if tenant == '' then return 'ignored' end
local started = room_started
if joined > 0 and joined < started then started = joined end
if found[2] and tonumber(found[2]) < started then started = tonumber(found[2]) end
local finished = found[3]
if kind == 'room_finished' and not finished then
  finished = string.format('%d', at)
  redis.call('HSET', room_key, 'finished', finished)
end
redis.call('HSET', room_key, 'tenant', tenant, 'name', name, 'started',
           string.format('%d', started))
redis.call('PEXPIRE', room_key, retention)
local rooms_key = prefix .. 'usage:rooms:' .. tenant
redis.call('ZADD', rooms_key, started, room_sid)
redis.call('ZREMRANGEBYSCORE', rooms_key, '-inf', now - retention)
redis.call('PEXPIRE', rooms_key, retention)
redis.call('ZADD', prefix .. 'usage:tenants', now, tenant)
redis.call('ZREMRANGEBYSCORE', prefix .. 'usage:tenants', '-inf', now - retention)
local live_key = prefix .. 'quota:rooms:' .. tenant
local seats_key = prefix .. 'quota:seats:' .. name
if not finished then
  redis.call('HSET', live_key, name, 's:' .. room_sid)
  redis.call('PEXPIRE', live_key, retention)
else
  if redis.call('HGET', live_key, name) == 's:' .. room_sid then
    redis.call('HDEL', live_key, name)
  end
  local entries = redis.call('HGETALL', seats_key)
  for i = 1, #entries, 2 do
    if string.sub(entries[i + 1], 1, #room_sid + 1) == room_sid .. '|' then
      redis.call('HDEL', seats_key, entries[i])
    end
  end
end
if psid == '' then return 'metered' end
local session_key = prefix .. 'usage:session:' .. psid
local session = redis.call('HMGET', session_key, 'joined', 'left', 'seated', 'refused')
redis.call('HSET', session_key, 'room', room_sid, 'identity', identity)
redis.call('PEXPIRE', session_key, retention)
redis.call('SADD', prefix .. 'usage:sessions:' .. room_sid, psid)
redis.call('PEXPIRE', prefix .. 'usage:sessions:' .. room_sid, retention)
if joined > 0 and (not session[1] or joined < tonumber(session[1])) then
  redis.call('HSET', session_key, 'joined', string.format('%d', joined))
end
local left = session[2]
if kind == 'participant_left' then
  if not left then
    left = string.format('%d', at)
    redis.call('HSET', session_key, 'left', left)
  end
  redis.call('HDEL', seats_key, psid)
end
if kind ~= 'participant_joined' or left or finished or session[3] or session[4] then
  return 'metered'
end
local limit = redis.call('HGET', prefix .. 'quota:limits:' .. tenant, 'max_participants')
if not limit then limit = default_max end
if limit ~= '' and seated_others(seats_key, identity) >= tonumber(limit) then
  redis.call('HSET', session_key, 'refused', '1')
  return 'over_quota'
end
redis.call('HSET', session_key, 'seated', '1')
redis.call('HSET', seats_key, psid, room_sid .. '|' .. identity)
redis.call('PEXPIRE', seats_key, retention)
return 'metered'
"""
)
_CHECK_MINT = (
    _CLOCK
    + """
local live_key, seats_key, limits_key = unpack(KEYS)
local name, identity, max_rooms, max_participants, reserve_ms, retention, shift = unpack(ARGV)
local now = clock(shift)
local stored = redis.call('HMGET', limits_key, 'max_rooms', 'max_participants')
if stored[1] ~= max_rooms or stored[2] ~= max_participants then
  redis.call('HSET', limits_key, 'max_rooms', max_rooms, 'max_participants', max_participants)
end
redis.call('PEXPIRE', limits_key, retention)
if max_participants ~= '' then
  local others = seated_others(seats_key, identity)
  if others >= tonumber(max_participants) then return {'max_participants', others, 0} end
end
if max_rooms == '' then return {'', 0, 0} end
local until_text = string.format('%d', now + tonumber(reserve_ms))
local current = redis.call('HGET', live_key, name)
if current and (string.sub(current, 1, 2) == 's:' or tonumber(string.sub(current, 3)) > now) then
  local reserved = string.sub(current, 1, 2) == 'r:'
  if reserved and tonumber(string.sub(current, 3)) < now + tonumber(reserve_ms) then
    redis.call('HSET', live_key, name, 'r:' .. until_text)
  end
  return {'', 0, 0}
end
local count = 0
local entries = redis.call('HGETALL', live_key)
for i = 1, #entries, 2 do
  local value = entries[i + 1]
  if string.sub(value, 1, 2) == 'r:' and tonumber(string.sub(value, 3)) <= now then
    redis.call('HDEL', live_key, entries[i])
  else
    count = count + 1
  end
end
if count >= tonumber(max_rooms) then return {'max_rooms', count, 0} end
redis.call('HSET', live_key, name, 'r:' .. until_text)
redis.call('PEXPIRE', live_key, retention)
return {'', count, 1}
"""
)
_RELEASE = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and string.sub(current, 1, 2) == 'r:' then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
"""
_TIME = (
    _CLOCK
    + """
return string.format('%d', clock(ARGV[1]))
"""
)


class RedisUsage:
    """Usage and quotas in the ownership record's Redis, one script per operation."""

    def __init__(self, holds: RedisHolds, retention_ms: int):
        """Share `holds`' client, clock and replica acknowledgement."""
        self.holds = holds
        self.where = holds.where
        self.clock = holds.clock
        self.client = holds.client
        self.retention_ms = retention_ms
        self._scripts = {
            name: self.client.register_script(text)
            for name, text in (
                ("record", _RECORD),
                ("check_mint", _CHECK_MINT),
                ("release", _RELEASE),
                ("time", _TIME),
            )
        }

    @staticmethod
    def _key(kind: str, name: str = "") -> str:
        """A key of the usage and quota records."""
        return f"{REDIS_PREFIX}{kind}:{name}"

    def _run(self, script: str, keys: list, args: list, write: bool = True):
        """Run a script; a write waits for the record's replicas (as the record's writes do)."""
        if not (write and self.holds.replicas):
            return self._scripts[script](keys=keys, args=args)
        pipe = self.client.pipeline(transaction=False)
        self._scripts[script](keys=keys, args=args, client=pipe)
        pipe.execute_command("WAIT", self.holds.replicas, int(self.holds.timeout * 1000))
        result, acknowledged = pipe.execute()
        if acknowledged < self.holds.replicas:
            raise StorageUnavailable()
        return result

    def record(self, facts: EventFacts, default_max_participants: int | None) -> str:
        """One script: the room, the session, the tenant's live rooms, the room's seats."""
        return self._run(
            "record",
            [],
            [
                facts.kind,
                facts.tenant,
                facts.name,
                facts.room_sid,
                facts.room_started,
                facts.at,
                facts.participant_sid,
                facts.identity,
                facts.joined,
                self.retention_ms,
                _limit_text(default_max_participants),
                REDIS_PREFIX,
                self.clock.shift_ms,
            ],
        ).decode()

    def check_mint(
        self, tenant, name, identity, max_rooms, max_participants, reserve_ms
    ) -> MintCheck:
        """One script: the limits recorded, the seat and room checks, the reservation."""
        refused, count, reserved = self._run(
            "check_mint",
            [
                self._key("quota:rooms", tenant),
                self._key("quota:seats", name),
                self._key("quota:limits", tenant),
            ],
            [
                name,
                identity,
                _limit_text(max_rooms),
                _limit_text(max_participants),
                reserve_ms,
                self.retention_ms,
                self.clock.shift_ms,
            ],
        )
        return MintCheck(refused.decode() or None, int(count), reserved == 1)

    def release(self, tenant, name) -> None:
        """Drop the reservation, not a room seen live."""
        self._run("release", [self._key("quota:rooms", tenant)], [name])

    def live_rooms(self, tenant) -> list[str]:
        """The names counted live or reserved now."""
        now = self.time_ms()
        entries = self.client.hgetall(self._key("quota:rooms", tenant))
        return sorted(
            name.decode()
            for name, value in entries.items()
            if value.startswith(b"s:") or int(value[2:]) > now
        )

    def usage(self, tenant: str | None, start: int, end: int):
        """(now, rooms, sessions) of the tenant's (None: every tenant's) room lives that overlap
        [start, end), read with a few pipelined round trips."""
        now = self.time_ms()
        tenants = (
            [tenant]
            if tenant is not None
            else [t.decode() for t in self.client.zrange(TENANTS_KEY, 0, -1)]
        )
        pipe = self.client.pipeline(transaction=False)
        for name in tenants:
            pipe.zrangebyscore(self._key("usage:rooms", name), "-inf", f"({end}")
        sids = [sid.decode() for found in pipe.execute() for sid in found]
        pipe = self.client.pipeline(transaction=False)
        for sid in sids:
            pipe.hgetall(self._key("usage:room", sid))
        rooms = []
        for sid, found in zip(sids, pipe.execute(), strict=False):
            if not found:
                continue
            finished = found.get(b"finished")
            room = RoomRecord(
                sid,
                found[b"tenant"].decode(),
                found[b"name"].decode(),
                int(found[b"started"]),
                int(finished) if finished else None,
            )
            if room.finished is None or room.finished >= start:
                rooms.append(room)
        pipe = self.client.pipeline(transaction=False)
        for room in rooms:
            pipe.smembers(self._key("usage:sessions", room.sid))
        members = sorted(m.decode() for found in pipe.execute() for m in found)
        pipe = self.client.pipeline(transaction=False)
        for sid in members:
            pipe.hgetall(self._key("usage:session", sid))
        sessions = []
        for sid, found in zip(members, pipe.execute(), strict=False):
            if found:
                joined, left = found.get(b"joined"), found.get(b"left")
                sessions.append(
                    SessionRecord(
                        sid,
                        found[b"room"].decode(),
                        found[b"identity"].decode(),
                        int(joined) if joined else None,
                        int(left) if left else None,
                    )
                )
        return now, rooms, sessions

    def time_ms(self) -> int:
        """The storage's clock (TIME), shifted, ms."""
        return int(self._run("time", [], [self.clock.shift_ms], write=False))

    def close(self) -> None:
        """The record closes the shared client."""
