"""Who owns a room name: the one rule the token route, the management routes and LiveKit's
webhooks all ask (no Flask here).

Ownership is a property of the room **name**, kept in the service's record (`holds.py`),
because a token names a room, not one life of it, and LiveKit keeps refreshing the tokens of
connected participants. `metadata.auth_id` in LiveKit is the mirror other systems read. Every
deadline is on the storage's clock; the record is told durations:

- a hold lasts `hold_ms` = TOKEN_TTL + 60 s (LiveKit's leeway) + HOLD_MARGIN past the holder's
  newest token: a never-used token cannot join after that;
- a grace lasts `grace_ms` = max(600 s, TOKEN_TTL) + 60 s + HOLD_MARGIN: the life of a token
  LiveKit refreshed, counted from the last moment the room was seen alive.

For a tenant (or, with AUTH_REQUIRED=false beside a key, the anonymous namespace "") asking for
name N (`for_token`):

1. `claim(N)`: one atomic step. Another holder whose hold has not run out: 403. The caller's own
   hold is extended; a fresh (pending) hold also takes the per-name lock in the same step.
2. Another holder whose hold ran out: ask LiveKit (ListRooms). Listed: the holder keeps it for
   another grace, 403. Absent and not yet seen gone: the grace starts now, 403. Absent once that
   grace is over: the name passes to the caller (compare-and-set; a token of the holder wins).
3. The caller's checked hold: the token is minted at once.
4. A pending hold, under the lock (one creator per name across every instance): LiveKit's word
   first (ListRooms; skipped when step 2 just saw the room absent, and per tenant), a room
   with another owner is recorded as that owner's and refused; then CreateRoom, where only the
   live room's `auth_id` in the answer decides; then verify (and unlock) in one step.

What one request costs (asserted by tests/test_cost.py on both backends). A token:

| case | LiveKit calls | storage calls |
|---|---|---|
| unauthenticated (no tenant key) | 0 | 0 |
| the caller's own name, hold long enough | 0 | 1 (claim) |
| a name another holds, hold running | 0 | 1 (claim) |
| another's name, hold ran out: 403 | 1 (ListRooms) | 2 (claim, keep or mark_gone) |
| a new name LiveKit gives another: 403 | 1 (ListRooms) | 4 (claim+lock, get, transfer, unlock) |
| a new name | 2 (ListRooms, CreateRoom) | 2 (claim+lock, verify+unlock) |
| a name past its grace, passed on | 2 (as for a new name) | 5 (claim, transfer, watch, as new) |
| with max_rooms: the caller's name, any case | as above | 2 more (names_of, check_mint) |
| with max_participants alone | as above | 1 more (check_mint) |
| a new name max_rooms refuses | 1 (ListRooms) | 4 (claim+lock, names_of, check_mint, drop) |

Every request of a tenant also reads the tenant's record (tenants.py: its status, its limits)
once, kept by each instance for TENANT_RECORD_CACHE seconds (default 1), so 1 more storage call
per tenant and instance at most once a second, and none in between. The quotas are asked once
the name is the caller's (another tenant's name is 403 room_forbidden whatever its quotas) and
before CreateRoom; a refused new name drops the claim it made.

The one path that asks LiveKit once and refuses is the fourth row: LiveKit lists the room (the
holder keeps it for a grace, `keep`) or not (the grace starts, `mark_gone`); the fifth asks once
too, for a name the record does not know.

The management routes, on one of the tenant's names whose hold is checked (a pending or unknown
hold asks ListRooms once more first, and records the tenant when LiveKit names it):

| route | LiveKit calls | storage calls |
|---|---|---|
| list (GET /livekit/rooms) | 1 (ListRooms of its names); 0 without names | 1 (names_of) |
| get (GET /livekit/rooms/<name>) | 2 (ListRooms, ListParticipants) | 1 (get) |
| end (DELETE /livekit/rooms/<name>) | 2 (ListRooms, DeleteRoom) | 2 (get, claim) |
| remove (DELETE /livekit/participant) | 2 (GetParticipant, RemoveParticipant) | 3 (see below) |
| remove, no such participant: 404 | 1 (GetParticipant) | 1 (get) |

Each of end, remove, mute and permissions (and a tenant's webhook endpoint created, deleted or
rotated) keeps one audit entry after it: 1 storage call more, also when it failed while acting
(a 404); a request refused before acting (400, 403) writes none. The removal's three storage
calls before its audit entry: get, remove, and the room put under watch.

LiveKit's webhook, one fresh event of a held room by the holder's participant, with one of the
holder's endpoints subscribed to it (no endpoint for its type: one call fewer, add_deliveries):

| event | LiveKit calls | storage calls |
|---|---|---|
| room_started, room_finished, participant_left | 0 | 6 (checks, keep, record, fan-out) |
| participant_joined | 0 | 7 (checks, keep, record, removed, fan-out) |
| track_published, track_unpublished | 0 | 5 (checks, get, fan-out) |

The checks are `time_ms` (the age) and `first_seen` (duplicates); the fan-out is `endpoints`
and `add_deliveries`. With max_rooms, room_started costs one more (names_of: a life beyond the
tenant's rooms is ended, DeleteRoom); the holder's record is read as for a request (cached).
Another tenant's participant's join: `RemoveParticipant`, no fan-out, and one more storage
call: the room goes under watch (reconcile.py lists it every WATCH_INTERVAL).

LiveKit's webhooks keep the record true (`on_event`): a room that starts or a participant that
joins or leaves keeps its name's hold alive for a grace past the event; `room_finished` starts
the grace. A participant whose `tokensvc.tenant` attribute names another tenant than the holder
is removed at once, and so is an identity removed by the management routes. After the duplicate
and age checks, each event is metered (`usage`: usage.py, which may remove a join over its room's
participants quota) and each event of a held room goes to `forward(holder, event, room_name)`
with the holder's own name for the room: the tenants' own webhooks (`webhooks.py`), except a
participant removed at its join and every event (track events too) of a participant whose
`tokensvc.tenant` attribute names another tenant than the holder.

Every ownership decision is taken here: who holds a name (the record, else LiveKit's
`auth_id`), a tenant's names (`names_of`, the holds' one list, and `own_name` for its own
names), its live rooms (`live_rooms`, for the management routes) and whose participant someone
is (`foreign`). tests/test_ownership_in_one_place.py keeps the owner key and the tenant
attribute out of every other module.
"""

