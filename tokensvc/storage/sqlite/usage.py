"""Usage and quotas in the ownership record's SQLite file, in its transactions: room lives,
sessions, their seats, and the rooms a tenant reserved at a token request."""

import sqlite3
import time
from collections.abc import Sequence

from ..contracts import (
    ROOM_LOST,
    EventFacts,
    LiveLife,
    MintCheck,
    RoomRecord,
    SessionRecord,
    UsageReport,
)
from .base import SWEEP_INTERVAL_S, InTheRecordsTransactions
from .holds import SqliteHolds

#: The seats taken in a tenant's live lives of a room name (seated, not left, room not
#: finished): seats count per (tenant, room life).
SEATED = """SELECT DISTINCT s.identity FROM usage_sessions s JOIN usage_rooms r
            ON s.room_sid = r.sid WHERE r.tenant = ? AND r.name = ? AND r.finished_at IS NULL
            AND s.left_at IS NULL AND s.seated = 1"""
#: The kinds that end a life: LiveKit's `room_finished` (final) and ROOM_LOST, an end the
#: reconciliation inferred (a life LiveKit no longer lists, or on a dead node).
ENDS = ("room_finished", ROOM_LOST)
#: The kinds that reopen a lost life when they come after its end (LiveKit re-hosted the room).
REOPENS = ("participant_joined", "room_started")
#: The columns an earlier version's `usage_rooms` lacks: whether the life's end was inferred,
#: and the ms it spent lost before events showed it alive again (not counted).
ADDED_COLUMNS = {
    "lost": "INTEGER NOT NULL DEFAULT 0",
    "lost_ms": "INTEGER NOT NULL DEFAULT 0",
}
#: Whether a tenant has a live life of a room name.
LIVE = """SELECT 1 FROM usage_rooms WHERE tenant = ? AND name = ? AND finished_at IS NULL
          LIMIT 1"""


