"""The service's one route table (`ROUTES`): each route's method, path, view, the scope it
needs (or why it needs none), its OpenAPI operation and whether CORS applies.

The blueprints register their routes from it (below); the bearer check (auth.py) reads each
route's scope from it, the OpenAPI document (openapi.py) each operation and the CORS options
(extension.py) the paths. A route is declared here once, or nowhere (tests/test_routes.py fails
for a served route the table does not name).
"""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import quote

from werkzeug.routing import BaseConverter

from ..auth import authenticate
from ..context import ROOM_NAME_CONVERTER
from ..errors import MANAGEMENT, TOKEN
from ..scopes import (
    AUDIT_READ,
    CONSOLE_OPEN,
    PARTICIPANTS_WRITE,
    ROOMS_READ,
    ROOMS_WRITE,
    TOKENS_CREATE,
    USAGE_READ,
    WEBHOOKS_READ,
    WEBHOOKS_WRITE,
)
from ..webhooks import STATUSES as DELIVERY_STATUSES
from . import (
    admin,
    api,
    audit,
    console_sessions,
    health,
    livekit_webhook,
    metrics,
    openapi,
    rooms,
    tenant_webhooks,
    token,
    usage,
)
from .openapi import array_of, json_body, path_parameter

#: The service's own path namespace (its routing errors there are its own, in JSON).
NAMESPACE = "/livekit/"


@dataclass(frozen=True)
class NoTenantScope:
    """A route that needs no tenant scope: no tenant's bearer token is read on it; `why`."""

    why: str


#: LiveKit's webhook: LiveKit signs its own requests.
SIGNED_BY_LIVEKIT = NoTenantScope("LiveKit signs its requests")
#: Health, the OpenAPI document, metrics: for operators and probes (metrics has its own token).
OPERATIONS = NoTenantScope("an operator's or a probe's route")
#: The operator's API: Authorization: Bearer ADMIN_TOKEN (admin.py), never a tenant's JWT.
ADMIN = NoTenantScope("the operator's route: Authorization: Bearer <ADMIN_TOKEN>")


@dataclass(frozen=True)
class Operation:
    """A route's OpenAPI operation: its success answer (`answer`, a component's name or a JSON
    Schema, under `status`), its JSON body, parameters, the error family whose answers it lists
    (errors.error_table) and any other answers as OpenAPI writes them."""

    summary: str
    answer: str | dict | None = None
    body: str | dict | None = None
    parameters: tuple[dict, ...] = ()
    status: str = "200"
    description: str = "OK"
    errors: str | None = MANAGEMENT
    responses: Mapping[str, dict] = field(default_factory=dict)
    body_type: str = "application/json"
    body_example: dict | None = None
    answer_example: dict | None = None


@dataclass(frozen=True)
class Route:
    """One route: `method` on `path` (OpenAPI's form: `{name}` for a path parameter), served by
    `view` on `blueprint`; the scope it needs, or a `NoTenantScope`; whether it serves requests
    without a bearer token when AUTH_REQUIRED=false (`anonymous`); whether CORS applies; the
    action the audit trail keeps for each request a tenant makes of it (`audit`; None: none)."""

    method: str
    path: str
    view: Callable
    scope: str | NoTenantScope
    operation: Operation
    blueprint: str = "api"
    anonymous: bool = False
    cors: bool = True
    audit: str | None = None

    @property
    def rule(self) -> str:
        """The path as a werkzeug rule (a room name through `RoomNameConverter`)."""
        return PARAMETER.sub(lambda found: f"<{converter_of(found[1])}:{found[1]}>", self.path)

    @property
    def name(self) -> str:
        """The endpoint's name within its blueprint: the view's."""
        return self.view.__name__


PARAMETER = re.compile(r"\{(\w+)\}")


def converter_of(parameter: str) -> str:
    """The werkzeug converter of a path parameter: a room name's own, else one segment."""
    return ROOM_NAME_CONVERTER if parameter == "room_name" else "string"


