"""The audit trail in Redis: the sorted sets `audit:all` and `audit:tenant:<id>`, each entry a
member (a sequence number and the entry's JSON text) scored by its time on the storage's
clock; entries past the retention are dropped at each addition, and each set expires a
retention after its last."""

import json
from dataclasses import asdict, replace

from ..contracts import AuditEntry
from .base import REDIS_PREFIX, RedisConnection, RedisStore

ALL_KEY = REDIS_PREFIX + "audit:all"
#: The sequence that orders entries of one ms (each member starts with it, 16 digits).
SEQUENCE_KEY = REDIS_PREFIX + "audit:sequence"
SEQUENCE_DIGITS = 16


class RedisAudit(RedisStore):
    """The audit trail in the holds' Redis."""

    scripts = {"add": ("audit_add", ("clock",)), "time": ("usage_time", ("clock",))}

    def __init__(self, connection: RedisConnection, retention_ms: int) -> None:
        """Share the record's connection; keep entries `retention_ms`."""
        super().__init__(connection)
        self.retention_ms = retention_ms

    @staticmethod
    def _key(tenant: str) -> str:
        """The key of one tenant's trail."""
        return f"{REDIS_PREFIX}audit:tenant:{tenant}"

    def add(self, entry: AuditEntry) -> AuditEntry:
        """One script: the entry in both trails at the storage's now."""
        fields = asdict(entry)
        del fields["at"]
        member = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
        at = self._run(
            "add",
            [SEQUENCE_KEY, ALL_KEY, self._key(entry.tenant)],
            [self.clock.shift_ms, self.retention_ms, member],
        )
        return replace(entry, at=int(at))

    def entries(self, tenant: str | None, limit: int) -> list[AuditEntry]:
        """The newest `limit` entries within the retention."""
        since = self.time_ms() - self.retention_ms
        found = self.client.zrevrangebyscore(
            ALL_KEY if tenant is None else self._key(tenant),
            "+inf",
            since,
            start=0,
            num=limit,
            withscores=True,
        )
        return [
            AuditEntry(**{**json.loads(member[SEQUENCE_DIGITS:]), "at": int(at)})
            for member, at in found
        ]

    def time_ms(self) -> int:
        """The storage's clock (TIME), shifted, ms."""
        return int(self._run("time", [], [self.clock.shift_ms], write=False))

    def close(self) -> None:
        """The record closes the shared client."""
