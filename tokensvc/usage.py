"""Usage and quotas per tenant: participant-seconds from LiveKit's events, and limits that hold
across service instances and LiveKit nodes (no Flask).

**Metering.** `Ownership.on_event` hands every verified, first-seen, fresh event of a held room
to `record`: `room_started`, `room_finished`, `participant_joined` and `participant_left` are
kept per room life (its `sid`) and per participant session (its participant `sid`), with the
times the events carry (`storage/usage.py`): a duplicate writes nothing new, a leave before its
join still settles, a room's end closes the sessions whose leave never came, and a session still
open counts to the storage's now. `report` adds them up over a period, per room name.

**Quotas.** `max_rooms` (rooms the tenant has live at once) and `max_participants`
(participants in one room): the tenant's record (set by the operator, tenants.py), else
QUOTA_MAX_ROOMS and QUOTA_MAX_PARTICIPANTS. A claim of the tenant JWT (AUTH_QUOTA_CLAIMS) may
only lower a limit for the one token request it authorizes: it never raises one and is never
kept. As the service sees them:

- a tenant's rooms are the names its holds give it (`Ownership.names_of`, the one list); a name
  is in use from the token request that would start its room (a reservation, lasting as long as
  that token can start it) or its `room_started`, until its `room_finished` (or the end the
  reconciliation infers for a room LiveKit no longer lists or whose node died: a lost end, which
  a join after it reopens, the life's start moved on by the gap, when LiveKit re-hosts the room
  with the same sid);
- a participant is in a room from its `participant_joined` until its `participant_left` or the
  room's end, counted per (tenant, room life): a name another tenant used before starts from
  zero. Tokens minted but not used take no seat: a seat is taken at the join.

`check_mint` runs once the ownership rule has given the caller the name (another tenant's name
is always 403 room_forbidden, never a quota) and before LiveKit is asked to create it: it
refuses (403 `quota_exceeded`) a token for a room that is full (unless the identity is in it
already: a reconnect) and a token that would start a room beyond `max_rooms`, reserving the
room in the same atomic step (so two instances racing for two new rooms under `max_rooms` 1
give one token). On `participant_joined`, the join takes a seat in the same atomic step as it is
recorded; a join beyond `max_participants` (tokens minted before the room filled or the limit
was lowered) takes none, and `Ownership` removes it. A room life first seen beyond `max_rooms`
(LiveKit started it for a rejoin with an earlier token) is "over_rooms": `Ownership` ends it,
and it is metered until its end.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from .config import Settings
from .errors import QuotaExceeded
from .storage import ROOM_LOST, EventFacts

#: The quotas, by the names the claims default to and the 403 names.
MAX_ROOMS, MAX_PARTICIPANTS = "max_rooms", "max_participants"
QUOTAS = (MAX_ROOMS, MAX_PARTICIPANTS)
#: The LiveKit events that are metered.
METERED_EVENTS = ("room_started", "room_finished", "participant_joined", "participant_left")
#: LiveKit gives an event's time in whole seconds: it is taken at the middle of that second.
HALF_SECOND_MS = 500
DAY_MS = 24 * 3600 * 1000


class TenantNames(Protocol):
    """What usage asks of the ownership rule (`Ownership`, ownership.py): whose a name is."""

    hold_ms: int  # how long a token can start a room: a reservation lasts as long

    def own_name(self, tenant: str, name: str) -> str | None:
        """The tenant's own name for LiveKit's room name, or None when it is not the tenant's."""
        ...

    def names_of(self, tenant: str) -> list[str]:
        """The LiveKit names the tenant holds."""
        ...


@dataclass(frozen=True)
class Limits:
    """A tenant's quotas (None: no limit)."""

    max_rooms: int | None = None
    max_participants: int | None = None

    def lowered(self, claimed: Mapping) -> "Limits":
        """These limits, each lowered (never raised) by a claim of the same name."""
        return Limits(
            *(
                _lower(getattr(self, quota), claimed.get(quota))
                for quota in (MAX_ROOMS, MAX_PARTICIPANTS)
            )
        )