# OpenAPI pieces several operations share.
TOKEN_REQUEST_EXAMPLE = {
    "room_name": "conversation-room-123",
    "participant_name": "Alice Smith",
    "participant_identity": "user-alice-456",
}
TOKEN_RESPONSE_EXAMPLE = {
    "token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...",
    "room_name": "conversation-room-123",
    "participant_identity": "user-alice-456",
    "livekit_url": "ws://localhost:7880",
    "server_url": "ws://localhost:7880",
    "participant_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...",
}
ROOM_NAME = path_parameter("room_name", "The room name, percent-encoded (it may hold `/`).")
ENDPOINT_ID = path_parameter("endpoint_id", "An endpoint's id (`ep_...`).")
TENANT_ID = path_parameter("tenant", "A tenant id, exactly as its JWTs carry it.")
DELIVERY_ID = path_parameter("delivery_id", "A delivery's id (`msg_...`, its webhook-id).")
PERIOD = tuple(
    {
        "name": name,
        "in": "query",
        "required": False,
        "description": meaning,
        "schema": {"type": "string", "format": "date-time"},
    }
    for name, meaning in (
        ("from", "RFC 3339 start (default: the start of the month of `to`, UTC)"),
        ("to", "RFC 3339 end (default: now)"),
    )
)
DELIVERY_FILTERS = (
    {"name": "endpoint_id", "in": "query", "required": False, "schema": {"type": "string"}},
    {
        "name": "status",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": list(DELIVERY_STATUSES)},
    },
)


def object_of(**properties: str) -> dict:
    """A JSON object of string properties."""
    return {
        "type": "object",
        "properties": {name: {"type": kind} for name, kind in properties.items()},
    }