class SqliteUsage(InTheRecordsTransactions):
    """Usage and quotas in the ownership record's SQLite file, in its transactions."""

    def __init__(self, holds: SqliteHolds, retention_ms: int) -> None:
        """Share `holds`' connection, lock and clock."""
        super().__init__(holds, "usage")
        self.retention_ms = retention_ms
        self._swept_at = 0.0

    def _schema(self, db: sqlite3.Connection) -> None:
        """The tables, `usage_rooms` given the columns an earlier version's file lacks."""
        fresh = self._ready_for is not db
        super()._schema(db)
        if fresh:
            have = {row[1] for row in db.execute("PRAGMA table_info(usage_rooms)")}
            for column, kind in ADDED_COLUMNS.items():
                if column not in have:
                    try:
                        db.execute(f"ALTER TABLE usage_rooms ADD COLUMN {column} {kind}")
                    except sqlite3.OperationalError:  # another process added it meanwhile
                        pass

    def record(
        self,
        facts: EventFacts,
        max_participants: int | None,
        max_rooms: int | None = None,
        others: Sequence[str] = (),
    ) -> str:
        """Apply one event: the room, the session and the room's seats. Return "metered",
        "over_quota" (a join beyond `max_participants`: not seated), "over_rooms" (a room life
        first seen while `max_rooms` of the tenant's `others` names are in use) or "ignored"
        (a room of no known tenant)."""
        return self.holds._retried(self._record, facts, max_participants, max_rooms, others)

    def _record(
        self,
        facts: EventFacts,
        max_participants: int | None,
        max_rooms: int | None,
        others: Sequence[str],
    ) -> str:
        """One attempt of `record`."""
        with self._write() as db:
            now = self.holds._now()
            self._sweep(db, now)
            room = db.execute(
                "SELECT tenant, started_at, finished_at, lost FROM usage_rooms WHERE sid = ?",
                (facts.room_sid,),
            ).fetchone()
            tenant: str = room[0] if room is not None else facts.tenant
            if not tenant:
                return "ignored"
            started = min(t for t in (facts.room_started, facts.joined, room and room[1]) if t)
            finished: int | None = room[2] if room is not None else None
            lost = room[3] if room is not None else 0
            gap = 0
            if facts.kind in ENDS and finished is None:
                finished, lost = facts.at, int(facts.kind == ROOM_LOST)
            elif facts.kind == "room_finished":
                lost = 0  # LiveKit's own end: final, whenever it comes
            elif lost and finished is not None and facts.kind in REOPENS and facts.at > finished:
                # Alive again after an end the reconciliation inferred (a re-hosted room): the
                # life goes on without the gap, and its sessions before the gap ended with it.
                gap = facts.at - finished
                db.execute(
                    "UPDATE usage_sessions SET left_at = ? WHERE room_sid = ? AND left_at IS NULL",
                    (finished, facts.room_sid),
                )
                finished, lost = None, 0
            db.execute(
                "INSERT INTO usage_rooms (sid, tenant, name, started_at, finished_at, "
                "seen_at, lost, lost_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sid) DO "
                "UPDATE SET started_at = excluded.started_at, finished_at = "
                "excluded.finished_at, seen_at = excluded.seen_at, lost = excluded.lost, "
                "lost_ms = lost_ms + excluded.lost_ms",
                (facts.room_sid, tenant, facts.name, started, finished, now, lost, gap),
            )
            if finished is None:  # live now: the reservation that led here is spent
                db.execute(
                    "DELETE FROM quota_reservations WHERE tenant = ? AND name = ?",
                    (tenant, facts.name),
                )
            if (
                room is None
                and finished is None
                and max_rooms is not None
                and len(self._in_use(db, tenant, others, now)) >= max_rooms
            ):
                return "over_rooms"
            if not facts.participant_sid:
                return "metered"
            return self._session(db, facts, tenant, finished, max_participants)

    def _session(
        self,
        db: sqlite3.Connection,
        facts: EventFacts,
        tenant: str,
        finished: int | None,
        limit: int | None,
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
            others = [
                row[0]
                for row in db.execute(SEATED, (tenant, facts.name))
                if row[0] != facts.identity
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
        """Refuse a seat in the tenant's full room (unless `identity` is seated) or a room
        beyond `max_rooms` of the tenant's `others` names in use; else reserve `name` for
        `reserve_ms` when it is not in use yet."""
        return self.holds._retried(
            self._check_mint,
            tenant,
            name,
            identity,
            others,
            max_rooms,
            max_participants,
            reserve_ms,
        )

    def _check_mint(
        self,
        tenant: str,
        name: str,
        identity: str,
        others: Sequence[str],
        max_rooms: int | None,
        max_participants: int | None,
        reserve_ms: int,
    ) -> MintCheck:
        """One attempt of `check_mint`."""
        with self._write() as db:
            now = self.holds._now()
            if max_participants is not None:
                seated = [
                    row[0] for row in db.execute(SEATED, (tenant, name)) if row[0] != identity
                ]
                if len(seated) >= max_participants:
                    return MintCheck("max_participants", len(seated))
            if max_rooms is None:
                return MintCheck(None)
            if self._in_use(db, tenant, [name], now):
                db.execute(
                    "UPDATE quota_reservations SET until = max(until, ?) "
                    "WHERE tenant = ? AND name = ?",
                    (now + reserve_ms, tenant, name),
                )
                return MintCheck(None)
            # The names the record holds for the tenant are read in this same transaction, so
            # that two instances racing for two new names each see the other's.
            held = [
                row[0] for row in db.execute("SELECT name FROM holds WHERE holder = ?", (tenant,))
            ]
            names = [n for n in [*others, *held] if n != name]
            count = len(self._in_use(db, tenant, names, now))
            if count >= max_rooms:
                return MintCheck("max_rooms", count)
            db.execute(
                "INSERT INTO quota_reservations (tenant, name, until) VALUES (?, ?, ?) "
                "ON CONFLICT (tenant, name) DO UPDATE SET until = excluded.until",
                (tenant, name, now + reserve_ms),
            )
            return MintCheck(None, count, True)

    @staticmethod
    def _in_use(db: sqlite3.Connection, tenant: str, names: Sequence[str], now: int) -> list[str]:
        """Which of `names` the tenant has in use: a live life, or a reservation running."""
        found = []
        for name in dict.fromkeys(names):
            live = db.execute(LIVE, (tenant, name)).fetchone()
            if live is None:
                live = db.execute(
                    "SELECT 1 FROM quota_reservations WHERE tenant = ? AND name = ? AND until > ?",
                    (tenant, name, now),
                ).fetchone()
            if live is not None:
                found.append(name)
        return found

    def release(self, tenant: str, name: str) -> None:
        """Drop the tenant's reservation of `name` (a live life stays in use)."""
        with self._write() as db:
            db.execute(
                "DELETE FROM quota_reservations WHERE tenant = ? AND name = ?", (tenant, name)
            )

    def rooms_in_use(self, tenant: str, names: Sequence[str]) -> list[str]:
        """Which of `names` the tenant has in use now (live or reserved), sorted."""
        with self._read() as db:
            return sorted(self._in_use(db, tenant, names, self.holds._now()))

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
                    f"SELECT sid, tenant, name, started_at + lost_ms, finished_at FROM usage_rooms "
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
        """The lives not finished with their open sessions."""
        with self._read() as db:
            rooms = db.execute(
                "SELECT sid, tenant, name, started_at + lost_ms FROM usage_rooms "
                "WHERE finished_at IS NULL ORDER BY sid"
            ).fetchall()
            sessions: dict[str, list[SessionRecord]] = {}
            for row in db.execute(
                "SELECT s.sid, s.room_sid, s.identity, s.joined_at, s.left_at FROM "
                "usage_sessions s JOIN usage_rooms r ON s.room_sid = r.sid WHERE "
                "r.finished_at IS NULL AND s.left_at IS NULL ORDER BY s.sid"
            ):
                sessions.setdefault(row[1], []).append(SessionRecord(*row))
        return [
            LiveLife(sid, tenant, name, started, tuple(sessions.get(sid, ())))
            for sid, tenant, name, started in rooms
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
        db.execute("DELETE FROM quota_reservations WHERE until < ?", (now,))

    def time_ms(self) -> int:
        """The storage's clock, shifted, ms."""
        return self.holds._now()

    def close(self) -> None:
        """The record closes the shared connection."""
