"""Every failure the service reports, and the one function that renders them as JSON."""

import json

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

#: The route families an error may come from: the token route, the management routes.
TOKEN, MANAGEMENT = "token", "management"
TOKEN_ONLY, MANAGEMENT_ONLY = frozenset({TOKEN}), frozenset({MANAGEMENT})
BOTH = TOKEN_ONLY | MANAGEMENT_ONLY

#: The `code` for werkzeug's own errors (routing, body size), by HTTP status.
CODES_BY_STATUS = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    500: "internal_error",
}

#: Short messages for werkzeug's own errors, instead of its HTML-era descriptions.
MESSAGES_BY_STATUS = {
    404: "no such route",
    405: "method not allowed on this route",
    413: "request body over MAX_CONTENT_LENGTH",
}


def error_response(status: int, code: str, message: str, headers=(), **extra) -> Response:
    """Build the JSON error response `{"error", "code", ...}` with `status`."""
    body = json.dumps({"error": message, "code": code, **extra}, ensure_ascii=False)
    response = Response(body, status=status, content_type="application/json")
    for name, value in headers:
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def http_error_response(error: HTTPException) -> Response:
    """Render any werkzeug HTTP exception, ours or Flask's, as a JSON error."""
    if isinstance(error, ApiError):
        return error.get_response()
    status = error.code or 500
    code = CODES_BY_STATUS.get(status, "http_error")
    message = MESSAGES_BY_STATUS.get(status) or _first_line(error.description)
    return error_response(status, code, message, headers=error.get_headers())


def _first_line(text):
    """Return the first sentence of a werkzeug description, or the status phrase."""
    return (text or "request failed").split(". ")[0].rstrip(".")


class ApiError(HTTPException):
    """Base of the service's errors: an HTTP exception with a stable snake_case `error_code`."""

    code = 500
    error_code = "internal_error"
    description = "internal error"
    #: Which route families may answer it (`error_table` reads this).
    routes = BOTH

    def __init__(self, description=None, **extra):
        """Keep the message and any extra body fields (such as `fields`)."""
        super().__init__(description)
        self.extra = extra

    def response_headers(self):
        """Headers to add to the error response."""
        return ()

    def get_response(self, environ=None, scope=None):
        """Render this error through `error_response`."""
        return error_response(
            self.code, self.error_code, self.description, self.response_headers(), **self.extra
        )


class InvalidRequest(ApiError):
    """The body is missing, not JSON, not an object, or a field is invalid."""

    code = 400
    error_code = "invalid_request"
    description = "invalid request"


class FieldNotAllowed(ApiError):
    """The body sets a field that clients may not set."""

    code = 400
    error_code = "field_not_allowed"
    routes = TOKEN_ONLY
    description = "field not allowed"


class Unauthorized(ApiError):
    """No usable bearer token where one is required, or one that fails verification."""

    code = 401
    error_code = "unauthorized"
    description = "authentication required"

    def __init__(self, description=None, invalid_token=True):
        """Say whether a token was presented (RFC 6750 `error="invalid_token"`)."""
        super().__init__(description)
        self.invalid_token = invalid_token

    def response_headers(self):
        """Ask for a bearer token, saying when the one sent was not accepted."""
        if self.invalid_token:
            return (("WWW-Authenticate", 'Bearer error="invalid_token"'),)
        return (("WWW-Authenticate", "Bearer"),)


class AuthUnavailable(ApiError):
    """The authentication service's keys could not be fetched and none are cached."""

    code = 503
    error_code = "auth_unavailable"
    description = "the authentication service's keys are unavailable"


class RoomForbidden(ApiError):
    """The room exists and is not the caller's tenant's."""

    code = 403
    error_code = "room_forbidden"
    routes = TOKEN_ONLY
    description = "this room belongs to another tenant"


class RoomNotFound(ApiError):
    """No such room of this tenant: a missing room and another tenant's get the same answer."""

    code = 404
    error_code = "room_not_found"
    routes = MANAGEMENT_ONLY
    description = "no such room of this tenant"


