"""`GET /livekit/usage`: the tenant's usage over a period, from LiveKit's events."""

from datetime import UTC, datetime

from flask import request

from ..context import service_state
from ..errors import InvalidRequest
from ..usage import parse_time
from .inputs import require_tenant


def usage():
    """The tenant's usage over `from` to `to` (RFC 3339; default: this month so far), from
    LiveKit's events, in its own room names."""
    tenant = require_tenant()
    start, end = load_period(request.args.get("from"), request.args.get("to"))
    return service_state().issuer.usage.report(tenant, start, end)


def load_period(start: str | None, end: str | None) -> tuple[int, int]:
    """(from, to) in ms from RFC 3339 texts; `to` defaults to the storage's now, `from` to the
    start of `to`'s month (UTC); 400 naming a bad one, or a `from` not before `to`."""
    usage_rule, problems, times = service_state().issuer.usage, {}, {}
    for field, text in (("from", start), ("to", end)):
        if text is not None:
            try:
                times[field] = parse_time(text)
            except ValueError as exc:
                problems[field] = [f"{text!r} {exc}."]
    if problems:
        raise InvalidRequest("the period is invalid", fields=problems)
    end_ms = times.get("to")
    if end_ms is None:
        end_ms = usage_rule.store.time_ms()
    start_ms = times.get("from", month_start(end_ms))
    if start_ms >= end_ms:
        raise InvalidRequest("the period is invalid", fields={"from": ["Must be before 'to'."]})
    return start_ms, end_ms


def month_start(ms: int) -> int:
    """The first instant (UTC) of the month of `ms`."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return int(moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)
