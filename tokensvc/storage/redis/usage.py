"""Usage and quotas in the ownership record's Redis, one script per operation.

Per room life `usage:room:<sid>` {tenant, name, started, finished, lost (set while its end is
one the reconciliation inferred), lost_ms (the time it spent lost before it was reopened, not
counted: the reported start is `started` + `lost_ms`)}; per session
`usage:session:<participant sid>` {room, identity, joined, left, seated, refused}; per room life
the set `usage:sessions:<sid>` and the set `usage:open:<sid>` of those not ended (what the
reconciliation reads); per tenant the sorted set `usage:rooms:<tenant>` (room sids by start) and
the sorted set `usage:tenants`. Per (tenant, room name), keyed
`quota:<kind>:<length of tenant>:<tenant>:<name>`: `live` (the hash of its live lives' sids),
`seats` (participant sid -> "<room sid>|<identity>") and `reserved` (a token request's
reservation, expiring with it); the set `usage:live` of the room lives not finished. Every
other key but that set expires the retention after its last write (a life whose record expired
is left out of the set when read). Scripts read the clock from TIME.
"""

from collections.abc import Sequence

from ..contracts import (
    EventFacts,
    LiveLife,
    MintCheck,
    RoomRecord,
    SessionRecord,
    UsageReport,
)
from .base import REDIS_PREFIX, RedisConnection, RedisStore

#: The Redis sorted set of the tenants with usage (by their last event).
TENANTS_KEY = REDIS_PREFIX + "usage:tenants"
#: The Redis set of the room lives not finished.
LIVE_KEY = REDIS_PREFIX + "usage:live"
CLOCK = ("clock", "usage_seats")


def _limit_text(value: int | None) -> str:
    """A limit as the storage keeps it ("" for none)."""
    return "" if value is None else str(value)


def _started(room: dict[bytes, bytes]) -> int:
    """When a room life started as reported: its start moved on by the time it spent lost."""
    return int(room[b"started"]) + int(room.get(b"lost_ms") or 0)


class RedisUsage(RedisStore):
    """Usage and quotas in the ownership record's Redis, one script per operation."""

    scripts = {
        "record": ("usage_record", CLOCK),
        "check_mint": ("usage_check_mint", CLOCK),
        "release": ("usage_release", ()),
        "time": ("usage_time", CLOCK),
    }

    def __init__(self, connection: RedisConnection, retention_ms: int) -> None:
        """Share the record's connection (client, clock, replica acknowledgement)."""
        super().__init__(connection)
        self.retention_ms = retention_ms

    @staticmethod
    def _key(kind: str, name: str = "") -> str:
        """A key of the usage and quota records."""
        return f"{REDIS_PREFIX}{kind}:{name}"

    def record(
        self,
        facts: EventFacts,
        max_participants: int | None,
        max_rooms: int | None = None,
        others: Sequence[str] = (),
    ) -> str:
        """One script: the room, the session, the room's seats; a life first seen beyond
        `max_rooms` of the tenant's `others` names in use is "over_rooms"."""
        outcome: bytes = self._run(
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
                _limit_text(max_participants),
                _limit_text(max_rooms),
                REDIS_PREFIX,
                self.clock.shift_ms,
                *others,
            ],
        )
        return outcome.decode()

    def check_mint(
        self,
        tenant: str,
        name: str,
        identity: str,
        others: Sequence[str],
        max_rooms: int | None,
        max_participants: int | None,
        reserve_ms: int,
    ) -> MintCheck:
        """One script: the seat and room checks, the reservation."""
        refused, count, reserved = self._run(
            "check_mint",
            [],
            [
                tenant,
                name,
                identity,
                _limit_text(max_rooms),
                _limit_text(max_participants),
                reserve_ms,
                REDIS_PREFIX,
                self.clock.shift_ms,
                *others,
            ],
        )
        return MintCheck(refused.decode() or None, int(count), reserved == 1)

    @staticmethod
    def _quota_key(kind: str, tenant: str, name: str) -> str:
        """The key of a quota record of one tenant's room name (as usage_seats.lua makes it)."""
        return f"{REDIS_PREFIX}quota:{kind}:{len(tenant.encode())}:{tenant}:{name}"

    def release(self, tenant: str, name: str) -> None:
        """Drop the reservation, not a live life."""
        self._run("release", [self._quota_key("reserved", tenant, name)], [])

    def rooms_in_use(self, tenant: str, names: Sequence[str]) -> list[str]:
        """Which of `names` the tenant has in use now (live or reserved), sorted."""
        unique = sorted(set(names))
        now = self.time_ms()
        pipe = self.client.pipeline(transaction=False)
        for name in unique:
            pipe.exists(self._quota_key("live", tenant, name))
            pipe.get(self._quota_key("reserved", tenant, name))
        found = pipe.execute()
        return [
            name
            for name, live, until in zip(unique, found[::2], found[1::2], strict=True)
            if live or (until is not None and int(until) > now)
        ]

    def usage(self, tenant: str | None, start: int, end: int) -> UsageReport:
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
                _started(found),
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

    def live_lives(self) -> list[LiveLife]:
        """The lives not finished with their open sessions, read with a few pipelined round
        trips (a life's open sessions from its own set: the sessions that ended cost nothing);
        a life whose record expired (or finished) is dropped from the set."""
        sids = sorted(sid.decode() for sid in self.client.smembers(LIVE_KEY))
        pipe = self.client.pipeline(transaction=False)
        for sid in sids:
            pipe.hgetall(self._key("usage:room", sid))
            pipe.smembers(self._key("usage:open", sid))
        found = pipe.execute()
        rooms, expired = [], []
        for index, sid in enumerate(sids):
            room, members = found[2 * index], found[2 * index + 1]
            if not room or room.get(b"finished"):
                expired.append(sid)
                continue
            rooms.append((sid, room, sorted(m.decode() for m in members)))
        if expired:
            self.connection.command("SREM", LIVE_KEY, *expired)
        pipe = self.client.pipeline(transaction=False)
        for _, _, members in rooms:
            for member in members:
                pipe.hgetall(self._key("usage:session", member))
        answers = iter(pipe.execute())
        lives = []
        for sid, room, members in rooms:
            sessions = []
            for member in members:
                session = next(answers)
                if session and not session.get(b"left"):
                    joined = session.get(b"joined")
                    sessions.append(
                        SessionRecord(
                            member,
                            sid,
                            session[b"identity"].decode(),
                            int(joined) if joined else None,
                            None,
                        )
                    )
            lives.append(
                LiveLife(
                    sid,
                    room[b"tenant"].decode(),
                    room[b"name"].decode(),
                    _started(room),
                    tuple(sessions),
                )
            )
        return lives

    def time_ms(self) -> int:
        """The storage's clock (TIME), shifted, ms."""
        return int(self._run("time", [], [self.clock.shift_ms], write=False))

    def close(self) -> None:
        """The record closes the shared client."""