def _lower(limit: int | None, claim: int | None) -> int | None:
    """The lower of a limit and a claim (None: no limit, no claim)."""
    if claim is None:
        return limit
    return claim if limit is None else min(limit, claim)


class TenantLimits(Protocol):
    """Where a tenant's quotas come from (`Tenants`, tenants.py: its record over the settings)."""

    def limits(self, tenant: str) -> Limits:
        """The tenant's quotas as its record and the settings give them."""
        ...


def parse_time(text: str) -> int:
    """An RFC 3339 time with its offset (`2026-01-31T12:00:00Z`) as ms since the epoch;
    ValueError for anything else."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except (AttributeError, ValueError):
        raise ValueError("is not an RFC 3339 time such as 2026-01-31T12:00:00Z") from None
    if moment.tzinfo is None or "T" not in text.upper():
        raise ValueError(
            "is not an RFC 3339 time with a date, a time and an offset, such as "
            "2026-01-31T12:00:00Z"
        )
    return int(moment.timestamp() * 1000)


def format_time(ms: int) -> str:
    """ms since the epoch as RFC 3339 in UTC."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_facts(event, tenant: str | None) -> EventFacts | None:
    """What a LiveKit event says for metering, or None when it cannot be metered (not one of
    METERED_EVENTS, or without the room's sid or the event's time)."""
    room = event.room
    if event.event not in METERED_EVENTS or not room.sid or not event.created_at:
        return None
    at = event.created_at * 1000 + HALF_SECOND_MS
    started = room.creation_time_ms or (
        room.creation_time * 1000 + HALF_SECOND_MS if room.creation_time else at
    )
    participant_sid = identity = ""
    joined = 0
    if event.event.startswith("participant_") and event.participant.sid:
        participant = event.participant
        participant_sid, identity = participant.sid, participant.identity
        joined = participant.joined_at_ms or (
            participant.joined_at * 1000 + HALF_SECOND_MS if participant.joined_at else 0
        )
        if not joined and event.event == "participant_joined":
            joined = at
    return EventFacts(
        event.event,
        tenant or "",
        room.name,
        room.sid,
        started,
        at,
        participant_sid,
        identity,
        joined,
    )


def _overlap(start: int, end: int, period_start: int, period_end: int) -> int:
    """How many ms of [start, end) fall in [period_start, period_end)."""
    return max(0, min(end, period_end) - max(start, period_start))


def _seconds(ms: int) -> float:
    """ms as seconds, to the ms."""
    return round(ms / 1000, 3)


def add_up(now: int, rooms, sessions, start: int, end: int, own_name) -> dict:
    """The usage of some room lives and their sessions over [start, end): per room name (as
    `own_name(room)` gives it) participant-seconds, room-seconds, the peak of participants at
    once and the distinct identities; and the totals."""
    by_sid = {room.sid: room for room in rooms}
    named: dict[str, dict] = {}
    spans: dict[str, list] = {}
    for room in rooms:
        name = own_name(room)
        entry = named.setdefault(
            name,
            {
                "room_name": name,
                "participant_seconds": 0,
                "room_seconds": 0,
                "peak_participants": 0,
                "participants": set(),
            },
        )
        entry["room_seconds"] += _overlap(room.started, room.finished or now, start, end)
        spans.setdefault(name, [])
    for session in sessions:
        room = by_sid.get(session.room_sid)
        if room is None or session.joined is None:
            continue
        stop = session.left if session.left is not None else (room.finished or now)
        if room.finished is not None:
            stop = min(stop, room.finished)
        time_in = _overlap(session.joined, stop, start, end)
        if time_in <= 0:
            continue
        name = own_name(room)
        named[name]["participant_seconds"] += time_in
        named[name]["participants"].add(session.identity)
        spans[name].append((max(session.joined, start), min(stop, end)))
    for name, entry in named.items():
        edges = sorted(
            [(a, 1) for a, _ in spans[name]] + [(b, -1) for _, b in spans[name]],
            key=lambda edge: (edge[0], edge[1]),
        )
        present = peak = 0
        for _, step in edges:
            present += step
            peak = max(peak, present)
        entry["peak_participants"] = peak
    listed = [
        {
            **entry,
            "participant_seconds": _seconds(entry["participant_seconds"]),
            "room_seconds": _seconds(entry["room_seconds"]),
            "participants": len(entry["participants"]),
        }
        for _, entry in sorted(named.items())
    ]
    return {
        "participant_seconds": round(sum(r["participant_seconds"] for r in listed), 3),
        "room_seconds": round(sum(r["room_seconds"] for r in listed), 3),
        "rooms": listed,
    }


