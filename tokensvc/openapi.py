"""`GET /openapi.json`: the OpenAPI 3.1 document, generated from the marshmallow schemas."""

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, current_app, request

from .requestlog import finish_request, start_request
from .schemas import ErrorSchema, TokenRequestSchema, TokenResponseSchema

bp = Blueprint("openapi", __name__)
bp.before_request(start_request)
bp.after_request(finish_request)

#: Every error the token route can answer, as in the README's table.
TOKEN_ERRORS = {
    400: "invalid_request or field_not_allowed: the body or a field is wrong (with `fields`)",
    401: "unauthorized: no or bad bearer token (with `WWW-Authenticate: Bearer`)",
    403: "room_forbidden: the room belongs to another tenant",
    413: "payload_too_large: body over MAX_CONTENT_LENGTH",
    415: "unsupported_media_type: body not application/json",
    429: "rate_limited: a rate limit is used up (with `Retry-After`, seconds); nothing written",
    500: "livekit_not_configured or token_generation_failed",
    502: "livekit_error: LiveKit answered an error or garbage",
    503: "livekit_unavailable, auth_unavailable or rate_limit_unavailable",
    504: "livekit_timeout: LiveKit did not answer within LIVEKIT_TIMEOUT",
}
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
    settings = current_app.extensions["tokensvc"].settings
    prefix = request.script_root + (bp_prefix() or "")
    return build_spec(prefix, settings.auth_required).to_dict()


def bp_prefix() -> str:
    """The URL prefix this blueprint was mounted under (empty when standalone)."""
    return request.path[: -len("/openapi.json")]


def json_body(schema: str, example=None) -> dict:
    """An application/json content entry for a component schema."""
    content = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"content": {"application/json": content}}


def build_spec(prefix: str, auth_required: bool) -> APISpec:
    """Build the document: schemas, the bearer scheme, every route and status."""
    spec = APISpec(
        title="tokensvc",
        version="1.0.0",
        openapi_version="3.1.0",
        plugins=[MarshmallowPlugin()],
        info={"description": "LiveKit access tokens for one room, owned by the caller's tenant."},
        servers=[{"url": prefix or "/"}],
    )
    spec.components.schema("TokenRequest", schema=TokenRequestSchema)
    spec.components.schema("TokenResponse", schema=TokenResponseSchema)
    spec.components.schema("Error", schema=ErrorSchema)
    spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    errors = {
        str(status): {"description": text, **json_body("Error")}
        for status, text in TOKEN_ERRORS.items()
    }
    errors["401"]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    errors["429"]["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
    spec.path(
        path="/livekit/token",
        operations={
            "post": {
                "summary": "Issue a LiveKit token for one room",
                "security": [{"bearerAuth": []}] if auth_required else [{"bearerAuth": []}, {}],
                "requestBody": {"required": True, **json_body("TokenRequest", REQUEST_EXAMPLE)},
                "responses": {
                    "200": {"description": "Token issued",
                            **json_body("TokenResponse", RESPONSE_EXAMPLE)},
                    **errors,
                },
            }
        },
    )
    health = {"200": {"description": "OK", **json_body({"type": "object"})}}
    spec.path(path="/healthz", operations={"get": {"summary": "Liveness", "responses": health}})
    spec.path(
        path="/readyz",
        operations={"get": {"summary": "Readiness (LiveKit answers)", "responses": {
            **health, "503": {"description": "Not ready", **json_body("Error")}}}},
    )
    spec.path(path="/openapi.json", operations={"get": {"summary": "This document",
                                                        "responses": health}})
    return spec
