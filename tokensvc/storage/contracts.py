"""What each store promises, whatever its backend: one Protocol per store (holds, usage,
webhooks, reconciliation) and the records they exchange. Times are ms on the storage's clock;
callers pass durations, never deadlines. Every operation is one atomic step on its backend. No
Flask here.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from .clock import StorageClock

#: The backends: the embedded SQLite file, or a Redis shared by every instance.
Backend = Literal["sqlite", "redis"]

#: How long a hold's record is kept past its `until`: a name whose room still lives is decided
#: by the live room's `auth_id` (and recorded again) once its record is gone.
RETENTION_MS = 24 * 3600 * 1000
#: A hold extended is extended this much further, so the holder's next tokens for a while find
#: it long enough and write nothing (the hold only ever ends later for it).
EXTEND_SLACK_MS = 30_000
#: How long a finished webhook delivery's record is kept (what the deliveries route can show).
DELIVERY_RETENTION_MS = 7 * 24 * 3600 * 1000
#: The newest webhook deliveries kept listed per tenant.
LISTED_PER_TENANT = 1000


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


class HoldStore(Protocol):
    """What the ownership record needs of a storage backend. Durations in ms."""

    @property
    def backend(self) -> Backend:
        """Which backend keeps the holds."""
        ...

    where: str
    clock: StorageClock
    #: How long a quarantine lasts (the ownership record sets it to one grace).
    quarantine_ms: int
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
        ...

    def get(self, name: str) -> Hold | None:
        """Return the hold on `name`, or None."""
        ...

    def verify(self, name: str, holder: str, lock: str | None = None) -> None:
        """Clear the pending mark of `holder`'s hold and release `lock` (one step)."""
        ...

    def mark_gone(self, name: str, seen: Hold, grace_ms: int) -> bool:
        """If the hold is still `seen`: mark it gone and extend it to now + `grace_ms`."""
        ...

    def transfer(
        self, name: str, seen: Hold | None, holder: str, hold_ms: int, pending: bool
    ) -> bool:
        """If the hold is still `seen` (None: no record): give the name to `holder`."""
        ...

    def drop(self, name: str, seen: Hold, lock: str | None = None) -> bool:
        """If the hold is still `seen`: delete it; release `lock` either way."""
        ...

    def keep(self, name: str, grace_ms: int, gone: bool) -> Hold | None:
        """A LiveKit event for a held name: extend the hold to at least now + `grace_ms` and set
        its gone mark to `gone`; None (nothing written) when there is no record."""
        ...

    def names_of(self, holder: str) -> list[str]:
        """The names `holder` holds (from the record: no scan of LiveKit's rooms)."""
        ...

    def remove(self, name: str, identity: str, for_ms: int) -> None:
        """Record that `identity` was removed from room `name`, for `for_ms`."""
        ...

    def removed(self, name: str, identity: str) -> bool:
        """Whether `identity` was removed from room `name` and the removal still holds."""
        ...

    def unlock(self, name: str, token: str) -> None:
        """Release the lock if `token` still holds it."""
        ...

    def first_seen(self, event_id: str, keep_ms: int) -> bool:
        """Remember an event id for `keep_ms`; whether it was new."""
        ...

    def time_ms(self) -> int:
        """The storage's clock (unshifted), ms."""
        ...

    def recovering_ms(self) -> int:
        """How long the quarantine after a detected loss of the store's data still lasts, ms (0:
        none running)."""
        ...

    def durability_problem(self) -> str | None:
        """Why this storage may forget holds on its own (Redis evicting keys), or None."""
        ...

    def close(self) -> None:
        """Close connections."""
        ...


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


@dataclass(frozen=True)
class LiveLife:
    """A room life the usage record counts as live (not finished): its tenant, LiveKit name,
    start, its sessions still open (no leave), and the participants limit recorded for its
    tenant (None: none recorded)."""

    sid: str
    tenant: str
    name: str
    started: int
    sessions: tuple[SessionRecord, ...]
    max_participants: int | None = None


