"""The reconciliation with LiveKit: the record, usage and seats follow what LiveKit lists, not
only what its webhooks told (no Flask).

LiveKit sends no event for a participant that never goes active (signal only: it sees the room
for up to 60 s, and comes back with its refreshed token as often as it likes) and none when a
node dies, and webhooks get lost. So one sweeper per deployment (in the worker; a lease in the
storage lets one sweep at a time) asks LiveKit every RECONCILE_INTERVAL:

- once for its rooms (ListRooms, no names), after reading the usage record's live room lives;
- whether the node of each room that bills (a life with open sessions) answers (`reaches`: a
  SendData to nobody, routed to the room's node; a dead node's rooms and participants stay in
  LiveKit's store, counts and all);
- for the participants (ListParticipants) only of rooms whose count disagrees with the record,
  rooms under watch, and rooms at their participants quota (the tenant's, asked of `Usage`:
  its record's, else the settings'), and never of a room the record neither holds nor meters
  (another client's: nobody to meter or protect).

From that, asking `Ownership` for every decision on who holds what and `Usage` for the record:
a listed held room's hold lasts a grace more (kept at most once a minute per name); a held room
no longer listed, or on a dead node, starts its grace and its life ends when it was last seen,
with its sessions and seats; a session no longer listed ends when its room was last seen; an
active participant listed but never reported starts its session at its join; a participant in
any state of another tenant, or an identity removed from the room, is removed. During a
quarantine after a storage loss a listed room with an owner and no record is rebuilt as that
owner's. The rooms under watch (a durable removal, a foreign participant just removed, a name
rebuilt) are listed every WATCH_INTERVAL for the life of LiveKit's refreshed tokens, so such a
participant is out within about two watch intervals. Every repair is counted in the storage by
kind (`/metrics` shows `tokensvc_reconcile_repairs_total`) and logged once.

The end the reconciliation gives a life is inferred (`Usage.finish_life` records it as lost, not
as LiveKit's `room_finished`): LiveKit re-hosts a dead node's room on a live node with the same
sid (a CreateRoom or a join through a live node), and a join after the end reopens the life in
the record (usage.py). A room whose node was seen dead is not probed again while its count stays
the same, unless its life is live again: then it is probed as any room that bills; the sessions
its dead node cut off are not opened again for participants LiveKit still lists.

The sweeper's memory (when each room life was last seen, which rooms' probes failed) is a
process's: a new sweeper taking the lease over ends a life it never saw at its first sweep.
"""

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .errors import ApiError, LiveKitNotFound

log = logging.getLogger(__name__)

#: The storage lease that lets one sweeper of the deployment sweep at a time.
LEASE_NAME = "reconcile"
#: A listed room's hold is kept (a storage write) at most this often per name, seconds: the
#: grace it extends lasts more than ten minutes.
KEEP_EVERY_S = 60.0
#: Full sweeps failed in a row after which a sweeper gives its lease up for one lease.
FAILED_SWEEPS_TO_STAND_BACK = 2
#: The probes of one sweep run this many at once.
PROBES_AT_ONCE = 8
#: LiveKit's participant states that the events report (WebRTC connected).
ACTIVE = 2


@dataclass
class Sweep:
    """What one sweep did: LiveKit calls by method, repairs by kind."""

    calls: dict[str, int] = field(default_factory=dict)
    repairs: dict[str, int] = field(default_factory=dict)

    def called(self, method: str, n: int = 1) -> None:
        """Count `n` LiveKit calls of `method`."""
        self.calls[method] = self.calls.get(method, 0) + n

    def repaired(self, kind: str) -> None:
        """Count one repair of `kind`."""
        self.repairs[kind] = self.repairs.get(kind, 0) + 1