ROOM_STATUS = object_of(status="string", room_name="string")
#: The operator's routes' answers besides their success.
ADMIN_ERRORS = {
    "400": {"description": "invalid_request: a field, the tenant id or a query is invalid"},
    "401": {"description": "unauthorized: the bearer is not ADMIN_TOKEN"},
    "404": {"description": "not_found: ADMIN_TOKEN is not set"},
}
AUDIT_QUERY = (
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": "the most entries, newest first (1 to 1000; default 1000)",
        "schema": {"type": "integer"},
    },
)
ANY_OBJECT = {"type": "object"}
ERROR_BODY = json_body("Error")

ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/livekit/token",
        token.issue_token,
        TOKENS_CREATE,
        Operation(
            "Issue a LiveKit token for one room",
            "TokenResponse",
            body="TokenRequest",
            description="Token issued",
            errors=TOKEN,
            body_example=TOKEN_REQUEST_EXAMPLE,
            answer_example=TOKEN_RESPONSE_EXAMPLE,
        ),
        anonymous=True,
    ),
    Route(
        "GET",
        "/livekit/rooms",
        rooms.list_rooms,
        ROOMS_READ,
        Operation("The tenant's live rooms", array_of("rooms", "RoomSummary")),
    ),
    Route(
        "GET",
        "/livekit/rooms/{room_name}",
        rooms.get_room,
        ROOMS_READ,
        Operation("One of the tenant's rooms and who is in it", "RoomDetail", parameters=ROOM_NAME),
    ),
    Route(
        "DELETE",
        "/livekit/rooms/{room_name}",
        rooms.end_room,
        ROOMS_WRITE,
        Operation("End one of the tenant's rooms for everyone", ROOM_STATUS, parameters=ROOM_NAME),
        audit="rooms.end",
    ),
    Route(
        "DELETE",
        "/livekit/participant",
        rooms.remove_participant,
        PARTICIPANTS_WRITE,
        Operation("Remove a participant, durably", ROOM_STATUS, body="Participant"),
        audit="participants.remove",
    ),
    Route(
        "POST",
        "/livekit/participant/mute",
        rooms.mute_track,
        PARTICIPANTS_WRITE,
        Operation("Mute or unmute one published track", "Track", body="MuteRequest"),
        audit="participants.mute",
    ),
    Route(
        "POST",
        "/livekit/participant/permissions",
        rooms.set_permissions,
        PARTICIPANTS_WRITE,
        Operation(
            "Change a connected participant's permissions live",
            "ParticipantInfo",
            body="PermissionsRequest",
        ),
        audit="participants.permissions",
    ),
    Route(
        "GET",
        "/livekit/usage",
        usage.usage,
        USAGE_READ,
        Operation(
            "The tenant's usage over a period, from LiveKit's events", "Usage", parameters=PERIOD
        ),
    ),
    Route(
        "POST",
        "/livekit/webhook",
        livekit_webhook.livekit_webhook,
        SIGNED_BY_LIVEKIT,
        Operation(
            "LiveKit's signed webhook events (Authorization: LiveKit's signature)",
            object_of(status="string"),
            body=ANY_OBJECT,
            body_type="application/webhook+json",
            description="Received",
            errors=None,
            responses={
                "401": {"description": "unauthorized: the signature does not verify", **ERROR_BODY}
            },
        ),
    ),
    Route(
        "POST",
        "/livekit/webhook-endpoints",
        tenant_webhooks.create_webhook_endpoint,
        WEBHOOKS_WRITE,
        Operation(
            "Subscribe a URL to the events of the tenant's rooms",
            "WebhookEndpointCreated",
            body="WebhookEndpointRequest",
            status="201",
        ),
        audit="webhook_endpoints.create",
    ),
    Route(
        "GET",
        "/livekit/webhook-endpoints",
        tenant_webhooks.list_webhook_endpoints,
        WEBHOOKS_READ,
        Operation("The tenant's webhook endpoints", array_of("endpoints", "WebhookEndpoint")),
    ),
    Route(
        "PATCH",
        "/livekit/webhook-endpoints/{endpoint_id}",
        tenant_webhooks.update_webhook_endpoint,
        WEBHOOKS_WRITE,
        Operation(
            "Enable (or disable) an endpoint; enabled, what waited is sent",
            "WebhookEndpoint",
            body="WebhookEndpointUpdate",
            parameters=ENDPOINT_ID,
        ),
        audit="webhook_endpoints.update",
    ),
    Route(
        "DELETE",
        "/livekit/webhook-endpoints/{endpoint_id}",
        tenant_webhooks.delete_webhook_endpoint,
        WEBHOOKS_WRITE,
        Operation(
            "Unsubscribe an endpoint",
            object_of(status="string", id="string"),
            parameters=ENDPOINT_ID,
        ),
        audit="webhook_endpoints.delete",
    ),
    Route(
        "POST",
        "/livekit/webhook-endpoints/{endpoint_id}/rotate-secret",
        tenant_webhooks.rotate_webhook_secret,
        WEBHOOKS_WRITE,
        Operation(
            "A new secret; the old one signs too for 24 h",
            object_of(secret="string"),
            parameters=ENDPOINT_ID,
        ),
        audit="webhook_endpoints.rotate",
    ),
    Route(
        "POST",
        "/livekit/webhook-endpoints/{endpoint_id}/test",
        tenant_webhooks.test_webhook_endpoint,
        WEBHOOKS_WRITE,
        Operation(
            "Send a webhook.test event",
            object_of(delivery_id="string"),
            parameters=ENDPOINT_ID,
            status="202",
        ),
    ),
    Route(
        "GET",
        "/livekit/webhook-deliveries",
        tenant_webhooks.list_webhook_deliveries,
        WEBHOOKS_READ,
        Operation(
            "The tenant's recent deliveries",
            array_of("deliveries", "WebhookDelivery"),
            parameters=DELIVERY_FILTERS,
        ),
    ),
    Route(
        "POST",
        "/livekit/webhook-deliveries/{delivery_id}/retry",
        tenant_webhooks.retry_webhook_delivery,
        WEBHOOKS_WRITE,
        Operation(
            "Deliver one again, now",
            object_of(id="string", status="string"),
            parameters=DELIVERY_ID,
            status="202",
        ),
    ),
    Route(
        "POST",
        "/livekit/console-sessions",
        console_sessions.open_console_session,
        CONSOLE_OPEN,
        Operation(
            "A one-use URL (60 s) that opens the tenant's console with this bearer's rights",
            object_of(url="string"),
            status="201",
            description="The console's URL, with its ticket",
            answer_example={"url": "https://tokens.example/console/enter?ticket=..."},
        ),
    ),
    Route(
        "GET",
        "/livekit/audit",
        audit.tenant_audit,
        AUDIT_READ,
        Operation(
            "The tenant's audit trail: its management actions and the operator's changes",
            array_of("entries", "AuditEntry"),
            parameters=AUDIT_QUERY,
        ),
    ),
    Route(
        "GET",
        "/admin/tenants",
        admin.list_tenants,
        ADMIN,
        Operation(
            "Every tenant with a record",
            array_of("tenants", "Tenant"),
            errors=None,
            responses=ADMIN_ERRORS,
        ),
        blueprint="admin",
        cors=False,
    ),
    Route(
        "GET",
        "/admin/tenants/{tenant}",
        admin.get_tenant,
        ADMIN,
        Operation(
            "One tenant: its overrides, what applies, its status",
            "Tenant",
            parameters=TENANT_ID,
            errors=None,
            responses=ADMIN_ERRORS,
        ),
        blueprint="admin",
        cors=False,
    ),
    Route(
        "PATCH",
        "/admin/tenants/{tenant}",
        admin.update_tenant,
        ADMIN,
        Operation(
            "Set some of a tenant's limits (null removes an override)",
            "Tenant",
            body="TenantLimits",
            parameters=TENANT_ID,
            errors=None,
            responses=ADMIN_ERRORS,
        ),
        blueprint="admin",
        cors=False,
    ),
    Route(
        "POST",
        "/admin/tenants/{tenant}/suspend",
        admin.suspend_tenant,
        ADMIN,
        Operation(
            "Suspend a tenant: its requests are refused, its live rooms end at once",
            "Tenant",
            body=object_of(reason="string"),
            parameters=TENANT_ID,
            errors=None,
            responses=ADMIN_ERRORS,
        ),
        blueprint="admin",
        cors=False,
    ),
    Route(
        "POST",
        "/admin/tenants/{tenant}/resume",
        admin.resume_tenant,
        ADMIN,
        Operation(
            "Resume a suspended tenant",
            "Tenant",
            parameters=TENANT_ID,
            errors=None,
            responses=ADMIN_ERRORS,
        ),
        blueprint="admin",
        cors=False,
    ),
    Route(
        "GET",
        "/admin/audit",
        admin.admin_audit,
        ADMIN,
        Operation(
            "The whole audit trail, newest first",
            array_of("entries", "AuditEntry"),
            parameters=(
                *AUDIT_QUERY,
                {"name": "tenant", "in": "query", "required": False, "schema": {"type": "string"}},
            ),
            errors=None,
            responses=ADMIN_ERRORS,
        ),
        blueprint="admin",
        cors=False,
    ),
    Route(
        "GET",
        "/healthz",
        health.healthz,
        OPERATIONS,
        Operation("Liveness", ANY_OBJECT, errors=None),
        blueprint="health",
    ),
    Route(
        "GET",
        "/readyz",
        health.readyz,
        OPERATIONS,
        Operation(
            "Readiness (LiveKit answers)",
            ANY_OBJECT,
            errors=None,
            responses={"503": {"description": "Not ready", **ERROR_BODY}},
        ),
        blueprint="health",
    ),
    Route(
        "GET",
        "/openapi.json",
        openapi.openapi_document,
        OPERATIONS,
        Operation("This document", ANY_OBJECT, errors=None),
        blueprint="openapi",
    ),
    Route(
        "GET",
        "/metrics",
        metrics.metrics,
        OPERATIONS,
        Operation(
            "Prometheus metrics (METRICS_ENABLED; METRICS_BEARER_TOKEN)",
            errors=None,
            responses={
                "200": {
                    "description": "The text exposition",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "401": {
                    "description": "unauthorized: the metrics bearer token is missing or wrong",
                    **ERROR_BODY,
                },
                "404": {"description": "not_found: METRICS_ENABLED is off", **ERROR_BODY},
            },
        ),
        blueprint="metrics",
    ),
)

