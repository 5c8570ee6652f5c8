"""Usage and quotas in the ownership record's SQLite file, in its transactions: room lives,
sessions, the rooms each tenant has live or reserved, and each tenant's limits."""

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from ..contracts import (
    EventFacts,
    LiveLife,
    MintCheck,
    RoomRecord,
    SessionRecord,
    UsageReport,
)
from .base import SWEEP_INTERVAL_S, statements
from .holds import SqliteHolds

#: The seats taken in the live lives of a room name (seated, not left, room not finished).
SEATED = """SELECT DISTINCT s.identity FROM usage_sessions s JOIN usage_rooms r
            ON s.room_sid = r.sid WHERE r.name = ? AND r.finished_at IS NULL
            AND s.left_at IS NULL AND s.seated = 1"""


class SqliteUsage:
    """Usage and quotas in the ownership record's SQLite file, in its transactions."""

    backend: Literal["sqlite"] = "sqlite"

    def __init__(self, holds: SqliteHolds, retention_ms: int) -> None:
        """Share `holds`' connection, lock and clock."""
        self.holds = holds
        self.where = holds.where
        self.clock = holds.clock
        self.retention_ms = retention_ms
        self._statements = statements("usage")
        self._ready_for: sqlite3.Connection | None = None  # the connection the schema was made on
        self._swept_at = 0.0

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction of the record's, with the usage tables made."""
        with self.holds._write() as db:
            self._schema(db)
            yield db

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read of the record's, with the usage tables made."""
        with self.holds._read() as db:
            self._schema(db)
            yield db

    def _schema(self, db: sqlite3.Connection) -> None:
        """Make the usage tables once per connection."""
        if self._ready_for is not db:
            for statement in self._statements:
                db.execute(statement)
            self._ready_for = db

    def record(self, facts: EventFacts, default_max_participants: int | None) -> str:
        """Apply one event: the room, the session, the tenant's live rooms and the room's
        seats. Return "metered", "over_quota" (a join beyond the room's participant limit: not
        seated) or "ignored" (a room of no known tenant)."""
        return self.holds._retried(self._record, facts, default_max_participants)

    def _record(self, facts: EventFacts, default_max: int | None) -> str:
        """One attempt of `record`."""
        with self._write() as db:
            now = self.holds._now()
            self._sweep(db, now)
            room = db.execute(
                "SELECT tenant, started_at, finished_at FROM usage_rooms WHERE sid = ?",
                (facts.room_sid,),
            ).fetchone()
            tenant: str = room[0] if room is not None else facts.tenant
            if not tenant:
                return "ignored"
            started = min(t for t in (facts.room_started, facts.joined, room and room[1]) if t)
            finished: int | None = room[2] if room is not None else None
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

    def _session(
        self,
        db: sqlite3.Connection,
        facts: EventFacts,
        tenant: str,
        finished: int | None,
        default_max: int | None,
    ) -> str:
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
    def _max_participants(
        db: sqlite3.Connection, tenant: str, default_max: int | None
    ) -> int | None:
        """The tenant's participant limit as last recorded at a mint, else the default."""
        row = db.execute(
            "SELECT max_participants FROM quota_limits WHERE tenant = ?", (tenant,)
        ).fetchone()
        limit: int | None = row[0] if row is not None else default_max
        return limit

    def check_mint(
        self,
        tenant: str,
        name: str,
        identity: str,
        max_rooms: int | None,
        max_participants: int | None,
        reserve_ms: int,
    ) -> MintCheck:
        """Record the tenant's limits; refuse a seat in a full room (unless `identity` is
        seated) or a room beyond the tenant's live rooms; else reserve the room for
        `reserve_ms` when it is not counted yet."""
        return self.holds._retried(
            self._check_mint, tenant, name, identity, max_rooms, max_participants, reserve_ms
        )

    def _check_mint(
        self,
        tenant: str,
        name: str,
        identity: str,
        max_rooms: int | None,
        max_participants: int | None,
        reserve_ms: int,
    ) -> MintCheck:
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
            count: int = db.execute(
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

    def release(self, tenant: str, name: str) -> None:
        """Drop the tenant's reservation of `name` (a room seen live stays counted)."""
        with self._write() as db:
            db.execute(
                "DELETE FROM quota_rooms WHERE tenant = ? AND name = ? AND sid IS NULL",
                (tenant, name),
            )

    def live_rooms(self, tenant: str) -> list[str]:
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

    def usage(self, tenant: str | None, start: int, end: int) -> UsageReport:
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

    def live_lives(self) -> list[LiveLife]:
        """The lives not finished with their open sessions and their tenant's recorded
        participants limit."""
        with self._read() as db:
            rooms = db.execute(
                "SELECT r.sid, r.tenant, r.name, r.started_at, l.max_participants FROM "
                "usage_rooms r LEFT JOIN quota_limits l ON l.tenant = r.tenant WHERE "
                "r.finished_at IS NULL ORDER BY r.sid"
            ).fetchall()
            sessions: dict[str, list[SessionRecord]] = {}
            for row in db.execute(
                "SELECT s.sid, s.room_sid, s.identity, s.joined_at, s.left_at FROM "
                "usage_sessions s JOIN usage_rooms r ON s.room_sid = r.sid WHERE "
                "r.finished_at IS NULL AND s.left_at IS NULL ORDER BY s.sid"
            ):
                sessions.setdefault(row[1], []).append(SessionRecord(*row))
        return [
            LiveLife(sid, tenant, name, started, tuple(sessions.get(sid, ())), limit)
            for sid, tenant, name, started, limit in rooms
        ]

    def _sweep(self, db: sqlite3.Connection, now: int) -> None:
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
