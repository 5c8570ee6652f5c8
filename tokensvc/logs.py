"""Every log line of the service: request ids, one access record per request, and the
formatter that renders each record as a JSON or logfmt line (LOG_FORMAT)."""

import itertools
import json
import logging
import os
import re
import secrets
import threading
import time
from typing import cast

from flask import g, has_request_context, request
from werkzeug.local import LocalProxy

from .context import ROOM_NAME_CONVERTER, service_state

log = logging.getLogger("tokensvc.access")

#: An incoming X-Request-ID is kept only if it looks like an id, never anything longer or odder.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestIds:
    """Request ids of 32 hex digits: 16 random per process (made again in a forked child) and
    a 16-digit count, so no system call per request and no two processes alike."""

    def __init__(self):
        """Nothing drawn yet."""
        self.pid, self.prefix, self.count = 0, "", itertools.count()
        self.lock = threading.Lock()

    def next(self) -> str:
        """The next id."""
        if self.pid != os.getpid():
            with self.lock:
                self.pid, self.prefix = os.getpid(), secrets.token_hex(8)
                self.count = itertools.count()
        return f"{self.prefix}{next(self.count):016x}"


request_ids = RequestIds()


def start_request(state) -> None:
    """Before each request: take or make its id, start its clock, zero its LiveKit calls."""
    incoming = request.headers.get("X-Request-ID", "")
    context = g._get_current_object()  # the request's `g` and `request`, looked up once
    context.request_id = incoming if SANE_REQUEST_ID.fullmatch(incoming) else request_ids.next()
    context.request_started = time.perf_counter()
    _livekit_calls(state)


#: A room name in a rule; the metrics' route label writes it `<path:`, as it always has (the
#: room-name converter is a narrower path), so that dashboards keep their series.
ROOM_NAME_RULE = f"<{ROOM_NAME_CONVERTER}:"


def finish_request(response):
    """After each request: echo the id, write the access line (no token, no secret) and count
    it in the metrics when they are on."""
    # flask types `request` as the Request itself; the proxy's own object is what is kept
    context, asked = g._get_current_object(), cast(LocalProxy, request)._get_current_object()
    request_id = context.get("request_id")
    response.headers["X-Request-ID"] = request_id or ""
    state = service_state()
    logged = log.isEnabledFor(logging.INFO)
    if not logged and state.metrics is None:
        return response
    outcome, status = "ok", response.status_code
    if status >= 400:
        outcome = (response.get_json(silent=True) or {}).get("code", "error")
    seconds = time.perf_counter() - context.get("request_started", 0)
    if state.metrics is not None:
        route = asked.url_rule.rule if asked.url_rule else "unmatched"
        if ROOM_NAME_RULE in route:
            route = route.replace(ROOM_NAME_RULE, "<path:")
        state.metrics.request_done(route, outcome, seconds)
    if logged:
        fields = {
            "request_id": request_id,
            "method": asked.method,
            "path": asked.path,
            "client": asked.remote_addr,
            "status": status,
            "tenant": context.get("tenant"),
            "room": context.get("room"),
            "outcome": outcome,
            "livekit_calls": _livekit_calls(state),
            "duration_ms": round(seconds * 1000, 2),
        }
        log.info("%s %s %s", asked.method, asked.path, status, extra={"access": fields})
    return response


class ServiceFormatter(logging.Formatter):
    """Renders every line of the service's loggers in LOG_FORMAT: an access record as its
    fields, any other (warnings, errors) with its level, logger, message and request id."""

    def __init__(self, style: str):
        """Format as `style` ("json" or "logfmt")."""
        super().__init__()
        self.style = style

    def format(self, record: logging.LogRecord) -> str:
        """One line for one record."""
        access = getattr(record, "access", None)
        if access is not None:
            return format_line(access, self.style)
        fields = {
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if has_request_context() and "request_id" in g:
            fields["request_id"] = g.request_id
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return format_line(fields, self.style)


#: Characters JSON may leave raw that split or corrupt lines in log viewers and terminals: DEL,
#: the C1 controls (U+0085 is a line break to some) and the Unicode line and paragraph separators.
#: (json.dumps escapes the C0 controls itself.)
UNSAFE_IN_LOGS = str.maketrans(
    {code: f"\\u{code:04x}" for code in [*range(0x7F, 0xA0), 0x2028, 0x2029]}
)


UNSAFE_CHARACTER = re.compile("[\x7f-\x9f\u2028\u2029]")
#: One encoder for every line (json.dumps with options would build one per call).
encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def format_line(fields: dict, style: str) -> str:
    """Render fields as one JSON object or as logfmt `key=value` pairs, on one safe line."""
    if style == "json":
        line = encode_json(fields)
    else:
        line = " ".join(f"{key}={_logfmt_value(value)}" for key, value in fields.items())
    if UNSAFE_CHARACTER.search(line) is None:  # the usual case: nothing to escape
        return line
    return line.translate(UNSAFE_IN_LOGS)


def _logfmt_value(value) -> str:
    """A logfmt value: bare when simple, else a JSON-quoted string."""
    text = "" if value is None else str(value)
    if text and re.fullmatch(r"[A-Za-z0-9._:/@+-]+", text):
        return text
    return json.dumps(text, ensure_ascii=False)


def _livekit_calls(state) -> int:
    """Take this thread's or greenlet's LiveKit call count since the last time (0 without
    LiveKit)."""
    rooms = state.issuer.rooms
    return rooms.take_call_count() if rooms is not None else 0