class Reconciler:
    """One deployment's sweeps of LiveKit's rooms against the record, usage and seats."""

    def __init__(self, settings, ownership, usage, rooms, store):
        """Ask `ownership` (ownership.py) and `usage` (usage.py), call LiveKit through `rooms`
        (the RoomService client), keep the lease, watches and counts in `store`."""
        self.settings = settings
        self.ownership = ownership
        self.usage = usage
        self.rooms = rooms
        self.store = store
        self.last_seen: dict[str, int] = {}  # room sid -> storage ms it was last seen alive
        self.dead: dict[str, int] = {}  # room sid -> its listed count when its node was dead
        #: room sid -> the participant sids of the sessions its dead node cut off (LiveKit may
        #: list them after it re-hosts the room: they are not opened again)
        self.cut_off: dict[str, set[str]] = {}
        #: room name -> (monotonic time its hold was kept, its holder)
        self.kept: dict[str, tuple[float, str]] = {}

    def sweep(self) -> Sweep:
        """One sweep of every live room (see the module's docstring); what it did."""
        done = Sweep()
        lives = self.usage.live_lives()  # read before LiveKit: a later life is not judged
        watched = set(self.store.watched())
        now = self.store.time_ms()
        listed = {room.name: room for room in self.rooms.every_room()}
        done.called("ListRooms")
        by_sid = {life.sid: life for life in lives}
        for sid in [sid for sid in self.dead if sid in by_sid]:
            # Its life ended when its node was seen dead, and it is live again: LiveKit
            # re-hosted the room on a live node and a join reopened the life. Probe it again.
            del self.dead[sid]
        alive = self._probe(
            [room for room in listed.values() if self._bills(by_sid.get(room.sid), room)], done
        )
        for room in listed.values():  # seen dead before, and unchanged since: still dead
            if room.sid not in alive and self.dead.get(room.sid) == room.num_participants:
                alive[room.sid] = False
        recovering = None
        limits: dict[str, int | None] = {}  # tenant -> its participants quota, this sweep
        for name, room in listed.items():
            life = by_sid.get(room.sid)
            if room.sid in alive and not alive[room.sid]:
                continue  # a dead node's room: its life ends below
            holder = self._keep(name)
            if holder is None and room.metadata:  # no record: only a rebuild may give one
                if recovering is None:
                    recovering = self.ownership.recovering()
                if recovering and self.ownership.rebuild(room) is not None:
                    self._repaired(done, "name_rebuilt", name)
                    holder = self.ownership.holder(name)
            count = len(life.sessions) if life is not None else 0
            limit = self._limit(life.tenant if life is not None else holder, limits)
            if (holder is not None or life is not None) and (
                room.num_participants != count
                or name in watched
                or (limit is not None and count >= limit)
            ):  # a room with no record and no life (another client's): nothing to settle
                self._settle(room, life, holder, now, done)
            self.last_seen[room.sid] = now
        for life in lives:
            room = listed.get(life.name)
            if room is not None and room.sid == life.sid and alive.get(room.sid, True):
                continue
            self._end_life(life, now, done)
            if room is not None and not alive.get(room.sid, True):
                self.cut_off[life.sid] = {session.sid for session in life.sessions}
            if room is None or not alive.get(room.sid, True):
                if self.ownership.unlisted(life.name):
                    self._repaired(done, "grace_started", life.name)
        for sid in [sid for sid in self.last_seen if sid not in by_sid and sid not in alive]:
            if not any(room.sid == sid for room in listed.values()):
                del self.last_seen[sid]
        for name in [name for name in self.kept if name not in listed]:
            del self.kept[name]
        sids = {room.sid for room in listed.values()}
        for sid in [sid for sid in self.dead if sid not in sids]:
            del self.dead[sid]
        for sid in [sid for sid in self.cut_off if sid not in sids]:
            del self.cut_off[sid]
        return done

    def watch_sweep(self) -> Sweep:
        """List the participants of every room under watch and remove the intruders."""
        done = Sweep()
        for name in self.store.watched():
            holder = self.ownership.holder(name)
            if holder is None:
                continue
            try:
                participants = self.rooms.list_participants(name)
            except LiveKitNotFound:
                continue
            finally:
                done.called("ListParticipants")
            self._remove_intruders(name, holder, participants, done)
        return done

    def _limit(self, tenant: str | None, limits: dict[str, int | None]) -> int | None:
        """The tenant's participants quota (its record's, else the settings'; asked of `Usage`
        once per tenant and sweep); None for no tenant or no quota."""
        if not tenant:
            return None
        if tenant not in limits:
            limits[tenant] = self.usage.limits_for(tenant).max_participants
        return limits[tenant]

    def _bills(self, life, room) -> bool:
        """Whether a listed room's node must be asked: its life has open sessions in the record
        (it bills and takes seats), unless its node was seen dead with the same count."""
        if life is None or not life.sessions:
            return False
        return self.dead.get(room.sid) != room.num_participants

    def _probe(self, rooms, done: Sweep) -> dict[str, bool]:
        """Whether each room's node answers (several at once); room sid -> answered."""
        found: dict[str, bool] = {}
        if not rooms:
            return found
        with ThreadPoolExecutor(min(PROBES_AT_ONCE, len(rooms))) as pool:
            answers = list(pool.map(lambda room: self.rooms.reaches(room.name), rooms))
        done.called("SendData", len(rooms))
        for room, answered in zip(rooms, answers, strict=True):
            found[room.sid] = answered
            if answered:
                self.dead.pop(room.sid, None)
            else:
                self.dead[room.sid] = room.num_participants
                log.warning(
                    "reconcile: the LiveKit node of room %r does not answer; its life ends "
                    "when it was last seen",
                    room.name,
                )
        return found

    def _keep(self, name: str) -> str | None:
        """A listed room: its hold lasts a grace more (written at most once per KEEP_EVERY_S);
        the record's holder, or None."""
        kept = self.kept.get(name)
        if kept is not None and time.monotonic() - kept[0] < KEEP_EVERY_S:
            return kept[1]  # a listed room's holder does not change: no name passes while live
        hold = self.ownership.listed(name)
        if hold is None:
            self.kept.pop(name, None)
            return None
        self.kept[name] = (time.monotonic(), hold.holder)
        return hold.holder

    def _settle(self, room, life, holder: str | None, now: int, done: Sweep) -> None:
        """List a room's participants: remove the intruders, end the sessions no longer
        listed when the room was last seen, start those never reported."""
        try:
            participants = self.rooms.list_participants(room.name)
        except LiveKitNotFound:
            return  # closed since ListRooms: the next sweep ends its life
        finally:
            done.called("ListParticipants")
        if holder is not None:
            removed = self._remove_intruders(room.name, holder, participants, done)
            gone = {identity for identity, _ in removed}
            participants = [p for p in participants if p.identity not in gone]
        present = {participant.sid for participant in participants}
        if life is not None:
            seen = self.last_seen.get(life.sid, now)
            for session in life.sessions:
                if session.sid not in present:
                    self.usage.close_session(life, session, seen)
                    self._repaired(done, "session_closed", room.name)
        if not holder:  # no record, or the anonymous namespace: nobody to meter for
            return
        known = {session.sid for session in life.sessions} if life is not None else set()
        known |= self.cut_off.get(room.sid, set())
        for participant in participants:
            if participant.state != ACTIVE or participant.sid in known:
                continue
            outcome = self.usage.open_session(holder, room, participant, now)
            self._repaired(done, "session_opened", room.name)
            if outcome == "over_quota":
                self.ownership.remove_over_quota(room.name, holder, participant)
                self._repaired(done, "quota_removed", room.name)

    def _remove_intruders(self, name: str, holder: str, participants, done: Sweep):
        """Ask the ownership rule to remove the participants of another tenant and the removed
        identities; count each."""
        removed = self.ownership.remove_intruders(name, holder, participants)
        if removed:
            done.called("RemoveParticipant", len(removed))
        for _, why in removed:
            self._repaired(done, f"{why}_removed", name)
        return removed

    def _end_life(self, life, now: int, done: Sweep) -> None:
        """A life LiveKit no longer lists, or whose node is dead: it ends when last seen."""
        self.usage.finish_life(life, self.last_seen.pop(life.sid, now))
        self._repaired(done, "life_ended", life.name)

    def _repaired(self, done: Sweep, kind: str, name: str) -> None:
        """Count one repair in this sweep and in the storage, and log it."""
        done.repaired(kind)
        log.info("reconcile: %s in room %r", kind.replace("_", " "), name)
        try:
            self.store.count(kind)
        except ApiError:
            pass  # logged by the store; the repair itself is done


