"""`GET /openapi.json`: the OpenAPI 3.1 document, generated from the marshmallow schemas."""

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, request

from .. import __version__
from ..context import service_state
from ..errors import MANAGEMENT, TOKEN, error_table
from ..schemas import (
    ErrorSchema,
    MuteSchema,
    ParticipantInfoSchema,
    ParticipantSchema,
    PermissionsSchema,
    RoomDetailSchema,
    RoomSummarySchema,
    RoomUsageSchema,
    TokenRequestSchema,
    TokenResponseSchema,
    TrackSchema,
    UsageSchema,
    WebhookDeliverySchema,
    WebhookEndpointCreatedSchema,
    WebhookEndpointRequestSchema,
    WebhookEndpointSchema,
)
from ..scopes import SCOPES, scope_of
from ..webhooks import STATUSES as DELIVERY_STATUSES

bp = Blueprint("openapi", __name__)

#: Routing errors every route may answer, left out of each operation's own list.
ROUTE_LEVEL_CODES = ("not_found", "method_not_allowed")
REQUEST_EXAMPLE = {
    "room_name": "conversation-room-123",
    "participant_name": "Alice Smith",
    "participant_identity": "user-alice-456",
}
RESPONSE_EXAMPLE = {
    "token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...",
    "room_name": "conversation-room-123",
    "participant_identity": "user-alice-456",
    "livekit_url": "ws://localhost:7880",
    "server_url": "ws://localhost:7880",
    "participant_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...",
}


@bp.get("/openapi.json")
def openapi_document():
    """Serve the OpenAPI document for this mount of the service."""
    settings = service_state().settings
    prefix = request.script_root + (bp_prefix() or "")
    return build_spec(prefix, settings.auth_required).to_dict()


def bp_prefix() -> str:
    """The URL prefix this blueprint was mounted under (empty when standalone)."""
    return request.path[: -len("/openapi.json")]


def json_body(schema: str | dict, example=None) -> dict:
    """An application/json content entry for a component schema."""
    content: dict = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"content": {"application/json": content}}


