"""The ownership record in Redis: one hash per name {holder, until, gone, pending}, expiring
RETENTION_MS after `until`, and one set per holder of the names it holds (checked against the
hashes when read); the per-name locks, the removals, the continuity record
(`tokensvc:continuity`, see `loss.py`), the quarantine (`tokensvc:recovering`: its end, ms, on
the storage's clock) and the seen event ids. Every script reads the clock from TIME."""

import secrets
from collections.abc import Callable
from typing import Any

from ...errors import StorageRecovering, StorageUnavailable
from ..contracts import EXTEND_SLACK_MS, RETENTION_MS, Continuity, Hold, RecordState
from ..loss import CheckSchedule, report_loss
from .base import REDIS_PREFIX, RedisConnection, RedisStore

#: The prefix of the per-holder sets of names.
NAMES_PREFIX = REDIS_PREFIX + "names:"
#: The Redis eviction policy that never drops a key.
NO_EVICTION = "noeviction"
CLOCK = ("clock", "holds_names")
#: The keys of the store's continuity: its record, the quarantine, an earlier version's epoch.
CONTINUITY_KEY = REDIS_PREFIX + "continuity"
RECOVERING_KEY = REDIS_PREFIX + "recovering"
OLD_EPOCH_KEY = REDIS_PREFIX + "epoch"
#: Keys that show no earlier life of the record (`storage init` may still run beside them).
LIFELESS = (CONTINUITY_KEY, RECOVERING_KEY, OLD_EPOCH_KEY)
LIFELESS_PREFIXES = (REDIS_PREFIX + "lock:", REDIS_PREFIX + "event:")


def eviction_problem(policy: str) -> str:
    """What to tell an operator whose Redis may evict records."""
    return (
        f"the service's storage may evict records (Redis maxmemory-policy {policy}); "
        f"set maxmemory-policy noeviction"
    )


