"""What each store promises, whatever its backend: one Protocol per store (holds, usage,
webhooks, console tickets, reconciliation) and the records they exchange. Times are ms on the
storage's clock; callers pass durations, never deadlines. Every operation is one atomic step on
its backend. No Flask here.
"""

from collections.abc import Callable, Mapping, Sequence
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


@dataclass(frozen=True)
class Continuity:
    """What a check of the store's continuity found (`loss.py`): why it lost acknowledged writes
    ("" when it did not; else a key of LOSS_REASONS), why it may forget on its own now (a Redis
    that evicts: the token route is 503 meanwhile), its record's epoch, birth time (storage
    clock, ms) and origin, and how long the quarantine has left (ms, 0: none)."""

    lost: str = ""
    problem: str | None = None
    epoch: str = ""
    born: int = 0
    origin: str = ""
    quarantine_ms: int = 0


@dataclass(frozen=True)
class RecordState:
    """What `storage init` looks at: whether a continuity record exists (and its origin), how
    long a quarantine has left, and whether the record holds anything of an earlier life."""

    born: bool
    origin: str
    quarantine_ms: int
    empty: bool


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
    #: How often (seconds) a process checks the store's continuity in full (open_holds sets it).
    check_interval_s: float

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
        with no record during a quarantine: StorageRecovering. A name with no record is given
        only once the store shows, in the same step, that it forgot nothing (else the store's
        continuity is checked first); a store that may evict: StorageUnavailable."""
        ...

    def check_continuity(self) -> Continuity:
        """Judge now, from what the store itself holds, whether it lost acknowledged writes;
        record what a later process needs to judge again; on a loss start (or extend) the
        quarantine for one grace and report it."""
        ...

    def record_state(self) -> RecordState:
        """What `storage init` looks at (no write)."""
        ...

    def init_record(self) -> Continuity:
        """Birth a new deployment's record (origin `init`) and end any quarantine."""
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
        none running): `record_state().quarantine_ms` without looking for an earlier life."""
        ...

    def durability_problem(self) -> str | None:
        """Why this storage may forget holds on its own (Redis evicting keys), or None."""
        ...

    def close(self) -> None:
        """Close connections."""
        ...


#: The kind of EventFacts the reconciliation records when it infers a life's end (LiveKit no
#: longer lists the room, or its node is dead): unlike LiveKit's `room_finished`, which ends a
#: life for good, a lost life that a later `participant_joined` or `room_started` shows alive
#: (LiveKit re-hosted the room on a live node, same sid) is reopened.
ROOM_LOST = "room_lost"


@dataclass(frozen=True)
class EventFacts:
    """What one LiveKit event says, in the storage's terms (`kind`: a LiveKit event's name, or
    ROOM_LOST). Times in ms (0: not given)."""

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
    whether this call reserved the room (to release if the token is not issued)."""

    refused: str | None
    count: int = 0
    reserved: bool = False


@dataclass(frozen=True)
class LiveLife:
    """A room life the usage record counts as live (not finished): its tenant, LiveKit name,
    start and its sessions still open (no leave). Its tenant's limits are not the store's: the
    caller asks the tenants' records."""

    sid: str
    tenant: str
    name: str
    started: int
    sessions: tuple[SessionRecord, ...]


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

    def record(
        self,
        facts: EventFacts,
        max_participants: int | None,
        max_rooms: int | None = None,
        others: Sequence[str] = (),
    ) -> str:
        """Apply one event: the room, the session and the seats of the tenant's room life.
        A life's first end stays (ROOM_LOST's cleared by a later `room_finished`), except that
        a lost life that a `participant_joined` or `room_started` later than its end shows
        alive is reopened: live again, its sessions before the end ended then, its start moved
        on by the gap (the room-seconds leave the dead time out), the join seated as any.
        Return "metered", "over_quota" (a join beyond `max_participants`: not seated),
        "over_rooms" (a room life first seen while the tenant has `max_rooms` of its `others`
        names in use: the caller ends it; it is metered until its end) or "ignored" (a room of
        no known tenant)."""
        ...

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
        """Refuse a seat in the tenant's full room `name` (unless `identity` is seated), or a
        room beyond `max_rooms` of the tenant's `others` names (its holds' names) in use; else
        reserve `name` for `reserve_ms` when it is not in use yet. Nothing else is kept: the
        limits are the caller's."""
        ...

    def release(self, tenant: str, name: str) -> None:
        """Drop the tenant's reservation of `name` (a live life stays in use)."""
        ...

    def rooms_in_use(self, tenant: str, names: Sequence[str]) -> list[str]:
        """Which of `names` the tenant has in use now (a live life or a reservation), sorted."""
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
    """A tenant's subscribed URL; `previous_secret` still signs until `previous_until` (ms).
    Secrets are kept as the service gives them (sealed: see `tokensvc/sealing.py`). An endpoint
    whose attempts all failed since `failing_since` is probed, one attempt at a time; one
    disabled (`disabled_at`, with a reason) gets no attempt until enabled again."""

    id: str
    tenant: str
    url: str
    events: tuple[str, ...]
    description: str
    created_at: int
    secret: str
    previous_secret: str = ""
    previous_until: int = 0
    disabled_at: int | None = None
    disabled_reason: str = ""
    failing_since: int | None = None

    @property
    def enabled(self) -> bool:
        """Whether attempts go to it."""
        return self.disabled_at is None


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
class Claim:
    """A delivery leased for one attempt (`claim`): its body, its endpoint's URL and secrets as
    stored (`previous_secret` only while it still signs), the attempts made so far, and how many
    attempts in a row its endpoint has failed."""

    id: str
    tenant: str
    endpoint_id: str
    url: str
    secret: str
    previous_secret: str
    body: str
    attempts: int
    endpoint_failures: int