#: The blueprints the table's routes are registered on, by name.
BLUEPRINTS = {
    "api": api.bp,
    "health": health.bp,
    "openapi": openapi.bp,
    "metrics": metrics.bp,
    "admin": admin.bp,
}

#: The scope each route of the tenants' API needs: the view's name -> (method, path, scope).
ROUTE_SCOPES = {
    route.name: (route.method, route.path, route.scope)
    for route in ROUTES
    if isinstance(route.scope, str)
}


# Room names in paths. A room name may hold `/`, sent as `%2F`, which WSGI servers hand on
# decoded, as `/`: the name then spans several path segments. So that no route of a room's
# (`/livekit/rooms/{room_name}/<sub-resource>`) is ever read as a room name, a segment after a
# name's first may not be the name of a sub-resource the table gives a room. The table gives
# none today, so every room name reaches its room's routes.


def room_sub_resources() -> tuple[str, ...]:
    """The first segment after `{room_name}` in any table path: the names reserved."""
    return tuple(
        sorted(
            {
                route.path.split("{room_name}/", 1)[1].split("/", 1)[0]
                for route in ROUTES
                if "{room_name}/" in route.path
            }
        )
    )


class RoomNameConverter(BaseConverter):
    """A room name in a path: one or more segments (a `/` in the name arrives decoded), none
    after the first named like one of `reserved`, a room's sub-resources."""

    part_isolating = False
    weight = 200
    reserved: tuple[str, ...] = ()
    regex = "[^/]+(?:/[^/]*)*"

    def to_url(self, value: str) -> str:
        """Percent-encode every reserved character, `/` included."""
        return quote(value, safe="")

    def to_python(self, value: str) -> str:
        """The name as the path gives it (werkzeug has decoded it)."""
        return value


