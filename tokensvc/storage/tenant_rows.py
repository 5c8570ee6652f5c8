"""A tenant record's fields as both backends keep them: numbers, agents as JSON text."""

import json
from collections.abc import Mapping
from typing import Any

from .contracts import TENANT_LIMITS, TenantRecord

#: The record's stored fields, in order.
TENANT_FIELDS = (
    "id",
    *TENANT_LIMITS,
    "status",
    "reason",
    "created_at",
    "updated_at",
)


def stored_limit(name: str, value: int | tuple[str, ...] | None) -> str | int | None:
    """A limit as the storage keeps it: agents as a JSON list, a number as it is."""
    if isinstance(value, tuple):
        return json.dumps(list(value), ensure_ascii=False)
    return value


def tenant_from(fields: Mapping[str, Any]) -> TenantRecord:
    """A record from its stored fields (missing or empty ones: no override)."""

    def number(name: str) -> int | None:
        value = fields.get(name)
        return None if value in (None, "", b"") else int(value)

    agents = fields.get("agents")
    if isinstance(agents, bytes):
        agents = agents.decode()
    status, reason = fields.get("status") or "active", fields.get("reason") or ""
    return TenantRecord(
        str(fields["id"]),
        number("max_rooms"),
        number("max_participants"),
        number("max_webhook_endpoints"),
        tuple(json.loads(agents)) if agents else None,
        status.decode() if isinstance(status, bytes) else str(status),
        reason.decode() if isinstance(reason, bytes) else str(reason),
        number("created_at") or 0,
        number("updated_at") or 0,
    )
