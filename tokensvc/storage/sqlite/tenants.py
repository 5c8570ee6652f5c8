"""Tenants' records in the embedded SQLite file, beside the holds (its own connection per
process, the holds' clock)."""

from collections.abc import Mapping

from ..clock import StorageClock
from ..contracts import TenantRecord, check_limit_names
from ..tenant_rows import TENANT_FIELDS, stored_limit, tenant_from
from .base import SqliteDatabase

SELECT_TENANT = f"SELECT {', '.join(TENANT_FIELDS)} FROM tenants"


class SqliteTenants(SqliteDatabase):
    """Tenants' records in the embedded SQLite file (WAL), beside the holds."""

    def __init__(self, path: str, timeout: float, clock: StorageClock) -> None:
        """Use the SQLite file at `path` and the holds' clock."""
        super().__init__(path, timeout, clock, "tenants")
        self.where = path

    def get(self, tenant: str) -> TenantRecord | None:
        """The tenant's record, or None."""
        with self._read() as db:
            row = db.execute(SELECT_TENANT + " WHERE id = ?", (tenant,)).fetchone()
        return tenant_from(dict(zip(TENANT_FIELDS, row, strict=True))) if row else None

    def all(self) -> list[TenantRecord]:
        """Every record, by tenant id."""
        with self._read() as db:
            rows = db.execute(SELECT_TENANT + " ORDER BY id").fetchall()
        return [tenant_from(dict(zip(TENANT_FIELDS, row, strict=True))) for row in rows]

    def change(
        self,
        tenant: str,
        limits: Mapping[str, int | tuple[str, ...] | None],
        status: str | None = None,
        reason: str = "",
    ) -> TenantRecord:
        """Set the limits named and the status, making the record if needed (one transaction)."""
        check_limit_names(limits)
        return self._retried(self._change, tenant, limits, status, reason)

    def _change(
        self,
        tenant: str,
        limits: Mapping[str, int | tuple[str, ...] | None],
        status: str | None,
        reason: str,
    ) -> TenantRecord:
        """One attempt of `change`."""
        with self._write() as db:
            now = self._now()
            db.execute(
                "INSERT INTO tenants (id, created_at, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at",
                (tenant, now, now),
            )
            for name, value in limits.items():
                db.execute(
                    f"UPDATE tenants SET {name} = ? WHERE id = ?",  # a name of TENANT_LIMITS
                    (stored_limit(name, value), tenant),
                )
            if status is not None:
                db.execute(
                    "UPDATE tenants SET status = ?, reason = ? WHERE id = ?",
                    (status, reason, tenant),
                )
            row = db.execute(SELECT_TENANT + " WHERE id = ?", (tenant,)).fetchone()
        return tenant_from(dict(zip(TENANT_FIELDS, row, strict=True)))

    def time_ms(self) -> int:
        """The host's clock, shifted, ms."""
        return self._now()