class RedisHolds(RedisStore):
    """Holds in Redis, shared by every instance (redis-py; Lua scripts for atomic steps)."""

    scripts = {
        "claim": ("holds_claim", (*CLOCK, "continuity_facts")),
        "judge": ("continuity_judge", ("clock", "continuity_facts")),
        "cas": ("holds_compare_and_set", CLOCK),
        "keep": ("holds_keep", CLOCK),
        "verify": ("holds_verify", ()),
        "remove": ("holds_remove", CLOCK),
        "removed": ("holds_removed", CLOCK),
        "get": ("holds_get", CLOCK),
        "unlock": ("holds_unlock", ()),
    }
    #: How long a quarantine lasts (the ownership record sets it to one grace).
    quarantine_ms = 0
    #: How often (seconds) the continuity is checked in full (open_holds sets it).
    check_interval_s = 5.0

    def __init__(self, connection: RedisConnection) -> None:
        """Keep holds in `connection`'s Redis; the hold store owns (and closes) it."""
        super().__init__(connection)
        self.timeout = connection.timeout
        self.replicas = connection.replicas
        self.on_loss: Callable[[], None] | None = None
        self._schedule = CheckSchedule()
        self._problem: str | None = None  # the last full check's: the store may evict

    @staticmethod
    def _key(kind: str, name: str = "") -> str:
        """The key of a name's hold, lock or removals, or of the store's own records."""
        return f"{REDIS_PREFIX}{kind}:{name}" if name else f"{REDIS_PREFIX}{kind}"

    def claim(
        self,
        name: str,
        holder: str,
        hold_ms: int,
        identity: str | None = None,
        lock_ms: int = 0,
        shared: bool = True,
    ) -> Hold:
        """One script: insert, extend the holder's own hold, or return another's; take the
        lock; say whether `identity` was removed. When the script cannot show the store's
        continuity: check it in full, then once more."""
        if self._schedule.due(self.check_interval_s):
            self.check_continuity()
        if self._problem:
            raise StorageUnavailable(self._problem)
        for _ in range(2):
            found = self._run(
                "claim",
                [
                    self._key("hold", name),
                    self._key("removed", name),
                    self._key("lock", name),
                    CONTINUITY_KEY,
                    RECOVERING_KEY,
                ],
                [
                    holder,
                    hold_ms,
                    EXTEND_SLACK_MS,
                    RETENTION_MS,
                    NAMES_PREFIX,
                    name,
                    identity if identity is not None else "",
                    secrets.token_hex(16),
                    lock_ms,
                    "1" if shared else "0",
                    self.clock.shift_ms,
                ],
            )
            kind = found[0].decode()
            if kind == "hold":
                held_by, until, gone, pending, removed, now, lock, wait = (
                    part.decode() for part in found[1:]
                )
                return Hold(
                    held_by,
                    int(until),
                    gone == "1",
                    pending == "1",
                    removed == "1",
                    int(now),
                    lock or None,
                    int(wait),
                )
            if kind == "recovering":
                raise StorageRecovering(retry_after_ms=int(found[1]))
            if kind == "unsafe":  # the next full check keeps it until the policy is right
                raise StorageUnavailable(eviction_problem(found[1].decode()))
            self.check_continuity()
        raise StorageUnavailable()

    def check_continuity(self) -> Continuity:
        """One script judges the store from what it holds (INFO and the continuity record), with
        the persistence settings CONFIG shows (unknown where CONFIG is disabled: then a restart
        counts as a loss)."""
        found = self._judge("check")
        if found.lost:
            report_loss(self.where, found.lost, self.quarantine_ms, self.on_loss)
        self._problem = found.problem
        return found

    def _judge(self, mode: str) -> Continuity:
        """Run the judging script in `mode` ("check" or "init")."""
        lost, policy, epoch, born, origin, left = (
            part.decode()
            for part in self._run(
                "judge",
                [CONTINUITY_KEY, RECOVERING_KEY, OLD_EPOCH_KEY],
                [
                    secrets.token_hex(8),
                    max(1, self.quarantine_ms),
                    self.clock.shift_ms,
                    "1" if self._fsyncs_always() else "0",
                    self.replicas,
                    mode,
                ],
            )
        )
        problem = eviction_problem(policy) if policy != NO_EVICTION else None
        return Continuity(lost, problem, epoch, int(born or 0), origin, int(left))

    def _fsyncs_always(self) -> bool:
        """Whether Redis runs with appendonly yes and appendfsync always (CONFIG; False where it
        is disabled): then a restart loses no acknowledged write."""
        import redis

        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.config_get("appendonly")
            pipe.config_get("appendfsync")
            appendonly, appendfsync = pipe.execute()
        except redis.ResponseError:
            return False
        return bool(
            appendonly.get("appendonly") == "yes" and appendfsync.get("appendfsync") == "always"
        )

    def record_state(self) -> RecordState:
        """The record's origin and quarantine, and whether any key shows an earlier life."""
        origin, left = self.client.hget(CONTINUITY_KEY, "origin"), self.recovering_ms()
        empty = True
        for key in self.client.scan_iter(match=REDIS_PREFIX + "*", count=1000):
            text = key.decode()
            if text not in LIFELESS and not text.startswith(LIFELESS_PREFIXES):
                empty = False
                break
        return RecordState(origin is not None, origin.decode() if origin else "", left, empty)

    def init_record(self) -> Continuity:
        """Birth the record (origin `init`) and end the quarantine."""
        found = self._judge("init")
        self._problem = found.problem
        return found

    def get(self, name: str) -> Hold | None:
        """The hold on `name`, or None."""
        holder, until, gone, pending, now = (
            part.decode()
            for part in self._run(
                "get", [self._key("hold", name)], [self.clock.shift_ms], write=False
            )
        )
        if not holder:
            return None
        return Hold(holder, int(until), gone == "1", pending == "1", now=int(now))

    def verify(self, name: str, holder: str, lock: str | None = None) -> None:
        """Clear the pending mark and release the lock."""
        self._run(
            "verify", [self._key("hold", name), self._key("lock", name)], [holder, lock or ""]
        )

    def mark_gone(self, name: str, seen: Hold, grace_ms: int) -> bool:
        """Compare-and-set the gone mark."""
        return self._compare_and_set(name, seen, (seen.holder, grace_ms, False), "gone")

    def transfer(
        self, name: str, seen: Hold | None, holder: str, hold_ms: int, pending: bool
    ) -> bool:
        """Compare-and-set the holder."""
        return self._compare_and_set(name, seen, (holder, hold_ms, pending), "transfer")

    def drop(self, name: str, seen: Hold, lock: str | None = None) -> bool:
        """Compare-and-delete; release the lock."""
        return self._compare_and_set(name, seen, (seen.holder, 0, False), "drop", lock)

    def _compare_and_set(
        self,
        name: str,
        seen: Hold | None,
        new: tuple[str, int, bool],
        mode: str,
        lock: str | None = None,
    ) -> bool:
        """Run the compare-and-set script."""
        expected = (
            ("", "", "", "", "1")
            if seen is None
            else (
                seen.holder,
                str(seen.until),
                "1" if seen.gone else "0",
                "1" if seen.pending else "0",
                "0",
            )
        )
        holder, duration, pending = new
        done = self._run(
            "cas",
            [self._key("hold", name), self._key("lock", name)],
            [
                *expected,
                holder,
                duration,
                "1" if pending else "0",
                RETENTION_MS,
                mode,
                NAMES_PREFIX,
                name,
                lock or "",
                self.clock.shift_ms,
            ],
        )
        return bool(done == 1)

    def keep(self, name: str, grace_ms: int, gone: bool) -> Hold | None:
        """Extend a recorded hold and set its gone mark."""
        found = self._run(
            "keep",
            [self._key("hold", name)],
            [grace_ms, "1" if gone else "0", RETENTION_MS, NAMES_PREFIX, name, self.clock.shift_ms],
        )
        if not found:
            return None
        holder, until, pending, now = (part.decode() for part in found)
        return Hold(holder, int(until), gone, pending == "1", now=int(now))

    def names_of(self, holder: str) -> list[str]:
        """The holder's set of names, each checked against its hold (stale ones dropped)."""
        key = self._key("names", holder)
        names = sorted(member.decode() for member in self.client.smembers(key))
        if not names:
            return []
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.hget(self._key("hold", name), "holder")
        holders = pipe.execute()
        stale = [
            name for name, found in zip(names, holders, strict=True) if found != holder.encode()
        ]
        if stale:
            self.connection.command("SREM", key, *stale)
        return [name for name in names if name not in stale]

    def remove(self, name: str, identity: str, for_ms: int) -> None:
        """One hash of removals per room, expiring with its last removal."""
        self._run("remove", [self._key("removed", name)], [identity, for_ms, self.clock.shift_ms])

    def removed(self, name: str, identity: str) -> bool:
        """A removal that has not run out."""
        found = self._run(
            "removed", [self._key("removed", name)], [identity, self.clock.shift_ms], write=False
        )
        return bool(found == 1)

    def unlock(self, name: str, token: str) -> None:
        """Compare-and-delete."""
        self._run("unlock", [self._key("lock", name)], [token])

    def first_seen(self, event_id: str, keep_ms: int) -> bool:
        """SET NX PX."""
        return bool(
            self.connection.command("SET", self._key("event", event_id), "1", "NX", "PX", keep_ms)
        )

    def time_ms(self) -> int:
        """Redis's TIME, ms."""
        return self.connection.time_ms()

    def recovering_ms(self) -> int:
        """How long the quarantine still lasts, ms (0: none): its end, kept on the storage's
        clock as the scripts read it (Redis's TIME, shifted), less that clock's now."""
        until = self.client.get(RECOVERING_KEY)
        if until is None:
            return 0
        return max(0, int(until) - (self.connection.time_ms() + self.clock.shift_ms))

    def durability_problem(self) -> str | None:
        """A `maxmemory-policy` other than noeviction evicts holds under memory pressure (read
        from INFO, which works where CONFIG is disabled)."""
        policy: Any = self.client.info("memory").get("maxmemory_policy")
        if policy != NO_EVICTION:
            return (
                f"Redis at {self.where} has maxmemory-policy {policy}: it may evict holds; "
                f"set maxmemory-policy noeviction"
            )
        return None

    def close(self) -> None:
        """Close the connection pool."""
        self.connection.close()
