"""What a request of the service's API brings, read and checked once: its JSON body, its tenant,
a room name from its path, a role it asks for."""

import json

from flask import g, request
from marshmallow import ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from ..errors import InvalidRequest, RoleForbidden, Unauthorized, UnsupportedMediaType
from ..schemas import LiveKitName


def read_json_object() -> dict:
    """Return the body as a JSON object, or raise 400/413/415 saying what is wrong with it."""
    asked = request._get_current_object()  # type: ignore[attr-defined]  # a LocalProxy
    body = asked.get_data(cache=False)
    if _cut_at_the_limit(asked, body):
        raise RequestEntityTooLarge()
    if not body:
        raise InvalidRequest("the request body is missing; send a JSON object")
    # (the usual Content-Type spares werkzeug's parse of its parameters)
    if asked.environ.get("CONTENT_TYPE") != "application/json" and not asked.is_json:
        raise UnsupportedMediaType("the body must be sent as Content-Type: application/json")
    try:
        document = json.loads(body)
    except ValueError:
        raise InvalidRequest("the request body is not valid JSON") from None
    except RecursionError:
        raise InvalidRequest("the request body is nested too deeply") from None
    if not isinstance(document, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return document


def _cut_at_the_limit(asked, body: bytes) -> bool:
    """Whether a body sent without Content-Length (chunked) went on past the limit: werkzeug
    stops reading there without a word, so look for one more byte on the raw input."""
    limit = asked.max_content_length
    if limit is None or len(body) < limit or asked.content_length is not None:
        return False
    return bool(asked.environ["wsgi.input"].read(1))


def load_body(schema) -> dict:
    """Validate a management route's JSON body against `schema`; 400 naming each bad field."""
    try:
        fields = schema.load(read_json_object())
    except ValidationError as exc:
        raise InvalidRequest("some fields are missing or invalid", fields=exc.messages) from None
    g.room = fields["room_name"]
    g.participant = fields.get("participant_identity")
    return fields


def load_fields(schema) -> dict:
    """Validate a JSON body that names no room against `schema`; 400 naming each bad field."""
    try:
        return schema.load(read_json_object())
    except ValidationError as exc:
        raise InvalidRequest("some fields are missing or invalid", fields=exc.messages) from None


def require_tenant() -> str:
    """The tenant of the request, or 401: the management routes need one in every mode."""
    if g.tenant is None:
        raise Unauthorized("a tenant's bearer token is required", invalid_token=False)
    return g.tenant


def load_room_name(room_name: str) -> str:
    """A room name from the path, under the same rules as in a body."""
    try:
        name = room_name_field.deserialize(room_name)
    except ValidationError as exc:
        raise InvalidRequest(
            "the room name is invalid", fields={"room_name": exc.messages}
        ) from None
    g.room = name
    return name


def check_role(role: str, presets: dict) -> None:
    """400 for a role that is no preset; 403 for one the bearer's roles claim does not allow."""
    if role not in presets:
        raise InvalidRequest(
            "unknown role", fields={"role": [f"Must be one of: {', '.join(sorted(presets))}."]}
        )
    if g.roles is not None and role not in g.roles:
        raise RoleForbidden(f"the bearer token does not allow the role {role!r}")


room_name_field = LiveKitName(required=True)