@dataclass(frozen=True)
class Outcome:
    """What came of one claimed delivery: `delivered`, `failed` (an attempt that failed:
    `error` says why; tried again after `delay_ms` while its period allows, and its endpoint
    probed no sooner than that), or `released` (not attempted: back to waiting, nothing
    counted)."""

    id: str
    endpoint_id: str
    kind: Literal["delivered", "failed", "released"]
    status_code: int | None = None
    error: str = ""
    delay_ms: int = 0


@dataclass(frozen=True)
class Finished:
    """A delivery's state after `finish`, and whether that attempt disabled its endpoint."""

    id: str
    status: str
    disabled: bool = False


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
    `pending`, `delivered` or `failed`. Workers `claim` due deliveries with a lease, fairly: one
    per tenant with work due in turn (the tenant served longest ago first), within a tenant one
    per endpoint in turn, each endpoint's oldest due first, at most `concurrency` leases per
    endpoint (one while it is failing, and none before its next probe time or while it is
    disabled); `finish` records what came of them; `reap` puts back the deliveries whose lease
    ran out (a worker killed mid-attempt), once each."""

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
        """Delete one of the tenant's endpoints (its waiting deliveries fail); whether it was
        there."""
        ...

    def rotate(self, tenant: str, endpoint_id: str, secret: str, keep_ms: int) -> bool:
        """Replace an endpoint's secret; the old one signs too for `keep_ms`."""
        ...

    def set_enabled(
        self,
        tenant: str,
        endpoint_id: str,
        enabled: bool,
        reason: str,
        period_ms: int,
        concurrency: int,
    ) -> bool:
        """Enable one of the tenant's endpoints (its failures forgotten, the deliveries that
        waited due now in order of creation, each with another `period_ms`), or disable it
        with `reason`; whether it was there."""
        ...

    def secrets(self) -> list[tuple[str, str, str]]:
        """Every endpoint's (id, secret, previous secret) as stored."""
        ...

    def replace_secrets(self, endpoint_id: str, old: tuple[str, str], new: tuple[str, str]) -> bool:
        """Replace an endpoint's (secret, previous secret) if they are still `old`."""
        ...

    def add_deliveries(
        self, deliveries: list[NewDelivery], period_ms: int, concurrency: int
    ) -> None:
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

    def retry(self, tenant: str, delivery_id: str, period_ms: int, concurrency: int) -> bool:
        """Make one of the tenant's deliveries pending and due now, for another period."""
        ...

    def claim(
        self, limit: int, lease_ms: int, concurrency: int, skip: Sequence[str] = ()
    ) -> list[Claim]:
        """Lease up to `limit` due deliveries, fairly (see the class), none of the tenants in
        `skip` (their deliveries wait)."""
        ...

    def finish(
        self, outcomes: Sequence[Outcome], concurrency: int, disable_after_ms: int, reason: str
    ) -> list[Finished]:
        """Record what came of claimed deliveries (one step): delivered; failed (pending again
        after its delay while its period allows, else failed; its endpoint failing since its
        first failure in a row, probed after the delay, and disabled with `reason` and the
        error once failing for `disable_after_ms`); or released. A success clears the
        endpoint's failures."""
        ...

    def reap(self, limit: int, concurrency: int) -> int:
        """Put back up to `limit` deliveries whose lease ran out (no attempt counted); how
        many."""
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


