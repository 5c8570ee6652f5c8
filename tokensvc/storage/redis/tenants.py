"""Tenants' records in Redis: one hash per tenant `tenant:<id>` (its limits, status, reason and
times) and the set `tenants` of their ids. Changes are one script, on the storage's clock."""

from collections.abc import Mapping

from ..contracts import TenantRecord, check_limit_names
from ..tenant_rows import stored_limit, tenant_from
from .base import REDIS_PREFIX, RedisConnection, RedisStore

#: The set of every tenant with a record.
INDEX_KEY = REDIS_PREFIX + "tenants"


class RedisTenants(RedisStore):
    """Tenants' records in the holds' Redis."""

    scripts = {"change": ("tenants_change", ("clock",)), "time": ("usage_time", ("clock",))}

    def __init__(self, connection: RedisConnection) -> None:
        """Share the record's connection (client, clock, replica acknowledgement)."""
        super().__init__(connection)

    @staticmethod
    def _key(tenant: str) -> str:
        """The key of a tenant's record."""
        return f"{REDIS_PREFIX}tenant:{tenant}"

    def get(self, tenant: str) -> TenantRecord | None:
        """The tenant's record, or None."""
        found = self.client.hgetall(self._key(tenant))
        return self._record(tenant, found) if found else None

    def all(self) -> list[TenantRecord]:
        """Every record, by tenant id."""
        ids = sorted(member.decode() for member in self.client.smembers(INDEX_KEY))
        pipe = self.client.pipeline(transaction=False)
        for tenant in ids:
            pipe.hgetall(self._key(tenant))
        return [
            self._record(tenant, found)
            for tenant, found in zip(ids, pipe.execute(), strict=True)
            if found
        ]

    def change(
        self,
        tenant: str,
        limits: Mapping[str, int | tuple[str, ...] | None],
        status: str | None = None,
        reason: str = "",
    ) -> TenantRecord:
        """One script: the record made if needed, the limits and status set."""
        check_limit_names(limits)
        pairs: list[str | int] = []
        for name, value in limits.items():
            stored = stored_limit(name, value)
            pairs += [name, "" if stored is None else stored]
        found = self._run(
            "change",
            [self._key(tenant), INDEX_KEY],
            [self.clock.shift_ms, status or "", reason, tenant, *pairs],
        )
        return self._record(tenant, dict(zip(found[::2], found[1::2], strict=True)))

    @staticmethod
    def _record(tenant: str, found: Mapping[bytes, bytes]) -> TenantRecord:
        """A record from its hash."""
        return tenant_from({"id": tenant, **{k.decode(): v.decode() for k, v in found.items()}})

    def time_ms(self) -> int:
        """The storage's clock (TIME), shifted, ms."""
        return int(self._run("time", [], [self.clock.shift_ms], write=False))

    def close(self) -> None:
        """The record closes the shared client."""