import json
import logging
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Protocol

from livekit import api

from .config import Settings
from .errors import (
    ApiError,
    LiveKitNotFound,
    LiveKitTimeout,
    LiveKitUnavailable,
    LiveKitUnreached,
    ParticipantRemoved,
    RoomBusy,
    RoomForbidden,
    RoomNotFound,
    StorageRecovering,
    StorageUnavailable,
)
from .names import RoomNames
from .roles import TENANT_ATTRIBUTE
from .storage import Hold

log = logging.getLogger(__name__)

OWNER_KEY = "auth_id"
#: The holder of names used by anonymous tokens (never a tenant id: those are 1 to 256 bytes).
ANONYMOUS = ""
#: LiveKit's own CreateRoom may run create_room_attempts (3) x create_room_timeout (10 s) after
#: the service gave up; the per-name lock outlasts that.
LOCK_TTL_MS = 40_000
#: LiveKit accepts a token until about 60 s past its exp.
LIVEKIT_LEEWAY_MS = 60_000
#: LiveKit's refreshed tokens are valid for at least 10 minutes.
REFRESHED_TOKEN_MS = 600_000
#: A LiveKit event older than this (on the storage's clock) changes nothing: its webhook JWT
#: lives 5 minutes, so an older one can only be a replay.
EVENT_MAX_AGE_MS = 300_000
#: How long an event id is remembered, to drop duplicates.
EVENT_KEEP_MS = 2 * EVENT_MAX_AGE_MS
#: The events that say a room is alive, and the one that says it ended.
ALIVE_EVENTS = ("room_started", "participant_joined", "participant_left")
FINISHED_EVENT = "room_finished"
#: Events that change nothing in the record but go on to the holder's webhooks.
FORWARDED_ONLY_EVENTS = ("track_published", "track_unpublished")
#: The events that say a room life runs: a suspended tenant's room is ended on them.
RUNNING_EVENTS = ("room_started", "participant_joined")
#: The topic of the service's data messages to participants (`notice`).
NOTICE_TOPIC = "tokensvc"
#: How long a notice is given to reach its participants before they are removed (LiveKit
#: sends data asynchronously, and a participant that has just become active may not have its
#: data channel open yet: with 0.3 s, one in a loaded test run never saw it). A suspension
#: still ends a room well within its 2 s.
NOTICE_SECONDS = 1.0


