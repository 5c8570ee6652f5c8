"""Usage and quotas in the ownership record's Redis, one script per operation.

Per room life `usage:room:<sid>` {tenant, name, started, finished}; per session
`usage:session:<participant sid>` {room, identity, joined, left, seated, refused}; per room life
the set `usage:sessions:<sid>`; per tenant the sorted set `usage:rooms:<tenant>` (room sids by
start) and the sorted set `usage:tenants`; per tenant the hash `quota:rooms:<tenant>` (name ->
"s:<sid>" live, or "r:<until>" reserved), per room name the hash `quota:seats:<name>`
(participant sid -> "<room sid>|<identity>") and per tenant `quota:limits:<tenant>`; the set
`usage:live` of the room lives not finished. Every key but that set expires the retention after
its last write (a life whose record expired is left out of it when read). Scripts read the
clock from TIME.
"""

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

    def record(self, facts: EventFacts, default_max_participants: int | None) -> str:
        """One script: the room, the session, the tenant's live rooms, the room's seats."""
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
                _limit_text(default_max_participants),
                REDIS_PREFIX,
                self.clock.shift_ms,
            ],
        )
        return outcome.decode()

    def check_mint(
        self,
        tenant: str,
        name: str,
        identity: str,
        max_rooms: int | None,
        max_participants: int | None,
        reserve_ms: int,
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

    def release(self, tenant: str, name: str) -> None:
        """Drop the reservation, not a room seen live."""
        self._run("release", [self._key("quota:rooms", tenant)], [name])

    def live_rooms(self, tenant: str) -> list[str]:
        """The names counted live or reserved now."""
        now = self.time_ms()
        entries = self.client.hgetall(self._key("quota:rooms", tenant))
        return sorted(
            name.decode()
            for name, value in entries.items()
            if value.startswith(b"s:") or int(value[2:]) > now
        )

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

    def live_lives(self) -> list[LiveLife]:
        """The lives not finished with their open sessions, read with a few pipelined round
        trips; a life whose record expired is dropped from the set."""
        sids = sorted(sid.decode() for sid in self.client.smembers(LIVE_KEY))
        pipe = self.client.pipeline(transaction=False)
        for sid in sids:
            pipe.hgetall(self._key("usage:room", sid))
            pipe.smembers(self._key("usage:sessions", sid))
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
        for _, room, members in rooms:
            pipe.hget(self._key("quota:limits", room[b"tenant"].decode()), "max_participants")
            for member in members:
                pipe.hgetall(self._key("usage:session", member))
        answers = iter(pipe.execute())
        lives = []
        for sid, room, members in rooms:
            limit = next(answers)
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
                    int(room[b"started"]),
                    tuple(sessions),
                    int(limit) if limit else None,
                )
            )
        return lives

    def time_ms(self) -> int:
        """The storage's clock (TIME), shifted, ms."""
        return int(self._run("time", [], [self.clock.shift_ms], write=False))

    def close(self) -> None:
        """The record closes the shared client."""
