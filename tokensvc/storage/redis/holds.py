"""The ownership record in Redis: one hash per name {holder, until, gone, pending}, expiring
RETENTION_MS after `until`, and one set per holder of the names it holds (checked against the
hashes when read); the per-name locks, the removals, the epoch and the seen event ids. Every
script reads the clock from TIME."""

import secrets
from collections.abc import Callable
from typing import Any

from ...errors import StorageRecovering, StorageUnavailable
from ..contracts import EXTEND_SLACK_MS, RETENTION_MS, Hold
from ..loss import report_loss
from .base import REDIS_PREFIX, RedisConnection, RedisStore

#: The prefix of the per-holder sets of names.
NAMES_PREFIX = REDIS_PREFIX + "names:"
#: The Redis eviction policy that never drops a key.
NO_EVICTION = "noeviction"
CLOCK = ("clock", "holds_names")


class RedisHolds(RedisStore):
    """Holds in Redis, shared by every instance (redis-py; Lua scripts for atomic steps)."""

    scripts = {
        "claim": ("holds_claim", CLOCK),
        "recover": ("holds_recover", CLOCK),
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

    def __init__(self, connection: RedisConnection) -> None:
        """Keep holds in `connection`'s Redis; the hold store owns (and closes) it."""
        super().__init__(connection)
        self.timeout = connection.timeout
        self.replicas = connection.replicas
        self.epoch: str | None = None
        self.on_loss: Callable[[], None] | None = None

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
        lock; say whether `identity` was removed. A changed epoch: recover, then once more."""
        for _ in range(2):
            found = self._run(
                "claim",
                [
                    self._key("hold", name),
                    self._key("removed", name),
                    self._key("lock", name),
                    self._key("epoch"),
                    self._key("recovering"),
                ],
                [
                    holder,
                    hold_ms,
                    EXTEND_SLACK_MS,
                    RETENTION_MS,
                    NAMES_PREFIX,
                    name,
                    identity if identity is not None else "",
                    self.epoch or "",
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
            self._recover()
        raise StorageUnavailable()

    def _recover(self) -> None:
        """The epoch this instance saw is gone or changed: adopt the store's (writing a new
        one where there is none) and, if this instance had seen another, start a quarantine."""
        epoch, lost = (
            part.decode()
            for part in self._run(
                "recover",
                [self._key("epoch"), self._key("recovering")],
                [
                    self.epoch or "",
                    secrets.token_hex(8),
                    max(1, self.quarantine_ms),
                    self.clock.shift_ms,
                ],
            )
        )
        if lost == "1":
            report_loss(self.where, self.quarantine_ms, self.on_loss)
        self.epoch = epoch

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
        """How long the quarantine still lasts, ms (0: none), on Redis's clock, shifted."""
        until = self.client.get(self._key("recovering"))
        if until is None:
            return 0
        now = self.connection.time_ms() + self.clock.shift_ms
        return max(0, int(until) - now)

    def durability_problem(self) -> str | None:
        """A `maxmemory-policy` other than noeviction evicts holds under memory pressure (read
        from CONFIG, else from INFO where CONFIG is disabled)."""
        import redis

        policy: Any
        try:
            policy = self.client.config_get("maxmemory-policy").get("maxmemory-policy")
        except redis.ResponseError:
            policy = self.client.info("memory").get("maxmemory_policy")
        if policy != NO_EVICTION:
            return (
                f"Redis at {self.where} has maxmemory-policy {policy}: it may evict holds; "
                f"set maxmemory-policy noeviction"
            )
        return None

    def close(self) -> None:
        """Close the connection pool."""
        self.connection.close()