class ParticipantNotFound(ApiError):
    """No such participant in the room."""

    code = 404
    error_code = "participant_not_found"
    routes = MANAGEMENT_ONLY
    description = "no such participant in this room"


class TrackNotFound(ApiError):
    """The participant has no such published track."""

    code = 404
    error_code = "track_not_found"
    routes = MANAGEMENT_ONLY
    description = "the participant has no such published track"


class WebhookEndpointNotFound(ApiError):
    """No such webhook endpoint of this tenant (another tenant's id gets the same answer)."""

    code = 404
    error_code = "webhook_endpoint_not_found"
    routes = MANAGEMENT_ONLY
    description = "no such webhook endpoint of this tenant"


class WebhookDeliveryNotFound(ApiError):
    """No such webhook delivery of this tenant (or one past its retention)."""

    code = 404
    error_code = "webhook_delivery_not_found"
    routes = MANAGEMENT_ONLY
    description = "no such webhook delivery of this tenant"


class WebhookEndpointsLimit(ApiError):
    """The tenant has TENANT_WEBHOOK_ENDPOINTS_MAX webhook endpoints already."""

    code = 409
    error_code = "webhook_endpoints_limit"
    routes = MANAGEMENT_ONLY
    description = "this tenant has the most webhook endpoints allowed"


class RoleForbidden(ApiError):
    """The bearer's roles claim does not allow the role asked for."""

    code = 403
    error_code = "role_forbidden"
    description = "the bearer token does not allow this role"


class ScopeForbidden(ApiError):
    """The bearer's scopes claim does not include the scope the route needs."""

    code = 403
    error_code = "scope_forbidden"
    description = "the bearer token does not allow this"

    def __init__(self, scope: str):
        """Name the missing scope in the message and in `scope`."""
        super().__init__(f"the bearer token lacks the scope {scope!r}", scope=scope)


class IdentityForbidden(ApiError):
    """The bearer is bound to another participant identity."""

    code = 403
    error_code = "identity_forbidden"
    description = "the bearer token is bound to another identity"


class ParticipantRemoved(ApiError):
    """The identity was removed from the room and may not get a token for it yet."""

    code = 403
    error_code = "participant_removed"
    routes = TOKEN_ONLY
    description = "this participant was removed from the room"


class QuotaExceeded(ApiError):
    """A quota of the tenant is reached: `max_rooms` (rooms live at once) or `max_participants`
    (participants in one room); the body names it in `quota`."""

    code = 403
    error_code = "quota_exceeded"
    routes = TOKEN_ONLY
    description = "a quota of this tenant is reached"

    def __init__(self, quota: str, limit: int):
        """Name the quota and its limit in the message, in `quota` and in `limit`."""
        super().__init__(
            f"the tenant's quota {quota!r} ({limit}) is reached", quota=quota, limit=limit
        )


class TenantSuspended(ApiError):
    """The operator suspended the tenant: nothing is served to it until it is resumed."""

    code = 403
    error_code = "tenant_suspended"
    description = "this tenant is suspended"


class UnsupportedMediaType(ApiError):
    """The body is not `application/json`."""

    code = 415
    error_code = "unsupported_media_type"
    description = "the body must be application/json"


class LiveKitNotConfigured(ApiError):
    """LIVEKIT_URL, LIVEKIT_API_KEY or LIVEKIT_API_SECRET is missing."""

    code = 500
    error_code = "livekit_not_configured"
    description = (
        "LiveKit is not configured: set LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET"
    )


class TokenGenerationFailed(ApiError):
    """Minting the participant token failed."""

    code = 500
    error_code = "token_generation_failed"
    routes = TOKEN_ONLY
    description = "the token could not be generated"


class LiveKitError(ApiError):
    """LiveKit answered with an error or with a body that is not a valid answer."""

    code = 502
    error_code = "livekit_error"
    description = "LiveKit answered with an error"


class LiveKitUnavailable(ApiError):
    """LiveKit could not be reached."""

    code = 503
    error_code = "livekit_unavailable"
    description = "LiveKit could not be reached"