#: The limits a tenant's record may set, each overriding the deployment's default: rooms live
#: at once, participants in one room, webhook endpoints, the agent names it may dispatch.
TENANT_LIMITS = ("max_rooms", "max_participants", "max_webhook_endpoints", "agents")


def check_limit_names(limits: Mapping[str, object]) -> None:
    """ValueError naming any limit of `limits` that is not one of TENANT_LIMITS (every
    backend's `TenantStore.change` refuses those before writing)."""
    unknown = set(limits) - set(TENANT_LIMITS)
    if unknown:
        raise ValueError(f"no such limit: {', '.join(sorted(unknown))}")


#: A tenant's status.
ACTIVE, SUSPENDED = "active", "suspended"


@dataclass(frozen=True)
class TenantRecord:
    """What the operator set for one tenant: each limit (None: the deployment's default), its
    status and why it is suspended, and when the record was made and last changed (ms)."""

    id: str
    max_rooms: int | None = None
    max_participants: int | None = None
    max_webhook_endpoints: int | None = None
    agents: tuple[str, ...] | None = None
    status: str = ACTIVE
    reason: str = ""
    created_at: int = 0
    updated_at: int = 0

    @property
    def suspended(self) -> bool:
        """Whether the operator suspended the tenant."""
        return self.status == SUSPENDED


class TenantStore(Protocol):
    """The operator's records of tenants, on the hold store's backend and clock. A tenant
    without a record has none of its own: the deployment's defaults apply."""

    @property
    def backend(self) -> Backend:
        """Which backend keeps the records."""
        ...

    where: str
    clock: StorageClock

    def get(self, tenant: str) -> TenantRecord | None:
        """The tenant's record, or None."""
        ...

    def all(self) -> list[TenantRecord]:
        """Every record, by tenant id."""
        ...

    def change(
        self,
        tenant: str,
        limits: Mapping[str, int | tuple[str, ...] | None],
        status: str | None = None,
        reason: str = "",
    ) -> TenantRecord:
        """Set the limits named (TENANT_LIMITS; None removes one) and, when given, the status
        and its reason, making the record if there is none (one step); the record after."""
        ...

    def time_ms(self) -> int:
        """The storage's clock, shifted, ms."""
        ...

    def close(self) -> None:
        """Close what this store opened."""
        ...


@dataclass(frozen=True)
class AuditEntry:
    """One action, as the audit trail keeps it: its id; when (ms, set by the store); the tenant
    acted on ("" for none); who acted (`actor`: "tenant" or "operator", with the bearer's
    subject and bound identity where it has them); what (`action`, on `target`); its outcome
    ("ok" or the error code); and details as a JSON object's text."""

    id: str
    at: int
    tenant: str
    actor: str
    subject: str
    identity: str
    action: str
    target: str
    outcome: str
    detail: str = "{}"


class AuditStore(Protocol):
    """The audit trail, on the hold store's backend and clock: entries are only added, and each
    is kept for the retention the store was opened with."""

    @property
    def backend(self) -> Backend:
        """Which backend keeps the trail."""
        ...

    where: str
    clock: StorageClock

    def add(self, entry: AuditEntry) -> AuditEntry:
        """Keep `entry` with its time set to the storage's now; the entry as kept."""
        ...

    def entries(self, tenant: str | None, limit: int) -> list[AuditEntry]:
        """The newest `limit` entries of `tenant` (None: every tenant's), newest first."""
        ...

    def time_ms(self) -> int:
        """The storage's clock, shifted, ms."""
        ...

    def close(self) -> None:
        """Close what this store opened."""
        ...


class ConsoleTicketStore(Protocol):
    """One-use tickets into the console, on the hold store's backend and clock, so that any
    instance redeems a ticket another issued. A ticket is kept by an id the caller derives from
    it (a hash: the store never holds the ticket itself), with an opaque payload."""

    @property
    def backend(self) -> Backend:
        """Which backend keeps the tickets."""
        ...

    where: str
    clock: StorageClock

    def issue(self, ticket_id: str, payload: str, ttl_ms: int) -> None:
        """Keep `payload` under `ticket_id` until now + `ttl_ms`."""
        ...

    def redeem(self, ticket_id: str) -> str | None:
        """The ticket's payload, once (one step: read and delete), or None for a ticket that is
        unknown, used or past its time."""
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