class EventMeter(Protocol):
    """What the ownership rule tells of each fresh event (the usage rule, usage.py)."""

    def record(self, event, tenant: str | None) -> str | None:
        """Meter one event of `tenant`'s room (None: no tenant); its outcome."""
        ...

    def limits_for(self, tenant: str):
        """The tenant's quotas (`usage.Limits`), for the notice of a removal."""
        ...


class TenantStatus(Protocol):
    """What the ownership rule asks of the operator's records (tenants.py)."""

    def is_suspended(self, tenant: str) -> bool:
        """Whether the operator suspended the tenant."""
        ...


def notice(code: str, **fields) -> bytes:
    """The data message a participant gets on topic NOTICE_TOPIC before the service removes it
    (a quota, a suspension): JSON `{"code", ...}`."""
    return json.dumps({"code": code, **fields}, separators=(",", ":")).encode()


@lru_cache(maxsize=4096)
def owner_metadata(tenant: str) -> str:
    """Return the room metadata that makes `tenant` the owner (always JSON-encoded); for the
    anonymous namespace, an object without an owner."""
    document = {OWNER_KEY: tenant} if tenant != ANONYMOUS else {}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def room_owner(metadata: str) -> str | None:
    """Return the tenant that owns a room by its metadata, or None when it has no valid owner."""
    try:
        document = json.loads(metadata) if metadata else None
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    owner = document.get(OWNER_KEY)
    return owner if isinstance(owner, str) and owner else None


def holder_of(metadata: str) -> str:
    """The holder a room's metadata names: its tenant, or ANONYMOUS when it has no valid owner."""
    return room_owner(metadata) or ANONYMOUS


def room_options(settings: Settings) -> dict:
    """The configured options for rooms the service creates (timeouts, participant limit)."""
    options = {
        "empty_timeout": settings.room_empty_timeout,
        "departure_timeout": settings.room_departure_timeout,
        "max_participants": settings.room_max_participants,
    }
    return {name: value for name, value in options.items() if value is not None}


