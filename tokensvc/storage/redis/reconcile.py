"""The reconciliation's records in the ownership record's Redis: the lease `reconcile:lease:<name>`
("<owner>|<expiry>"), the sorted set `reconcile:watches` (name by deadline) and the hash
`reconcile:repairs` (kind -> count). Deadlines on the scripts' clock (TIME)."""

from .base import REDIS_PREFIX, RedisConnection, RedisStore

WATCHES_KEY = REDIS_PREFIX + "reconcile:watches"
REPAIRS_KEY = REDIS_PREFIX + "reconcile:repairs"
CLOCK = ("clock",)


class RedisReconcile(RedisStore):
    """The reconciliation's records beside the holds, one script per timed operation."""

    scripts = {
        "lease": ("reconcile_lease", CLOCK),
        "release": ("reconcile_release", ()),
        "watch": ("reconcile_watch", CLOCK),
        "watched": ("reconcile_watched", CLOCK),
    }

    def __init__(self, connection: RedisConnection) -> None:
        """Share the record's connection (client, clock, replica acknowledgement)."""
        super().__init__(connection)

    def lease(self, name: str, owner: str, lease_ms: int) -> bool:
        """Take or renew the lease unless another owner's runs."""
        key = f"{REDIS_PREFIX}reconcile:lease:{name}"
        return bool(self._run("lease", [key], [owner, lease_ms, self.clock.shift_ms]))

    def release(self, name: str, owner: str) -> None:
        """Give the lease up if `owner` still has it."""
        self._run("release", [f"{REDIS_PREFIX}reconcile:lease:{name}"], [owner])

    def watch(self, name: str, for_ms: int) -> None:
        """Watch `name` until now + `for_ms` at least; forget watches run out."""
        self._run("watch", [WATCHES_KEY], [name, for_ms, self.clock.shift_ms])

    def watched(self) -> list[str]:
        """The names whose watch runs, sorted."""
        found = self._run("watched", [WATCHES_KEY], [self.clock.shift_ms], write=False)
        return sorted(name.decode() for name in found)

    def count(self, kind: str, n: int = 1) -> None:
        """Add `n` repairs of `kind`."""
        self.connection.command("HINCRBY", REPAIRS_KEY, kind, n)

    def counts(self) -> dict[str, int]:
        """The repairs by kind."""
        found = self.client.hgetall(REPAIRS_KEY)
        return {kind.decode(): int(n) for kind, n in found.items()}

    def time_ms(self) -> int:
        """The storage's clock (TIME), shifted, ms."""
        return self.connection.time_ms() + self.clock.shift_ms

    def close(self) -> None:
        """The record closes the shared client."""
