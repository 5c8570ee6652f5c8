"""What the service adds to gunicorn (wired in gunicorn.conf.py): JSON for the errors gunicorn
answers itself, before the app sees a request, and no Authorization value in its log lines."""

import inspect
import json
import logging
import re

from gunicorn import glogging

from ..errors import CODES_BY_STATUS
from ..logs import ServiceFormatter

#: A bearer value, a JWT anywhere, or whatever follows an Authorization header name (a header
#: line without its colon is logged whole by gunicorn's parser errors).
SECRET_IN_TEXT = re.compile(
    r"(?i)(bearer\s+)[^\s'\"]+|eyJ[\w-]+\.[\w-]+\.[\w-]*|(authorization)[^'\"\n]*"
)
#: The parameters of gunicorn's `util.write_error`, which `write_json_error` replaces.
WRITE_ERROR_PARAMETERS = ["sock", "status_int", "reason", "mesg"]
MESSAGES_BY_STATUS = {
    400: "the request is not valid HTTP",
    414: "the request line is too long",
    417: "the Expect header is not supported",
    431: "a request header is too large, or there are too many",
    501: "the transfer coding is not supported",
}


def redact(text: str) -> str:
    """`text` with every bearer value, JWT and Authorization header value replaced."""
    return SECRET_IN_TEXT.sub(_redacted, text)


def _redacted(match: re.Match) -> str:
    """The replacement for one match: the prefix that named the secret, then a marker."""
    prefix = match.group(1) or (match.group(2) and match.group(2) + " ") or ""
    return prefix + "[redacted]"


class RedactSecrets(logging.Filter):
    """Rewrites a record's message so that no Authorization value reaches a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the formatted message in place; never drop a record."""
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class GunicornLogger(glogging.Logger):
    """gunicorn's logger, writing LOG_FORMAT lines like the service's own, through
    `RedactSecrets`."""

    log_format = "json"

    def setup(self, cfg):
        """Set up as gunicorn does, then format in LOG_FORMAT and add the filter."""
        super().setup(cfg)
        formatter = ServiceFormatter(self.log_format)
        for logger in (self.error_log, self.access_log):
            if not any(isinstance(f, RedactSecrets) for f in logger.filters):
                logger.addFilter(RedactSecrets())
            for handler in logger.handlers:
                handler.setFormatter(formatter)


def logger_for(log_format: str) -> type:
    """gunicorn's `logger_class`: `GunicornLogger` writing `log_format` lines."""
    return type("GunicornLogger", (GunicornLogger,), {"log_format": log_format})


def replace_write_error(util) -> None:
    """Put `write_json_error` in place of gunicorn's `util.write_error` (gunicorn has no hook for
    its error page); refuse a gunicorn whose writer is not where, or not what, it used to be."""
    original = getattr(util, "write_error", None)
    if original is None or list(inspect.signature(original).parameters) != WRITE_ERROR_PARAMETERS:
        raise RuntimeError(
            "gunicorn.util.write_error(sock, status_int, reason, mesg) is gone: "
            "this gunicorn is not one tokensvc supports (see requirements.txt)"
        )
    util.write_error = write_json_error


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """Answer an error gunicorn found itself (a malformed request line or header, one too large)
    as the service answers every error: JSON `{"error", "code"}`, never gunicorn's HTML page and
    never its message, which can quote the offending header (a bearer token among them)."""
    code = CODES_BY_STATUS.get(
        status_int, "internal_error" if status_int >= 500 else "invalid_request"
    )
    message = MESSAGES_BY_STATUS.get(status_int, "the request could not be handled")
    body = json.dumps({"error": message, "code": code}).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode("latin-1") + body)