class LiveKitUnreached(LiveKitUnavailable):
    """No connection to LiveKit could be made: the request never reached it."""


class LiveKitNotFound(LiveKitError):
    """LiveKit answered `not_found` (no such room or participant); routes that expect it say so."""


class LiveKitTimeout(ApiError):
    """LiveKit did not answer within LIVEKIT_TIMEOUT."""

    code = 504
    error_code = "livekit_timeout"
    description = "LiveKit did not answer in time"


class RateLimited(ApiError):
    """A rate limit (per tenant, per tenant's new rooms, per client address) is used up."""

    code = 429
    error_code = "rate_limited"
    routes = TOKEN_ONLY
    description = "too many requests"

    def __init__(self, description=None, retry_after: int = 1):
        """Say when the caller may try again, in whole seconds."""
        super().__init__(description)
        self.retry_after = retry_after

    def response_headers(self):
        """`Retry-After`, seconds."""
        return (("Retry-After", str(self.retry_after)),)


class ConsoleNotConfigured(ApiError):
    """The console has no key to sign its sessions with (CONSOLE_SECRET_KEY, or
    LIVEKIT_API_SECRET to derive one from)."""

    code = 500
    error_code = "console_not_configured"
    routes = MANAGEMENT_ONLY
    description = "the console is not configured: set CONSOLE_SECRET_KEY or LIVEKIT_API_SECRET"


class StorageUnavailable(ApiError):
    """The ownership record's storage (STORAGE_URL) could not be reached or failed."""

    code = 503
    error_code = "storage_unavailable"
    description = "the service's storage could not be reached; nothing was written"


class _RetryLater(ApiError):
    """A 503 that says when to try again (`Retry-After`, whole seconds, at least 1)."""

    code = 503

    def __init__(self, description=None, retry_after_ms: int = 1000):
        """Keep how long the caller should wait."""
        super().__init__(description)
        self.retry_after = max(1, -(-retry_after_ms // 1000))

    def response_headers(self):
        """`Retry-After`, seconds."""
        return (("Retry-After", str(self.retry_after)),)


class StorageRecovering(_RetryLater):
    """The storage lost its data while the service ran: for one grace a shared room name with no
    record goes only to a tenant whose live room LiveKit lists."""

    error_code = "storage_recovering"
    routes = TOKEN_ONLY
    description = (
        "the service's storage is recovering from a loss; this room name is "
        "quarantined, try again later"
    )


class RoomBusy(_RetryLater):
    """Another request is creating this room (or a crashed creator's lock has not expired)."""

    error_code = "room_busy"
    routes = TOKEN_ONLY
    description = "another request is creating this room; try again"


class RateLimitUnavailable(ApiError):
    """The rate-limit storage (Redis) could not be reached and the limits fail closed."""

    code = 503
    error_code = "rate_limit_unavailable"
    routes = TOKEN_ONLY
    description = "the rate limit storage could not be reached"


#: Errors werkzeug raises itself on any route of the service: (status, code, what it means),
#: from the two tables at the top.
ROUTING_ERRORS = tuple(
    (status, CODES_BY_STATUS[status], message) for status, message in MESSAGES_BY_STATUS.items()
)


def error_table(route: str) -> dict[int, dict[str, str]]:
    """Every error the `route` family (TOKEN or MANAGEMENT) may answer: status -> {code: what
    it means}, read off the classes above (the OpenAPI document and the tests use it)."""
    table: dict[int, dict[str, str]] = {}
    for status, code, meaning in ROUTING_ERRORS:
        table.setdefault(status, {})[code] = meaning
    pending = list(ApiError.__subclasses__())
    while pending:
        kind = pending.pop(0)
        pending += kind.__subclasses__()
        if "error_code" in vars(kind) and route in kind.routes:
            table.setdefault(kind.code, {}).setdefault(
                kind.error_code, (kind.__doc__ or "").strip()
            )
    return dict(sorted(table.items()))
