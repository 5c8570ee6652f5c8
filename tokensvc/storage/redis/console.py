"""The console's one-use tickets in the ownership record's Redis: one key per ticket id
(`console:ticket:<id>`), its deadline inside the value on the storage's clock, one script each to
issue and redeem."""

from .base import REDIS_PREFIX, RedisConnection, RedisStore

CLOCK = ("clock",)


class RedisConsoleTickets(RedisStore):
    """One-use tickets in Redis, read and deleted in one script."""

    scripts = {
        "issue": ("console_issue", CLOCK),
        "redeem": ("console_redeem", CLOCK),
    }

    def __init__(self, connection: RedisConnection) -> None:
        """Share the record's connection (client, clock, replica acknowledgement)."""
        super().__init__(connection)

    @staticmethod
    def _key(ticket_id: str) -> str:
        """A ticket's key."""
        return f"{REDIS_PREFIX}console:ticket:{ticket_id}"

    def issue(self, ticket_id: str, payload: str, ttl_ms: int) -> None:
        """Keep `payload` under `ticket_id` until now + `ttl_ms` (storage clock)."""
        self._run("issue", [self._key(ticket_id)], [self.clock.shift_ms, payload, ttl_ms])

    def redeem(self, ticket_id: str) -> str | None:
        """The payload once, or None."""
        found: bytes | None = self._run("redeem", [self._key(ticket_id)], [self.clock.shift_ms])
        return found.decode() if found is not None else None

    def time_ms(self) -> int:
        """Redis's clock, shifted, ms."""
        return self.connection.time_ms() + self.clock.shift_ms

    def close(self) -> None:
        """The holds close the shared client."""
