"""The webhook records as both backends read them: their fields, and a record from the values
of those fields (SQLite's columns or Redis's hash fields, numbers or strings)."""

import json
from collections.abc import Sequence

from .contracts import Delivery, Endpoint

#: The fields of a delivery the routes show and the worker needs (the body aside).
DELIVERY_FIELDS = (
    "id",
    "tenant",
    "endpoint_id",
    "event_id",
    "type",
    "status",
    "attempts",
    "last_status_code",
    "last_error",
    "next_attempt_at",
    "created_at",
)
ENDPOINT_FIELDS = (
    "id",
    "tenant",
    "url",
    "events",
    "description",
    "created_at",
    "secret",
    "previous_secret",
    "previous_until",
    "disabled_at",
    "disabled_reason",
    "failing_since",
)

#: One record's values, in the order of its fields.
Values = Sequence[str | int | None]


def _int(value: str | int | None) -> int | None:
    """A number read from either backend ("" and None: none)."""
    return int(value) if value not in (None, "") else None


def delivery_from(row: Values) -> Delivery:
    """A Delivery from DELIVERY_FIELDS' values (strings or numbers)."""
    values = dict(zip(DELIVERY_FIELDS, row, strict=True))
    return Delivery(
        str(values["id"]),
        str(values["tenant"]),
        str(values["endpoint_id"]),
        str(values["event_id"]),
        str(values["type"]),
        str(values["status"]),
        _int(values["attempts"]) or 0,
        _int(values["last_status_code"]),
        str(values["last_error"]) if values["last_error"] else None,
        _int(values["next_attempt_at"]),
        _int(values["created_at"]) or 0,
    )


def endpoint_from(row: Values) -> Endpoint:
    """An Endpoint from ENDPOINT_FIELDS' values."""
    values = dict(zip(ENDPOINT_FIELDS, row, strict=True))
    return Endpoint(
        str(values["id"]),
        str(values["tenant"]),
        str(values["url"]),
        tuple(json.loads(str(values["events"]))),
        str(values["description"]),
        _int(values["created_at"]) or 0,
        str(values["secret"]),
        str(values["previous_secret"] or ""),
        _int(values["previous_until"]) or 0,
        _int(values["disabled_at"]),
        str(values["disabled_reason"] or ""),
        _int(values["failing_since"]),
    )
