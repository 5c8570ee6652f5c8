"""`GET /openapi.json`: the OpenAPI 3.1 document, generated from the route table (routes.py)
and the marshmallow schemas."""

import copy

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, request

from .. import __version__
from ..context import service_state
from ..errors import error_table
from ..schemas import (
    AuditEntrySchema,
    ErrorSchema,
    MuteSchema,
    ParticipantInfoSchema,
    ParticipantSchema,
    PermissionsSchema,
    RoomDetailSchema,
    RoomSummarySchema,
    RoomUsageSchema,
    TenantLimitsSchema,
    TenantSchema,
    TokenRequestSchema,
    TokenResponseSchema,
    TrackSchema,
    UsageSchema,
    WebhookDeliverySchema,
    WebhookEndpointCreatedSchema,
    WebhookEndpointRequestSchema,
    WebhookEndpointSchema,
    WebhookEndpointUpdateSchema,
)
from ..scopes import SCOPES

#: Its route is registered from the route table (routes.py).
bp = Blueprint("openapi", __name__)

#: Routing errors every route may answer, left out of each operation's own list.
ROUTE_LEVEL_CODES = ("not_found", "method_not_allowed")


def openapi_document():
    """Serve the OpenAPI document for this mount of the service."""
    settings = service_state().settings
    prefix = request.script_root + (bp_prefix() or "")
    return build_spec(prefix, settings.auth_required).to_dict()


def bp_prefix() -> str:
    """The URL prefix this blueprint was mounted under (empty when standalone)."""
    return request.path[: -len("/openapi.json")]


def json_body(schema: str | dict, example=None) -> dict:
    """An application/json content entry for a component schema (by name) or a JSON Schema."""
    return typed_body("application/json", schema, example)


def typed_body(content_type: str, schema: str | dict, example=None) -> dict:
    """A content entry of `content_type` for a component schema (by name) or a JSON Schema."""
    content: dict = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"content": {content_type: content}}


def path_parameter(name: str, description: str) -> tuple[dict]:
    """A required path parameter, a non-empty string."""
    return (
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": description,
            "schema": {"type": "string", "minLength": 1},
        },
    )


def array_of(key: str, schema: str) -> dict:
    """An object with one array of component `schema`."""
    return {
        "type": "object",
        "properties": {key: {"type": "array", "items": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def build_spec(prefix: str, auth_required: bool) -> APISpec:
    """Build the document: schemas, the bearer scheme, every route of the table and its
    statuses."""
    from .routes import ROUTES  # (the table names this module's view)

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
        ("WebhookEndpointUpdate", WebhookEndpointUpdateSchema),
        ("WebhookEndpoint", WebhookEndpointSchema),
        ("WebhookEndpointCreated", WebhookEndpointCreatedSchema),
        ("WebhookDelivery", WebhookDeliverySchema),
        ("TenantLimits", TenantLimitsSchema),
        ("Tenant", TenantSchema),
        ("AuditEntry", AuditEntrySchema),
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
    spec.components.security_scheme(
        "adminBearer",
        {
            "type": "http",
            "scheme": "bearer",
            "description": "The operator's ADMIN_TOKEN (the admin routes answer 404 without it).",
        },
    )
    paths: dict[str, dict] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = operation(route, auth_required)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec


def operation(route, auth_required: bool) -> dict:
    """The OpenAPI operation of one route of the table (a copy: apispec edits what it gets)."""
    declared = route.operation
    found: dict = {"summary": declared.summary}
    if isinstance(route.scope, str):
        found["security"] = security(route.scope, route.anonymous and not auth_required)
    elif route.blueprint == "admin":
        found["security"] = [{"adminBearer": []}]
    if declared.body is not None:
        found["requestBody"] = {
            "required": True,
            **typed_body(declared.body_type, declared.body, declared.body_example),
        }
    if declared.parameters:
        found["parameters"] = list(declared.parameters)
    responses = {}
    if declared.answer is not None:
        responses[declared.status] = {
            "description": declared.description,
            **json_body(declared.answer, declared.answer_example),
        }
    responses.update(declared.responses)
    if declared.errors is not None:
        responses.update(error_responses(declared.errors))
    found["responses"] = responses
    return copy.deepcopy(found)


def scopes_description() -> str:
    """The tenant JWT and the scopes each operation's security requirement names."""
    lines = [f"- `{scope}`: {meaning}" for scope, meaning in SCOPES.items()]
    intro = (
        "A tenant JWT. Its scopes claim (AUTH_SCOPES_CLAIM) lists what the bearer may do; "
        "without it, every scope, or only `tokens:create` when it carries the roles "
        "claim. A missing scope is 403 `scope_forbidden`."
    )
    return intro + "\n\n" + "\n".join(lines)


def security(scope: str, anonymous: bool = False) -> list:
    """The security requirement of one route: the tenant JWT with the scope it needs (OpenAPI
    3.1 lets any scheme name scopes), or nothing when anonymous requests are served."""
    requirement = [{"bearerAuth": [scope]}]
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