def build_spec(prefix: str, auth_required: bool) -> APISpec:
    """Build the document: schemas, the bearer scheme, every route and status."""
    spec = APISpec(
        title="tokensvc",
        version=__version__,
        openapi_version="3.1.0",
        plugins=[MarshmallowPlugin()],
        info={"description": "LiveKit access tokens for one room, owned by the caller's tenant."},
        servers=[{"url": prefix or "/"}],
    )
    spec.components.schema("TokenRequest", schema=TokenRequestSchema)
    spec.components.schema("TokenResponse", schema=TokenResponseSchema)
    spec.components.schema("Error", schema=ErrorSchema)
    # Nested schemas first: apispec names a nested one itself when it meets it unregistered.
    for name, schema in (
        ("Track", TrackSchema),
        ("ParticipantInfo", ParticipantInfoSchema),
        ("RoomSummary", RoomSummarySchema),
        ("RoomDetail", RoomDetailSchema),
        ("Participant", ParticipantSchema),
        ("MuteRequest", MuteSchema),
        ("PermissionsRequest", PermissionsSchema),
        ("RoomUsage", RoomUsageSchema),
        ("Usage", UsageSchema),
        ("WebhookEndpointRequest", WebhookEndpointRequestSchema),
        ("WebhookEndpoint", WebhookEndpointSchema),
        ("WebhookEndpointCreated", WebhookEndpointCreatedSchema),
        ("WebhookDelivery", WebhookDeliverySchema),
    ):
        spec.components.schema(name, schema=schema)
    spec.components.security_scheme(
        "bearerAuth",
        {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": scopes_description(),
        },
    )
    errors = error_responses(TOKEN)
    spec.path(
        path="/livekit/token",
        operations={
            "post": {
                "summary": "Issue a LiveKit token for one room",
                "security": security("issue_token", anonymous=not auth_required),
                "requestBody": {"required": True, **json_body("TokenRequest", REQUEST_EXAMPLE)},
                "responses": {
                    "200": {
                        "description": "Token issued",
                        **json_body("TokenResponse", RESPONSE_EXAMPLE),
                    },
                    **errors,
                },
            }
        },
    )
    add_management_paths(spec)
    add_webhook_paths(spec)
    health = {"200": {"description": "OK", **json_body({"type": "object"})}}
    spec.path(path="/healthz", operations={"get": {"summary": "Liveness", "responses": health}})
    spec.path(
        path="/readyz",
        operations={
            "get": {
                "summary": "Readiness (LiveKit answers)",
                "responses": {**health, "503": {"description": "Not ready", **json_body("Error")}},
            }
        },
    )
    spec.path(
        path="/openapi.json", operations={"get": {"summary": "This document", "responses": health}}
    )
    spec.path(
        path="/metrics",
        operations={
            "get": {
                "summary": "Prometheus metrics (METRICS_ENABLED; METRICS_BEARER_TOKEN)",
                "responses": {
                    "200": {
                        "description": "The text exposition",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "401": {
                        "description": "unauthorized: the metrics bearer token is missing or wrong",
                        **json_body("Error"),
                    },
                    "404": {
                        "description": "not_found: METRICS_ENABLED is off",
                        **json_body("Error"),
                    },
                },
            }
        },
    )
    return spec


def scopes_description() -> str:
    """The tenant JWT and the scopes each operation's security requirement names."""
    lines = [f"- `{scope}`: {meaning}" for scope, meaning in SCOPES.items()]
    intro = (
        "A tenant JWT. Its scopes claim (AUTH_SCOPES_CLAIM) lists what the bearer may do; "
        "without it, every scope, or only `tokens:create` when it carries the roles "
        "claim. A missing scope is 403 `scope_forbidden`."
    )
    return intro + "\n\n" + "\n".join(lines)


def security(view: str, anonymous: bool = False) -> list:
    """The security requirement of one route: the tenant JWT with the scope it needs (OpenAPI
    3.1 lets any scheme name scopes), or nothing when anonymous requests are served."""
    requirement = [{"bearerAuth": [scope_of(view)]}]
    return requirement + [{}] if anonymous else requirement


def error_responses(route: str) -> dict:
    """The error answers of one route family, from `errors.error_table`: per status, each code
    with what it means, and the headers that come with it."""
    answers = {}
    for status, codes in error_table(route).items():
        meanings = [
            f"{code}: {meaning}" for code, meaning in codes.items() if code not in ROUTE_LEVEL_CODES
        ]
        if meanings:
            answers[str(status)] = {"description": " ".join(meanings), **json_body("Error")}
    answers["401"]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    if "429" in answers:
        answers["429"]["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
    return answers


def management_operation(view, summary, answer, body=None, parameters=None, status="200") -> dict:
    """One operation of a tenant's (management and webhook routes), served by `view`."""
    found = {
        "summary": summary,
        "security": security(view),
        "responses": {
            status: {"description": "OK", **json_body(answer)},
            **error_responses(MANAGEMENT),
        },
    }
    if body is not None:
        found["requestBody"] = {"required": True, **json_body(body)}
    if parameters:
        found["parameters"] = parameters
    return found


def add_management_paths(spec: APISpec) -> None:
    """The routes by which a tenant manages its own rooms, and LiveKit's webhook."""
    operation = management_operation
    status = {
        "type": "object",
        "properties": {"status": {"type": "string"}, "room_name": {"type": "string"}},
    }
    room_name = [
        {
            "name": "room_name",
            "in": "path",
            "required": True,
            "description": "The room name, percent-encoded (it may hold `/`).",
            "schema": {"type": "string", "minLength": 1},
        }
    ]

    rooms = {
        "type": "object",
        "properties": {
            "rooms": {"type": "array", "items": {"$ref": "#/components/schemas/RoomSummary"}}
        },
    }
    spec.path(
        path="/livekit/rooms",
        operations={"get": operation("list_rooms", "The tenant's live rooms", rooms)},
    )
    spec.path(
        path="/livekit/rooms/{room_name}",
        operations={
            "get": operation(
                "get_room",
                "One of the tenant's rooms and who is in it",
                "RoomDetail",
                parameters=room_name,
            ),
            "delete": operation(
                "end_room",
                "End one of the tenant's rooms for everyone",
                status,
                parameters=room_name,
            ),
        },
    )
    spec.path(
        path="/livekit/participant",
        operations={
            "delete": operation(
                "remove_participant", "Remove a participant, durably", status, body="Participant"
            )
        },
    )
    spec.path(
        path="/livekit/participant/mute",
        operations={
            "post": operation(
                "mute_track", "Mute or unmute one published track", "Track", body="MuteRequest"
            )
        },
    )
    spec.path(
        path="/livekit/participant/permissions",
        operations={
            "post": operation(
                "set_permissions",
                "Change a connected participant's permissions live",
                "ParticipantInfo",
                body="PermissionsRequest",
            )
        },
    )
    period = [
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
    ]
    spec.path(
        path="/livekit/usage",
        operations={
            "get": operation(
                "usage",
                "The tenant's usage over a period, from LiveKit's events",
                "Usage",
                parameters=period,
            )
        },
    )
    received = {"type": "object", "properties": {"status": {"type": "string"}}}
    spec.path(
        path="/livekit/webhook",
        operations={
            "post": {
                "summary": "LiveKit's signed webhook events (Authorization: LiveKit's signature)",
                "requestBody": {
                    "required": True,
                    "content": {"application/webhook+json": {"schema": {"type": "object"}}},
                },
                "responses": {
                    "200": {"description": "Received", **json_body(received)},
                    "401": {
                        "description": "unauthorized: the signature does not verify",
                        **json_body("Error"),
                    },
                },
            }
        },
    )


def add_webhook_paths(spec: APISpec) -> None:
    """The routes of a tenant's own webhooks: endpoints and deliveries."""
    operation = management_operation

    def path_id(name, what):
        """A path parameter naming one of the tenant's endpoints or deliveries."""
        return [
            {
                "name": name,
                "in": "path",
                "required": True,
                "description": what,
                "schema": {"type": "string", "minLength": 1},
            }
        ]

    def array_of(key, schema):
        """An object with one array of component `schema`."""
        return {
            "type": "object",
            "properties": {
                key: {"type": "array", "items": {"$ref": f"#/components/schemas/{schema}"}}
            },
        }

    endpoint_id = path_id("endpoint_id", "An endpoint's id (`ep_...`).")
    delivery_id = path_id("delivery_id", "A delivery's id (`msg_...`, its webhook-id).")
    spec.path(
        path="/livekit/webhook-endpoints",
        operations={
            "post": operation(
                "create_webhook_endpoint",
                "Subscribe a URL to the events of the tenant's rooms",
                "WebhookEndpointCreated",
                body="WebhookEndpointRequest",
                status="201",
            ),
            "get": operation(
                "list_webhook_endpoints",
                "The tenant's webhook endpoints",
                array_of("endpoints", "WebhookEndpoint"),
            ),
        },
    )
    spec.path(
        path="/livekit/webhook-endpoints/{endpoint_id}",
        operations={
            "delete": operation(
                "delete_webhook_endpoint",
                "Unsubscribe an endpoint",
                {
                    "type": "object",
                    "properties": {"status": {"type": "string"}, "id": {"type": "string"}},
                },
                parameters=endpoint_id,
            )
        },
    )
    spec.path(
        path="/livekit/webhook-endpoints/{endpoint_id}/rotate-secret",
        operations={
            "post": operation(
                "rotate_webhook_secret",
                "A new secret; the old one signs too for 24 h",
                {"type": "object", "properties": {"secret": {"type": "string"}}},
                parameters=endpoint_id,
            )
        },
    )
    spec.path(
        path="/livekit/webhook-endpoints/{endpoint_id}/test",
        operations={
            "post": operation(
                "test_webhook_endpoint",
                "Send a webhook.test event",
                {"type": "object", "properties": {"delivery_id": {"type": "string"}}},
                parameters=endpoint_id,
                status="202",
            )
        },
    )
    filters = [
        {"name": "endpoint_id", "in": "query", "required": False, "schema": {"type": "string"}},
        {
            "name": "status",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "enum": list(DELIVERY_STATUSES)},
        },
    ]
    spec.path(
        path="/livekit/webhook-deliveries",
        operations={
            "get": operation(
                "list_webhook_deliveries",
                "The tenant's recent deliveries",
                array_of("deliveries", "WebhookDelivery"),
                parameters=filters,
            )
        },
    )
    spec.path(
        path="/livekit/webhook-deliveries/{delivery_id}/retry",
        operations={
            "post": operation(
                "retry_webhook_delivery",
                "Deliver one again, now",
                {
                    "type": "object",
                    "properties": {"id": {"type": "string"}, "status": {"type": "string"}},
                },
                parameters=delivery_id,
                status="202",
            )
        },
    )