class Ownership:
    """The ownership rule: the record (`holds`) and LiveKit's word (`rooms`), on the storage's
    clock. `observe`, when given, is told of LiveKit events (`livekit_event(type, outcome)`)."""

    def __init__(
        self,
        settings: Settings,
        holds,
        rooms,
        names: RoomNames | None = None,
        room_creations=None,
        observe=None,
        forward=None,
    ):
        """Derive the hold and the grace from the settings; `names` translates between
        tenants' room names and LiveKit's (shared when not given); `room_creations`, when
        given, is asked before a room is created (`test_room_create(tenant)`) and told after;
        `forward(holder, event, room_name)`, when given, gets each new event of a held room
        that is the holder's to see, with the holder's own room name (the tenants'
        webhooks)."""
        self.settings = settings
        self.forward = forward
        self.holds = holds
        self.rooms = rooms
        self.names = names if names is not None else RoomNames()
        self.per_tenant = self.names.per_tenant
        self.room_creations = room_creations
        self.observe = observe
        self.usage: EventMeter | None = None  # told of each fresh event; set by its owner
        self.tenants: TenantStatus | None = None  # which tenants are suspended; set by its owner
        #: `announce(holder, kind, room_name, data, event_id)`: the tenants' webhooks told what
        #: the service did in a holder's room and why (set by its owner).
        self.announce: Callable[[str, str, str, dict, str], object] | None = None
        #: The rooms under watch (the reconciliation store, `watch`/`watched`); set by its owner.
        self.watches = None
        margin_ms = settings.hold_margin * 1000
        ttl_ms = settings.token_ttl * 1000
        self.hold_ms = ttl_ms + LIVEKIT_LEEWAY_MS + margin_ms
        self.grace_ms = max(REFRESHED_TOKEN_MS, ttl_ms) + LIVEKIT_LEEWAY_MS + margin_ms
        holds.store.quarantine_ms = self.grace_ms
        self.skew_ms = 0  # the storage's clock minus this instance's, as last read

    def for_token(
        self, name: str, holder: str, identity: str | None = None, agents=(), admit=None
    ) -> tuple[str, bool]:
        """Make sure `name` is `holder`'s, creating the room if missing (with `agents`
        dispatched to it, as a join would); return (the room metadata for the token, whether
        this call created the room), or raise 403 (also for an `identity` removed from it).
        `admit()`, when given, runs once the name is decided to be the holder's and before
        LiveKit is asked to create it (the quotas): what it raises is raised, and a claim this
        call made goes."""
        hold = self._claim(name, holder, identity)
        seen_absent = False
        if hold.holder != holder:
            hold = self._take_over(name, hold, holder)
            seen_absent = True
        elif hold.removed:
            self._unlock(name, hold.lock)
            raise ParticipantRemoved()
        if not hold.pending:
            # The name is the holder's and LiveKit's word on it was checked: no other tenant can
            # get a token for it, and a join re-creates a missing room with the token's owner.
            if admit is not None:
                admit()
            return owner_metadata(holder), False
        return self._create(name, holder, hold, agents, seen_absent, admit)

    def _claim(self, name: str, holder: str, identity: str | None = None) -> Hold:
        """Claim the name, taking the lock for a pending hold; wait (up to LIVEKIT_TIMEOUT) for
        another creator's lock, then 503 room_busy. A quarantined name: LiveKit's word."""
        deadline = time.monotonic() + self.settings.livekit_timeout
        pause, proved = 0.005, False
        while True:
            try:
                hold = self.holds.claim(
                    name, holder, self.hold_ms, identity, LOCK_TTL_MS, not self.per_tenant
                )
            except StorageRecovering:
                if proved:
                    raise
                self._prove_during_quarantine(name, holder)
                proved = True
                continue
            self.skew_ms = hold.now - self.holds.clock.shift_ms - int(time.time() * 1000)
            if hold.holder != holder or not hold.pending or hold.lock is not None:
                return hold
            if time.monotonic() >= deadline:
                raise RoomBusy(retry_after_ms=hold.lock_wait_ms)
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _prove_during_quarantine(self, name: str, holder: str) -> None:
        """The store lost its data: a shared name with no record goes to the caller only when
        LiveKit lists its live room (recorded, then claimed as usual); another owner's room is
        recorded as theirs, 403; no room, 503 storage_recovering."""
        room = self.rooms.find_room(name)
        if room is None:
            raise StorageRecovering(retry_after_ms=self.grace_ms)
        owner = holder_of(room.metadata)
        self.holds.transfer(name, None, owner, self.grace_ms, owner == holder)
        if owner != holder:
            raise self._forbidden(name)

    def _take_over(self, name: str, hold: Hold, holder: str) -> Hold:
        """Another holder has the name: refuse while its hold lasts; once it ran out, ask
        LiveKit, and pass the name on only after a full grace with the room gone."""
        if hold.running:
            raise self._forbidden(name)
        if self.rooms.find_room(name) is not None:
            self.holds.keep(name, self.grace_ms, False)
            raise self._forbidden(name)
        if not hold.gone:
            self.holds.mark_gone(name, hold, self.grace_ms)
            raise self._forbidden(name)
        if not self.holds.transfer(name, hold, holder, self.hold_ms, True):
            raise self._forbidden(name)  # the holder got a token meanwhile
        self.watch(name)  # a name passed on: watched while a former holder's token could live
        hold = self._claim(name, holder)
        if hold.holder != holder:
            raise self._forbidden(name)
        return hold

    def _create(self, name: str, holder: str, hold: Hold, agents, seen_absent: bool, admit=None):
        """Under the lock: LiveKit's word, then `admit()`, then CreateRoom; only the live
        room's `auth_id` in the answer decides. Verify and unlock in one step."""
        keep = False  # after a timeout LiveKit may still be creating the room: keep hold and lock
        try:
            stored = None
            if not (self.per_tenant or seen_absent):
                stored = self._check_livekit_word(name, hold)
            if admit is not None:
                admit()
            if self.room_creations is not None and stored is None:
                self.room_creations.test_room_create(holder)
            try:
                room = self.rooms.create_room(self._create_request(name, holder, stored, agents))
            except (LiveKitTimeout, LiveKitUnavailable) as exc:
                keep = not isinstance(exc, LiveKitUnreached)
                raise
            if holder_of(room.metadata) != holder:
                self._record_owner(name, holder, holder_of(room.metadata))
                raise self._forbidden(name)
            self.holds.verify(name, holder, hold.lock)
        except BaseException as exc:
            if not keep:
                if isinstance(exc, (RoomForbidden, StorageUnavailable)):
                    self._unlock(name, hold.lock)
                else:  # refused (429) or LiveKit failed: the claim goes
                    self.holds.drop(name, hold, hold.lock)
            raise
        created = stored is None
        if created and self.room_creations is not None:
            self.room_creations.count_room_create(holder)
        return room.metadata, created

    def _check_livekit_word(self, name: str, hold: Hold):
        """For a pending hold: a room LiveKit's store lists with another owner (or none) is that
        owner's; record it and refuse, writing nothing to LiveKit. Return the stored room (the
        caller's), or None."""
        stored = self.rooms.find_room(name)
        if stored is not None and holder_of(stored.metadata) != hold.holder:
            self._record_owner(name, hold.holder, holder_of(stored.metadata))
            raise self._forbidden(name)
        return stored

    def _record_owner(self, name: str, ours: str, owner: str) -> None:
        """LiveKit says the room is `owner`'s: the record follows while it still names us (a
        concurrent request of ours may extend the hold between the read and the write)."""
        for _ in range(10):
            current = self.holds.get(name)
            if current is None or current.holder != ours:
                return
            if self.holds.transfer(name, current, owner, self.grace_ms, False):
                return

    def _create_request(self, name: str, holder: str, stored, agents) -> "api.CreateRoomRequest":
        """The CreateRoom request: the room owned by `holder` with the configured options and
        the request's agents, or a room LiveKit's store already gives the holder replayed as it
        is (nothing changes)."""
        if stored is None:
            return api.CreateRoomRequest(
                name=name,
                metadata=owner_metadata(holder),
                agents=agents,
                **room_options(self.settings),
            )
        return api.CreateRoomRequest(
            name=name,
            metadata=stored.metadata,
            empty_timeout=stored.empty_timeout,
            departure_timeout=stored.departure_timeout,
            max_participants=stored.max_participants,
        )

    def _unlock(self, name: str, lock: str | None) -> None:
        """Release the lock; a storage failure here only leaves it to expire."""
        if lock is None:
            return
        try:
            self.holds.unlock(name, lock)
        except Exception:  # already logged by the store; the lock expires by itself
            pass

    @staticmethod
    def _forbidden(name: str) -> RoomForbidden:
        """The 403 for a name that is not the caller's."""
        return RoomForbidden(f"room {name!r} is not owned by this tenant")

    # The management routes.

    def owned(self, tenant: str, name: str):
        """404 room_not_found for a name that is not the tenant's (missing and foreign alike):
        the record's word, else LiveKit's stored room's `auth_id` (recorded then). Return that
        stored room when LiveKit was asked, else None."""
        hold = self.holds.get(name)
        if hold is not None and (hold.holder != tenant or not hold.pending):
            if hold.holder != tenant:
                raise RoomNotFound()
            return None
        stored = self.rooms.find_room(name)
        if stored is None or holder_of(stored.metadata) != tenant:
            raise RoomNotFound()
        if hold is None:
            self.holds.transfer(name, None, tenant, self.grace_ms, False)
        return stored

    def ended(self, tenant: str, name: str) -> None:
        """The tenant ended its room: the name stays its own for a grace, since the
        participants it disconnected still hold refreshed tokens."""
        self.holds.claim(name, tenant, self.grace_ms, shared=not self.per_tenant)

    def remove(self, name: str, identity: str) -> None:
        """Refuse `identity` tokens for room `name` for a grace (its refreshed tokens' life),
        and watch the room meanwhile (a rejoin over signal only sends no event)."""
        self.holds.remove(name, identity, self.grace_ms)
        self.watch(name)

    def names_of(self, tenant: str) -> list[str]:
        """The LiveKit names the tenant holds: the one list of a tenant's names."""
        return self.holds.names_of(tenant)

    def own_name(self, tenant: str, name: str) -> str | None:
        """The tenant's own name for LiveKit's room name `name`, or None when the name is not
        in the tenant's namespace (per-tenant names; shared names are everyone's)."""
        return self.names.own_name(tenant, name)

    def live_rooms(self, tenant: str) -> list:
        """The tenant's live rooms as LiveKit lists them: one ListRooms for the names the
        record gives it (none: no call), each room kept only when its `auth_id` names the
        tenant too."""
        names = [name for name in self.names_of(tenant) if self.own_name(tenant, name) is not None]
        if not names:
            return []
        return [room for room in self.rooms.list_rooms(names) if holder_of(room.metadata) == tenant]

    @staticmethod
    def foreign(holder: str, participant) -> bool:
        """Whether `participant` came with another tenant's token than `holder`'s: its
        `tokensvc.tenant` attribute names another tenant. Participants without the attribute
        (agents, egress, tokens the operator minted) are nobody's intruders."""
        tenant = participant.attributes.get(TENANT_ATTRIBUTE)
        return tenant is not None and tenant != holder

    # LiveKit's webhooks.

    def on_event(self, event) -> str:
        """Apply one verified LiveKit event to the record, meter it (`usage`), then hand it with
        its room's holder to `forward` (the tenants' webhooks); return what it did ("duplicate",
        "stale", "ignored", "kept", "finished", "recorded", "removed", "quota_removed",
        "quota_ended", "suspended_ended",
        "forwarded"). Duplicates and stale events are neither metered nor forwarded; a
        participant removed at its join (another tenant's, or an identity removed from the
        room) is not forwarded, nor is any event of another tenant's participant."""
        kind, name = event.event, event.room.name
        forwarded_only = kind in FORWARDED_ONLY_EVENTS and self.forward is not None
        if not name or (kind not in ALIVE_EVENTS and kind != FINISHED_EVENT and not forwarded_only):
            return self._observed(kind, "ignored")
        if event.created_at and self.holds.time_ms() - event.created_at * 1000 > EVENT_MAX_AGE_MS:
            return self._observed(kind, "stale")
        if event.id and not self.holds.first_seen(event.id, EVENT_KEEP_MS):
            return self._observed(kind, "duplicate")
        if forwarded_only:  # changes nothing in the record and meters nothing
            hold = self.holds.get(name)
            if hold is None:
                return self._observed(kind, "ignored")
            forwarded = self._forward(hold.holder, event)
            return self._observed(kind, "forwarded" if forwarded else "ignored")
        outcome, hold = self._record_event(kind, name, event)
        if hold is not None and outcome != "removed":
            self._forward(hold.holder, event)
        return self._observed(kind, outcome)

    def _forward(self, holder: str, event) -> bool:
        """Hand an event of `holder`'s room to `forward` with the holder's own room name,
        unless its participant is another tenant's (an intruder is never shown to the holder)
        or the name is not in the holder's namespace; whether it was handed on."""
        if self.forward is None:
            return False
        if event.HasField("participant") and self.foreign(holder, event.participant):
            return False
        room_name = self.own_name(holder, event.room.name)
        if room_name is None:
            return False
        self.forward(holder, event, room_name)
        return True

    def _record_event(self, kind: str, name: str, event) -> tuple[str, Hold | None]:
        """What a fresh room's or participant's event does to the record and its metering
        ("kept", "finished", "recorded", "removed", "quota_removed", "quota_ended",
        "suspended_ended", "ignored"), and the name's
        hold after it (None: not held)."""
        hold = self.holds.keep(name, self.grace_ms, kind == FINISHED_EVENT)
        outcome = "finished" if kind == FINISHED_EVENT else "kept"
        if hold is None and kind != FINISHED_EVENT and room_owner(event.room.metadata) is not None:
            owner = holder_of(event.room.metadata)
            self.holds.transfer(name, None, owner, self.grace_ms, False)
            hold, outcome = self.holds.get(name), "recorded"
            if self.holds.recovering_ms():  # a name rebuilt from LiveKit's word: watch it
                self.watch(name)
        metered = self._meter(event, hold)
        if hold is None:
            return "ignored", None
        if kind in RUNNING_EVENTS and self._suspended(hold.holder):
            self._end_room(name, notice("tenant_suspended"), "the tenant is suspended")
            self.told(hold.holder, "room.ended", name, {"reason": "tenant_suspended"}, event.id)
            return "suspended_ended", hold
        if metered == "over_rooms":
            limit = self.usage.limits_for(hold.holder).max_rooms if self.usage else None
            message = notice("quota_exceeded", quota="max_rooms", limit=limit)
            self._end_room(name, message, "the tenant's rooms quota is reached")
            why = {"reason": "quota_exceeded", "quota": "max_rooms", "limit": limit}
            self.told(hold.holder, "room.ended", name, why, event.id)
            return "quota_ended", hold
        if kind == "participant_joined":
            if self._remove_intruder(name, hold.holder, event.participant):
                outcome = "removed"
            elif metered == "over_quota":
                self._remove_over_quota(name, hold.holder, event.participant, event.id)
                outcome = "quota_removed"
        return outcome, hold

    def _suspended(self, holder: str) -> bool:
        """Whether the holder is a tenant the operator suspended."""
        return (
            self.tenants is not None and holder != ANONYMOUS and self.tenants.is_suspended(holder)
        )

    def _end_room(self, name: str, message: bytes, why: str) -> None:
        """End a room (DeleteRoom) after telling its participants why (`notice`)."""
        log.info("ending room %r: %s", name, why)
        self.tell(name, message)
        try:
            self.rooms.delete_room(name)
        except LiveKitNotFound:
            pass  # it ended meanwhile

    def tell(self, name: str, message: bytes, identities=(), wait: bool = True) -> bool:
        """Send a notice to some participants of a room (all when `identities` is empty) and,
        with `wait`, give it NOTICE_SECONDS to arrive; whether LiveKit took it (a failure only
        logs: the removal goes on)."""
        try:
            self.rooms.send_data(name, message, NOTICE_TOPIC, identities)
        except ApiError as exc:
            log.info("room %r: the notice was not sent (%s)", name, exc.error_code)
            return False
        if wait:
            time.sleep(NOTICE_SECONDS)
        return True

    def _meter(self, event, hold) -> str | None:
        """Hand a fresh event to the usage rule, with the name's holder (None: no record, the
        anonymous namespace: no tenant); its outcome, or None without a usage rule."""
        if self.usage is None:
            return None
        tenant = hold.holder if hold is not None and hold.holder != ANONYMOUS else None
        return self.usage.record(event, tenant)

    def told(self, holder: str, kind: str, name: str, why: dict, event_id: str) -> None:
        """Tell the holder's webhooks (`announce`) what the service did in its room `name` and
        why, under the holder's own name for it; a failure to queue it only logs."""
        room_name = self.own_name(holder, name)
        if self.announce is None or holder == ANONYMOUS or room_name is None:
            return
        try:
            self.announce(holder, kind, room_name, why, f"{kind}:{event_id}")
        except ApiError as exc:
            log.warning(
                "room %r: %s was not queued for its tenant (%s)", name, kind, exc.error_code
            )

    def _remove_over_quota(self, name: str, holder: str, participant, event_id: str) -> None:
        """A join beyond its room's participants quota (with a token minted before the room
        filled or the quota was lowered): tell it why, remove it, tell its tenant."""
        log.info(
            "removing a participant from room %r: the room's participants quota is reached", name
        )
        if self.observe is not None:
            self.observe.quota_removed()
        limit = self.usage.limits_for(holder).max_participants if self.usage else None
        message = notice("quota_exceeded", quota="max_participants", limit=limit)
        self.tell(name, message, (participant.identity,))
        try:
            self.rooms.remove_participant(name, participant.identity)
        except LiveKitNotFound:
            pass  # it left meanwhile
        why = {
            "reason": "quota_exceeded",
            "quota": "max_participants",
            "limit": limit,
            "participant": {"identity": participant.identity, "sid": participant.sid},
        }
        self.told(holder, "participant.removed", name, why, event_id)

    def _remove_intruder(self, name: str, holder: str, participant) -> bool:
        """A participant that joined a held room with another tenant's `tokensvc.tenant`
        attribute (`foreign`), or an identity removed from the room: remove it now."""
        foreign = self.foreign(holder, participant)
        if not foreign and not self.holds.removed(name, participant.identity):
            return False
        if foreign:
            log.warning(
                "removing a participant of another tenant from room %r (joined with a "
                "token minted for another holder)",
                name,
            )
            self._observed("participant_joined", "foreign_removed")
        try:
            self.rooms.remove_participant(name, participant.identity)
        except LiveKitNotFound:
            pass  # it left meanwhile
        self.watch(name)  # its refreshed token can bring it back over signal only
        return True

    def _observed(self, kind: str, outcome: str) -> str:
        """Tell the observer of an event's outcome; return the outcome."""
        if self.observe is not None:
            self.observe.livekit_event(kind, outcome)
        return outcome

    # A new deployment.

    def rooms_made_here(self) -> list[str]:
        """The names of the rooms LiveKit lists that the service made (an owner in their
        metadata): a deployment whose LiveKit has any has lived before."""
        return sorted(room.name for room in self.rooms.every_room() if room_owner(room.metadata))

    # The reconciliation with LiveKit (reconcile.py asks; the decisions are taken here).

    def watch(self, name: str) -> None:
        """Watch room `name` for the life of LiveKit's refreshed tokens (a participant they let
        back in over signal only sends no event); a storage failure only logs."""
        if self.watches is None:
            return
        try:
            self.watches.watch(name, REFRESHED_TOKEN_MS + LIVEKIT_LEEWAY_MS)
        except StorageUnavailable:
            log.warning("room %r could not be put under watch (storage unavailable)", name)

    def holder(self, name: str) -> str | None:
        """The record's holder of `name`, or None when it has no record."""
        hold = self.holds.get(name)
        return None if hold is None else hold.holder

    def listed(self, name: str) -> Hold | None:
        """LiveKit lists a live room `name`: its hold lasts at least a grace more and is not
        gone, whatever the events said; the hold, or None when the record has none."""
        return self.holds.keep(name, self.grace_ms, False)

    def unlisted(self, name: str) -> bool:
        """LiveKit no longer lists room `name` (or its node is dead): the grace starts now, as
        at `room_finished`, unless it started already; whether it started now."""
        hold = self.holds.get(name)
        if hold is None or hold.gone:
            return False
        self.holds.keep(name, self.grace_ms, True)
        return True

    def recovering(self) -> bool:
        """Whether the storage is in its quarantine after a loss (a rebuild from LiveKit)."""
        return self.holds.recovering_ms() > 0

    def rebuild(self, room) -> str | None:
        """During a quarantine, a live room LiveKit lists with an owner and no record: it is
        that owner's, recorded for a grace and watched; the owner, or None (no valid owner in
        its metadata, or a record appeared meanwhile)."""
        owner = room_owner(room.metadata)
        if owner is None or not self.holds.transfer(room.name, None, owner, self.grace_ms, False):
            return None
        self.watch(room.name)
        return owner

    def remove_intruders(self, name: str, holder: str, participants) -> list[tuple[str, str]]:
        """Remove from `holder`'s room `name` every participant, in any state, of another
        tenant (`foreign`) or whose identity was removed from the room, and watch the room;
        [(identity, "foreign" or "removed")] of those removed."""
        removed = []
        for participant in participants:
            if self.foreign(holder, participant):
                why = "foreign"
            elif self.holds.removed(name, participant.identity):
                why = "removed"
            else:
                continue
            try:
                self.rooms.remove_participant(name, participant.identity)
            except LiveKitNotFound:
                continue  # it left meanwhile
            removed.append((participant.identity, why))
        if removed:
            self.watch(name)
        return removed

    def remove_over_quota(self, name: str, holder: str, participant) -> None:
        """A participant the reconciliation found beyond its room's participants quota."""
        self._remove_over_quota(name, holder, participant, f"reconcile:{participant.sid}")

    # Clocks.

    def clock_skew_ms(self) -> int:
        """Measure this instance's clock against the storage's now: storage minus instance, ms
        (half the round trip taken off)."""
        before = time.time()
        storage = self.holds.time_ms()
        after = time.time()
        self.skew_ms = storage - int((before + after) * 500)
        return self.skew_ms
