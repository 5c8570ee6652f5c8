"""`POST /livekit/token`: a LiveKit token for one room; with a tenant, only for a room the
tenant owns."""

from flask import g, request
from marshmallow import ValidationError

from ..auth import check_identity
from ..context import service_state
from ..errors import FieldNotAllowed, InvalidRequest
from ..schemas import TokenRequestSchema, TokenResponseSchema, fields_not_allowed
from ..service import TokenRequest
from .inputs import check_role, read_json_object

request_schema = TokenRequestSchema()
response_schema = TokenResponseSchema()
#: The answer's fields, the response schema's (all strings: `IssuedToken` gives them as they go
#: out; tests/test_token.py checks the answer against the schema's dump).
RESPONSE_FIELDS = tuple(response_schema.fields)


def issue_token():
    """Issue a LiveKit token for one room; with a tenant, only for a room the tenant owns."""
    state = service_state()
    if state.rate_limits is not None:
        state.rate_limits.hit_request(g.tenant, request.remote_addr)
    fields = load_token_request()
    g.room = fields["room_name"]
    check_identity(fields["participant_identity"])
    check_role(fields["role"], state.settings.role_presets)
    allowed = state.settings.agent_names_allowed
    if state.tenants is not None:
        allowed = state.tenants.agents_allowed(g.tenant)
    check_agents(fields["room_config"], allowed)
    issued = state.issuer.issue(TokenRequest(**fields), g.tenant, g.quotas)
    if state.metrics is not None:
        state.metrics.token_issued(g.tenant, issued.room_created)
    answer = {name: getattr(issued, name) for name in RESPONSE_FIELDS}
    if answer["livekit_room_name"] is None:
        del answer["livekit_room_name"]
    return answer


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


def check_agents(room_config: dict | None, allowed: tuple[str, ...] | None) -> None:
    """400 for an agent dispatch outside `allowed`: the tenant record's agents, else
    AGENT_NAMES_ALLOWED (when either is set)."""
    if allowed is None:
        return
    refused = {
        f"room_config.agents.{number}.agent_name": [
            f"Agent {agent['agent_name']!r} is not one of AGENT_NAMES_ALLOWED."
        ]
        for number, agent in enumerate((room_config or {}).get("agents", ()))
        if agent["agent_name"] not in allowed
    }
    if refused:
        raise InvalidRequest("this service does not dispatch the agent named", fields=refused)