def room_name_converter(reserved: tuple[str, ...]) -> type[RoomNameConverter]:
    """The converter for room names beside sub-resources named `reserved`."""
    if not reserved:
        return RoomNameConverter
    refused = "|".join(map(re.escape, reserved))
    return type(
        "RoomNameConverter",
        (RoomNameConverter,),
        {"reserved": reserved, "regex": f"[^/]+(?:/(?!(?:{refused})(?:/|$))[^/]*)*"},
    )


def route_scopes() -> dict[str, str | None]:
    """The scope each route of the api blueprint needs, by endpoint name within it; None for
    one that needs no tenant scope (auth.authenticate reads it)."""
    return {
        route.name: route.scope if isinstance(route.scope, str) else None
        for route in ROUTES
        if route.blueprint == "api"
    }


def audited_actions() -> dict[str, str]:
    """The action the audit trail keeps for each audited route of the api blueprint, by
    endpoint name within it (audit.record_action reads it)."""
    return {
        route.name: route.audit
        for route in ROUTES
        if route.blueprint == "api" and route.audit is not None
    }


def path_pattern(path: str) -> str:
    """A regular expression for the request paths of a table path (a room name: any text)."""
    parts = PARAMETER.split(path)  # literal, parameter, literal, ...
    return "".join(
        re.escape(part) if index % 2 == 0 else (".+" if part == "room_name" else "[^/]+")
        for index, part in enumerate(parts)
    )


def cors_paths(prefix: str) -> re.Pattern:
    """The request paths CORS applies to, mounted under `prefix`: the whole namespace (the
    service's own 404 and 405 answers there too) when every route in it has CORS, and each
    other route with CORS."""
    inside = [route for route in ROUTES if route.path.startswith(NAMESPACE)]
    whole_namespace = all(route.cors for route in inside)
    alternatives = {re.escape(NAMESPACE) + ".*"} if whole_namespace else set()
    alternatives.update(
        path_pattern(route.path)
        for route in ROUTES
        if route.cors and not (whole_namespace and route in inside)
    )
    return re.compile(re.escape(prefix) + f"(?:{'|'.join(sorted(alternatives))})\\Z", re.DOTALL)


def _add_room_name_converter(state) -> None:
    """The app's converter for room names (an app's converters are its own, not a blueprint's)."""
    state.app.url_map.converters[ROOM_NAME_CONVERTER] = room_name_converter(room_sub_resources())


# Register: the converter first (a blueprint's deferred work runs in order), then each route.
api.bp.record_once(_add_room_name_converter)
api.bp.before_request(partial(authenticate, route_scopes()))
api.bp.after_request(partial(audit.record_action, audited_actions()))
for _route in ROUTES:
    BLUEPRINTS[_route.blueprint].add_url_rule(
        _route.rule, view_func=_route.view, methods=[_route.method]
    )