#: What `usage` reads: the storage's now, the room lives and their sessions.
UsageReport = tuple[int, list[RoomRecord], list[SessionRecord]]


class UsageStore(Protocol):
    """The usage and quota records, on the hold store's backend and clock.

    Idempotent by construction: a room is keyed by its `sid`, a session by its participant's
    `sid`, and each keeps the times the events themselves carry (the earliest start seen, the
    first end seen), so an event delivered twice or out of order writes what it wrote before."""

    @property
    def backend(self) -> Backend:
        """Which backend keeps the records."""
        ...

    where: str
    clock: StorageClock

    def record(self, facts: EventFacts, default_max_participants: int | None) -> str:
        """Apply one event: the room, the session, the tenant's live rooms and the room's
        seats. Return "metered", "over_quota" (a join beyond the room's participant limit: not
        seated) or "ignored" (a room of no known tenant)."""
        ...

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
        ...

    def release(self, tenant: str, name: str) -> None:
        """Drop the tenant's reservation of `name` (a room seen live stays counted)."""
        ...

    def live_rooms(self, tenant: str) -> list[str]:
        """The names the tenant has counted as live or reserved now, sorted."""
        ...

    def usage(self, tenant: str | None, start: int, end: int) -> UsageReport:
        """(the storage's now, rooms, sessions) of the rooms of `tenant` (None: every tenant)
        whose lives overlap [start, end)."""
        ...

    def live_lives(self) -> list[LiveLife]:
        """Every room life of every tenant that is not finished, with its open sessions (what
        the reconciliation compares with LiveKit's rooms)."""
        ...

    def time_ms(self) -> int:
        """The storage's clock, shifted, ms."""
        ...

    def close(self) -> None:
        """Nothing: the hold store closes the shared connection."""
        ...


@dataclass(frozen=True)
class Endpoint:
    """A tenant's subscribed URL; `previous_secret` still signs until `previous_until` (ms)."""

    id: str
    tenant: str
    url: str
    events: tuple[str, ...]
    description: str
    created_at: int
    secret: str
    previous_secret: str = ""
    previous_until: int = 0


@dataclass(frozen=True)
class Delivery:
    """One event for one endpoint, and how its delivery went (times in ms, storage clock)."""

    id: str
    tenant: str
    endpoint_id: str
    event_id: str
    type: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: int | None
    created_at: int


@dataclass(frozen=True)
class NewDelivery:
    """A delivery to make: its id, tenant, endpoint, event and fixed body."""

    id: str
    tenant: str
    endpoint_id: str
    event_id: str
    type: str
    body: str


@dataclass(frozen=True)
class Attempt:
    """What `start_attempt` found: `go` (with the body, the endpoint's URL and the secrets that
    sign now), or why not: `gone`, `done`, `leased`, `early` (wait_ms left), `busy` (the
    endpoint has its most attempts running), `orphan` (its endpoint was deleted: failed)."""

    outcome: str
    body: str = ""
    url: str = ""
    secrets: tuple[str, ...] = ()
    attempts: int = 0
    wait_ms: int = 0


@dataclass(frozen=True)
class Stats:
    """Deliveries by final outcome and failed attempts (counters), those pending, and the
    creation time of the oldest pending one (ms, or None), with the storage's now."""

    outcomes: dict[str, int]
    pending: int
    oldest_pending: int | None
    now: int