class Usage:
    """Metering and quotas on one usage store, for one service instance's settings."""

    def __init__(
        self,
        settings: Settings,
        store,
        ownership: TenantNames,
        observe=None,
        tenants: TenantLimits | None = None,
    ):
        """Use `store` (storage/usage.py); `ownership` gives the tenants' names and their own
        names for LiveKit's, and a room reserved at a token request counts as long as its hold
        lasts (`hold_ms`) unless LiveKit's events say it started; `tenants` gives each tenant's
        quotas (without it, the settings'); `observe` (the metrics), when given, is told of
        metered events and refusals."""
        self.settings = settings
        self.store = store
        self.ownership = ownership
        self.reserve_ms = ownership.hold_ms
        self.observe = observe
        self.tenants = tenants

    def limits_for(self, tenant: str) -> Limits:
        """The tenant's quotas: its record's, else the settings'."""
        if self.tenants is not None:
            return self.tenants.limits(tenant)
        return Limits(self.settings.quota_max_rooms, self.settings.quota_max_participants)

    def limits(self, tenant: str, claimed: Mapping) -> Limits:
        """The quotas of one token request: the tenant's, lowered by its JWT's claims."""
        return self.limits_for(tenant).lowered(claimed)

    def check_mint(self, tenant: str, name: str, identity: str, claimed: Mapping) -> bool:
        """Once `name` is the tenant's, before LiveKit creates it: 403 quota_exceeded for a
        full room or a room beyond the tenant's rooms in use; else reserve the room when it is
        not in use yet. Return whether this call reserved it (`release` it if no token is
        issued). No limit: no storage call; `max_rooms`: one more (the tenant's names)."""
        limits = self.limits(tenant, claimed)
        if limits == Limits():
            return False
        others = []
        if limits.max_rooms is not None:
            others = [other for other in self.ownership.names_of(tenant) if other != name]
        found = self.store.check_mint(
            tenant,
            name,
            identity,
            others,
            limits.max_rooms,
            limits.max_participants,
            self.reserve_ms,
        )
        if found.refused is None:
            return found.reserved
        if self.observe is not None:
            self.observe.quota_refused(found.refused)
        limit = getattr(limits, found.refused)
        raise QuotaExceeded(found.refused, limit)

    def rooms_in_use(self, tenant: str) -> list[str]:
        """The tenant's rooms in use now, as `max_rooms` counts them (a live life or a
        reservation), in LiveKit's names."""
        return self.store.rooms_in_use(tenant, self.ownership.names_of(tenant))

    def release(self, tenant: str, name: str) -> None:
        """No token was issued after `check_mint` reserved `name`: the reservation goes."""
        self.store.release(tenant, name)

    def record(self, event, tenant: str | None) -> str:
        """Meter one fresh, first-seen event of a room held by `tenant` (None: not held; the
        room's life is then closed only if it is known already), under the tenant's quotas.
        Return "metered", "over_quota" (a join beyond the room's participants quota: remove
        it), "over_rooms" (a room life beyond the tenant's rooms: end it) or "ignored"."""
        facts = event_facts(event, tenant)
        outcome = "ignored"
        if facts is not None:
            limits = self.limits_for(tenant) if tenant else Limits()
            others: list[str] = []
            if facts.kind == "room_started" and tenant and limits.max_rooms is not None:
                others = [n for n in self.ownership.names_of(tenant) if n != facts.name]
            else:
                limits = Limits(None, limits.max_participants)
            outcome = self.store.record(facts, limits.max_participants, limits.max_rooms, others)
        if self.observe is not None:
            self.observe.usage_event(event.event, outcome)
        return outcome

    # The reconciliation with LiveKit (reconcile.py): what LiveKit lists settles the record.

    def live_lives(self) -> list:
        """Every room life the record counts as live, with its open sessions."""
        return self.store.live_lives()

    def close_session(self, life, session, at: int) -> str:
        """A session LiveKit no longer lists: it ends at `at` (when it was last seen) and its
        seat is free."""
        facts = EventFacts(
            "participant_left",
            life.tenant,
            life.name,
            life.sid,
            life.started,
            at,
            session.sid,
            session.identity,
            session.joined or 0,
        )
        # A leave or an end seats nobody: no limit applies.
        return self.store.record(facts, None)

    def open_session(self, tenant: str, room, participant, at: int) -> str:
        """A participant LiveKit lists that no event reported: its session starts at its join
        (LiveKit's time, else `at`) and takes a seat; "over_quota" when the room is full."""
        joined = participant.joined_at_ms or (
            participant.joined_at * 1000 + HALF_SECOND_MS if participant.joined_at else at
        )
        started = room.creation_time_ms or (
            room.creation_time * 1000 + HALF_SECOND_MS if room.creation_time else joined
        )
        facts = EventFacts(
            "participant_joined",
            tenant,
            room.name,
            room.sid,
            started,
            at,
            participant.sid,
            participant.identity,
            joined,
        )
        return self.store.record(facts, self.limits_for(tenant).max_participants)

    def finish_life(self, life, at: int) -> str:
        """A room life LiveKit no longer lists (or whose node is dead): it ends at `at` (when
        it was last seen), with its open sessions and seats. The end is inferred (ROOM_LOST),
        not LiveKit's `room_finished`: a join or a `room_started` after it (LiveKit re-hosted
        the room on a live node, same sid) reopens the life, its start moved on by the gap."""
        facts = EventFacts(ROOM_LOST, life.tenant, life.name, life.sid, life.started, at)
        # A leave or an end seats nobody: no limit applies.
        return self.store.record(facts, None)

    def report(self, tenant: str, start: int, end: int) -> dict:
        """The tenant's usage over [start, end) (ms), in its own room names."""
        now, rooms, sessions = self.store.usage(tenant, start, end)
        return {
            "from": format_time(start),
            "to": format_time(end),
            **add_up(
                now, rooms, sessions, start, end, lambda room: self._own_name(tenant, room.name)
            ),
        }

    def report_all(self, start: int, end: int) -> list[dict]:
        """Every tenant's totals over [start, end) (ms), for billing: tenant, participant- and
        room-seconds, how many room names, ordered by tenant."""
        now, rooms, sessions = self.store.usage(None, start, end)
        tenants = sorted({room.tenant for room in rooms})
        totals = []
        for tenant in tenants:
            own = [room for room in rooms if room.tenant == tenant]
            sids = {room.sid for room in own}
            found = add_up(
                now,
                own,
                [s for s in sessions if s.room_sid in sids],
                start,
                end,
                lambda room, tenant=tenant: self._own_name(tenant, room.name),
            )
            totals.append(
                {
                    "tenant": tenant,
                    "participant_seconds": found["participant_seconds"],
                    "room_seconds": found["room_seconds"],
                    "rooms": len(found["rooms"]),
                }
            )
        return totals

    def _own_name(self, tenant: str, name: str) -> str:
        """The tenant's name for a LiveKit room name, as the ownership rule gives it (LiveKit's
        when it is not the tenant's encoding: recorded before ROOM_NAMES changed)."""
        return self.ownership.own_name(tenant, name) or name
