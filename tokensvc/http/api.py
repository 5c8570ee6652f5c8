"""The `api` blueprint: the token route, a tenant's room management, LiveKit's webhook and a
tenant's webhooks (routes.py registers them, and the bearer check, from its table); its error
answers."""

import logging

from flask import Blueprint, request
from werkzeug.exceptions import HTTPException

from ..errors import error_response, http_error_response

log = logging.getLogger(__name__)

#: Nested in the service's parent blueprint (extension.py), so its endpoints are
#: "tokensvc.api.<view>".
bp = Blueprint("api", __name__)

ISSUE_TOKEN = "tokensvc.api.issue_token"

# (the parent's handlers come after this blueprint's, whose Exception one would catch these)
bp.register_error_handler(HTTPException, http_error_response)


@bp.errorhandler(Exception)
def render_unexpected_error(error):
    """Log an unexpected failure with its traceback; answer 500 without details."""
    if request.endpoint != ISSUE_TOKEN:
        log.exception("request failed unexpectedly")
        return error_response(500, "internal_error", "internal error")
    log.exception("token request failed unexpectedly")
    return error_response(500, "token_generation_failed", "the token could not be generated")