class WebhookStore(Protocol):
    """Tenants' webhook endpoints and deliveries, on the hold store's backend and clock.

    An endpoint belongs to one tenant; every read by id checks the tenant, so another tenant's id
    is the same as a missing one. A delivery's body is fixed when it is made; its state is
    `pending`, `delivered` or `failed`. A worker takes a delivery with a lease (`start_attempt`,
    which also bounds the attempts running at once per endpoint) and ends it with
    `finish_attempt`; a lease that runs out hands the delivery out again (`overdue`)."""

    @property
    def backend(self) -> Backend:
        """Which backend keeps the records."""
        ...

    where: str
    clock: StorageClock

    def prepare(self) -> None:
        """Make what the store needs now (at start-up), not at the first request."""
        ...

    def add_endpoint(self, endpoint: Endpoint, most: int) -> Endpoint | None:
        """Store a new endpoint (its created_at set now) unless the tenant has `most`."""
        ...

    def endpoints(self, tenant: str) -> list[Endpoint]:
        """The tenant's endpoints, oldest first."""
        ...

    def delete_endpoint(self, tenant: str, endpoint_id: str) -> bool:
        """Delete one of the tenant's endpoints; whether it was there."""
        ...

    def rotate(self, tenant: str, endpoint_id: str, secret: str, keep_ms: int) -> bool:
        """Replace an endpoint's secret; the old one signs too for `keep_ms`."""
        ...

    def add_deliveries(self, deliveries: list[NewDelivery], period_ms: int) -> None:
        """Store pending deliveries, due now, to be tried for `period_ms` (one step)."""
        ...

    def deliveries(
        self, tenant: str, endpoint_id: str | None, status: str | None, limit: int
    ) -> list[Delivery]:
        """The tenant's newest deliveries, filtered by endpoint and status."""
        ...

    def delivery(self, tenant: str, delivery_id: str) -> Delivery | None:
        """One of the tenant's deliveries, or None."""
        ...

    def retry(self, tenant: str, delivery_id: str, period_ms: int) -> bool:
        """Make one of the tenant's deliveries pending and due now, for another period."""
        ...

    def start_attempt(
        self, delivery_id: str, lease_ms: int, concurrency: int, slack_ms: int
    ) -> Attempt:
        """Lease a due pending delivery for one attempt, unless its endpoint already has
        `concurrency` attempts running."""
        ...

    def finish_attempt(
        self,
        delivery_id: str,
        delivered: bool,
        status_code: int | None,
        error: str | None,
        delay_ms: int,
    ) -> tuple[str, int | None]:
        """Record one attempt: delivered, or pending again in `delay_ms` while its deadline
        allows, else failed; return (status, next attempt's time or None)."""
        ...

    def overdue(self, older_than_ms: int, limit: int) -> list[str]:
        """Pending deliveries due more than `older_than_ms` ago and not leased (their wake-up
        was lost: a worker killed mid-attempt, a queue write that failed)."""
        ...

    def stats(self) -> Stats:
        """The counters, the pending count and the oldest pending delivery's creation time."""
        ...

    def time_ms(self) -> int:
        """The storage's clock, shifted, ms."""
        ...

    def close(self) -> None:
        """Close what this store opened."""
        ...


class ReconcileStore(Protocol):
    """What the reconciliation with LiveKit keeps in the storage, beside the holds and on their
    clock: the lease that lets one sweeper of the deployment sweep at a time, the rooms under
    watch (each until a deadline), and the count of repairs by kind (read by every instance's
    /metrics)."""

    @property
    def backend(self) -> Backend:
        """Which backend keeps the records."""
        ...

    where: str
    clock: StorageClock

    def lease(self, name: str, owner: str, lease_ms: int) -> bool:
        """Take the lease `name` for `owner` for `lease_ms`, or renew it when `owner` has it;
        False while another owner's lease runs."""
        ...

    def release(self, name: str, owner: str) -> None:
        """Give the lease up if `owner` still has it."""
        ...

    def watch(self, name: str, for_ms: int) -> None:
        """Watch room `name` for at least `for_ms` from now (a later deadline stays)."""
        ...

    def watched(self) -> list[str]:
        """The names whose watch has not run out, sorted."""
        ...

    def count(self, kind: str, n: int = 1) -> None:
        """Add `n` repairs of `kind`."""
        ...

    def counts(self) -> dict[str, int]:
        """The repairs counted so far, by kind."""
        ...

    def time_ms(self) -> int:
        """The storage's clock, shifted, ms."""
        ...

    def close(self) -> None:
        """Nothing: the hold store closes the shared connection."""
        ...
