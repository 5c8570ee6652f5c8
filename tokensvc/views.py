"""The HTTP layer: the blueprint and its token route. Thin: parse, call the service, render."""

import json
import logging

from flask import Blueprint, current_app, g, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .auth import load_tenant
from .errors import (
    FieldNotAllowed,
    InvalidRequest,
    UnsupportedMediaType,
    error_response,
    http_error_response,
)
from .requestlog import finish_request, start_request
from .schemas import TokenRequestSchema, TokenResponseSchema, fields_not_allowed
from .service import TokenRequest

log = logging.getLogger(__name__)

bp = Blueprint("tokensvc", __name__)

request_schema = TokenRequestSchema()
response_schema = TokenResponseSchema()


bp.before_request(start_request)
bp.after_request(finish_request)


@bp.before_request
def limit_body_size():
    """Apply the service's body limit (MAX_CONTENT_LENGTH, default 64 KiB) to its routes only."""
    request.max_content_length = current_app.extensions["tokensvc"].settings.max_content_length


bp.before_request(load_tenant)


@bp.post("/livekit/token")
def issue_token():
    """Issue a LiveKit token for one room; with a tenant, only for a room the tenant owns."""
    state = current_app.extensions["tokensvc"]
    if state.rate_limits is not None:
        state.rate_limits.hit_request(g.tenant, request.remote_addr)
    fields = load_token_request()
    g.room = fields["room_name"]
    issued = state.issuer.issue(TokenRequest(**fields), g.tenant)
    if state.metrics is not None:
        state.metrics.token_issued(g.tenant, issued.room_created)
    return response_schema.dump(issued)


def load_token_request() -> dict:
    """Validate the body against the request schema; 400 naming each bad or forbidden field."""
    document = read_json_object()
    refused = fields_not_allowed(document)
    if refused:
        raise FieldNotAllowed(
            "clients may not set " + ", ".join(refused),
            fields={name: ["Clients may not set this field."] for name in refused},
        )
    try:
        return request_schema.load(document)
    except ValidationError as exc:
        raise InvalidRequest("some fields are missing or invalid", fields=exc.messages) from None


def read_json_object() -> dict:
    """Return the body as a JSON object, or raise 400/413/415 saying what is wrong with it."""
    body = request.get_data(cache=False)
    if _cut_at_the_limit(body):
        raise RequestEntityTooLarge()
    if not body:
        raise InvalidRequest("the request body is missing; send a JSON object")
    if not request.is_json:
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


def _cut_at_the_limit(body: bytes) -> bool:
    """Whether a body sent without Content-Length (chunked) went on past the limit: werkzeug
    stops reading there without a word, so look for one more byte on the raw input."""
    limit = request.max_content_length
    if request.content_length is not None or limit is None or len(body) < limit:
        return False
    return bool(request.environ["wsgi.input"].read(1))


@bp.errorhandler(HTTPException)
def render_http_error(error):
    """Render every HTTP error raised on the blueprint's routes as JSON."""
    return http_error_response(error)


@bp.errorhandler(Exception)
def render_unexpected_error(error):
    """Log an unexpected failure with its traceback; answer 500 without details."""
    log.exception("token request failed unexpectedly")
    return error_response(500, "token_generation_failed", "the token could not be generated")