class ReconcileLoop:
    """A thread that sweeps while this process holds the deployment's lease: the rooms under
    watch every WATCH_INTERVAL, every room every RECONCILE_INTERVAL."""

    def __init__(self, reconciler: Reconciler):
        """Sweep with `reconciler`, under a lease of three sweeps (at least 30 s)."""
        self.reconciler = reconciler
        settings = reconciler.settings
        self.interval = settings.reconcile_interval
        self.watch_interval = min(settings.watch_interval, self.interval)
        self.lease_ms = int(max(3 * self.interval, 30.0) * 1000)
        self.owner = uuid.uuid4().hex
        self.leased_until = 0.0  # monotonic
        self.back_until = 0.0  # monotonic: the lease is not taken before
        self.next_full = 0.0  # monotonic: the next full sweep is due
        self.failed = 0  # full sweeps failed in a row
        self.sweeps = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="reconcile", daemon=True)

    def start(self) -> "ReconcileLoop":
        """Start sweeping."""
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop, give the lease up, and wait for the thread."""
        self.stopped.set()
        self.thread.join(10)
        try:
            self.reconciler.store.release(LEASE_NAME, self.owner)
        except ApiError:
            pass

    def holds_lease(self) -> bool:
        """Take or renew the lease when it is due (a third of it left); whether this process
        may sweep (not while standing back after failed sweeps)."""
        if time.monotonic() < self.back_until:
            return False
        if time.monotonic() < self.leased_until - self.lease_ms / 3000:
            return True
        started = time.monotonic()
        try:
            leased = self.reconciler.store.lease(LEASE_NAME, self.owner, self.lease_ms)
        except ApiError:
            leased = False
        self.leased_until = started + self.lease_ms / 1000 if leased else 0.0
        return leased

    def _run(self) -> None:
        """Sweep until stopped, a watch interval apart."""
        while not self.stopped.is_set():
            started = time.monotonic()
            self.tick()
            self.stopped.wait(max(0.0, self.watch_interval - (time.monotonic() - started)))

    def tick(self) -> None:
        """One turn: under the lease, a full sweep when one is due, else a watch sweep. A failed
        sweep is logged and tried at the next turn; after FAILED_SWEEPS_TO_STAND_BACK full sweeps
        failed in a row (this worker's LiveKit or storage out of reach), the lease is given up
        for one lease, so that a worker that reaches them sweeps instead."""
        if not self.holds_lease():
            return
        tick = time.monotonic()
        full = tick >= self.next_full
        try:
            if full:
                self.next_full = tick + self.interval
                self.reconciler.sweep()
                self.sweeps += 1
                self.failed = 0
            else:
                self.reconciler.watch_sweep()
            return
        except ApiError as exc:
            log.warning("reconcile: a sweep failed (%s)", exc.error_code)
        except Exception as exc:  # never let the thread die
            log.warning("reconcile: a sweep failed (%s)", type(exc).__name__)
        if not full:
            return
        self.failed += 1
        if self.failed >= FAILED_SWEEPS_TO_STAND_BACK:
            log.warning(
                "reconcile: %d sweeps failed in a row; the lease is given up for %d s",
                self.failed,
                self.lease_ms // 1000,
            )
            self.failed = 0
            self.leased_until = 0.0
            self.back_until = time.monotonic() + self.lease_ms / 1000
            try:
                self.reconciler.store.release(LEASE_NAME, self.owner)
            except ApiError:
                pass
