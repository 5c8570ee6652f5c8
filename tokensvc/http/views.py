"""The HTTP layer: the blueprint with the token route, the management routes and the tenants'
webhook routes. Thin: parse, call the service, render."""

import csv
import json
import logging
import sys
from datetime import UTC

import click
from flask import Blueprint, g, request
from flask.cli import with_appcontext
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from ..auth import authenticate, check_grants, check_identity, check_target
from ..context import service_state
from ..errors import (
    FieldNotAllowed,
    InvalidRequest,
    RoleForbidden,
    Unauthorized,
    UnsupportedMediaType,
    error_response,
    http_error_response,
)
from ..roles import permission
from ..schemas import (
    LiveKitName,
    MuteSchema,
    ParticipantInfoSchema,
    ParticipantSchema,
    PermissionsSchema,
    RoomDetailSchema,
    RoomSummarySchema,
    TokenRequestSchema,
    TokenResponseSchema,
    TrackSchema,
    WebhookDeliverySchema,
    WebhookEndpointRequestSchema,
    WebhookEndpointSchema,
    fields_not_allowed,
)
from ..service import TokenRequest
from ..usage import parse_time
from ..webhooks import STATUSES as DELIVERY_STATUSES

log = logging.getLogger(__name__)

#: The token and management routes, nested in the service's parent blueprint (extension.py),
#: so their endpoints are "tokensvc.api.<view>".
bp = Blueprint("api", __name__)

ISSUE_TOKEN = "tokensvc.api.issue_token"

request_schema = TokenRequestSchema()
response_schema = TokenResponseSchema()
#: The answer's fields, the response schema's (all strings: `IssuedToken` gives them as they go
#: out; tests/test_token.py checks the answer against the schema's dump).
RESPONSE_FIELDS = tuple(response_schema.fields)


bp.before_request(authenticate)
# (the parent's handlers come after this blueprint's, whose Exception one would catch these)
bp.register_error_handler(HTTPException, http_error_response)


@bp.post("/livekit/token")
def issue_token():
    """Issue a LiveKit token for one room; with a tenant, only for a room the tenant owns."""
    state = service_state()
    if state.rate_limits is not None:
        state.rate_limits.hit_request(g.tenant, request.remote_addr)
    fields = load_token_request()
    g.room = fields["room_name"]
    check_identity(fields["participant_identity"])
    check_role(fields["role"], state.settings.role_presets)
    check_agents(fields["room_config"], state.settings.agent_names_allowed)
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


@bp.errorhandler(Exception)
def render_unexpected_error(error):
    """Log an unexpected failure with its traceback; answer 500 without details."""
    if request.endpoint != ISSUE_TOKEN:
        log.exception("request failed unexpectedly")
        return error_response(500, "internal_error", "internal error")
    log.exception("token request failed unexpectedly")
    return error_response(500, "token_generation_failed", "the token could not be generated")


# Managing a tenant's rooms: every route needs a tenant's bearer token, in every mode.


@bp.get("/livekit/rooms")
def list_rooms():
    """The tenant's live rooms (one ListRooms for the names the record gives it)."""
    state, tenant = service_state(), require_tenant()
    rooms = state.moderator.list_rooms(tenant)
    return {"rooms": [own_room(room_summary.dump(room), tenant) for room in rooms]}


@bp.get("/livekit/rooms/<path:room_name>")
def get_room(room_name):
    """One of the tenant's rooms and who is in it."""
    tenant, room_name = require_tenant(), load_room_name(room_name)
    room, participants = service_state().moderator.room(tenant, livekit_name(tenant, room_name))
    detail = room_detail.dump(
        {**room_summary.dump(room), "metadata": room.metadata, "participants": participants}
    )
    return own_room(detail, tenant)


@bp.delete("/livekit/rooms/<path:room_name>")
def end_room(room_name):
    """End one of the tenant's rooms for everyone; the name stays the tenant's."""
    tenant, room_name = require_tenant(), load_room_name(room_name)
    service_state().moderator.end_room(tenant, livekit_name(tenant, room_name))
    return {"status": "ended", "room_name": room_name}


@bp.delete("/livekit/participant")
def remove_participant():
    """Remove a participant from one of the tenant's rooms, durably."""
    tenant = require_tenant()
    fields = load_body(participant_schema)
    check_target(fields["participant_identity"])
    service_state().moderator.remove_participant(
        tenant, livekit_name(tenant, fields["room_name"]), fields["participant_identity"]
    )
    return {"status": "removed", **fields}


@bp.post("/livekit/participant/mute")
def mute_track():
    """Mute or unmute one track a participant of one of the tenant's rooms publishes."""
    tenant = require_tenant()
    fields = load_body(mute_schema)
    check_target(fields["participant_identity"])
    track = service_state().moderator.mute(
        tenant,
        livekit_name(tenant, fields["room_name"]),
        fields["participant_identity"],
        fields.get("track_sid"),
        fields.get("source"),
        fields["muted"],
    )
    return track_schema.dump(track)


@bp.post("/livekit/participant/permissions")
def set_permissions():
    """Change a connected participant's permissions live (a role preset or explicit grants)."""
    tenant = require_tenant()
    fields = load_body(permissions_schema)
    room_name, identity = fields.pop("room_name"), fields.pop("participant_identity")
    check_target(identity)
    role, presets = fields.pop("role", None), service_state().settings.role_presets
    grants = fields
    if role is not None:
        check_role(role, presets)
        grants = permission(presets[role])
    else:
        check_grants(grants, presets)
    participant = service_state().moderator.set_permissions(
        tenant, livekit_name(tenant, room_name), identity, grants
    )
    return participant_schema_out.dump(participant)


@bp.get("/livekit/usage")
def usage():
    """The tenant's usage over `from` to `to` (RFC 3339; default: this month so far), from
    LiveKit's events, in its own room names."""
    tenant = require_tenant()
    start, end = load_period(request.args.get("from"), request.args.get("to"))
    return service_state().issuer.usage.report(tenant, start, end)


def load_period(start: str | None, end: str | None) -> tuple[int, int]:
    """(from, to) in ms from RFC 3339 texts; `to` defaults to the storage's now, `from` to the
    start of `to`'s month (UTC); 400 naming a bad one, or a `from` not before `to`."""
    usage_rule, problems, times = service_state().issuer.usage, {}, {}
    for field, text in (("from", start), ("to", end)):
        if text is not None:
            try:
                times[field] = parse_time(text)
            except ValueError as exc:
                problems[field] = [f"{text!r} {exc}."]
    if problems:
        raise InvalidRequest("the period is invalid", fields=problems)
    end_ms = times.get("to")
    if end_ms is None:
        end_ms = usage_rule.store.time_ms()
    start_ms = times.get("from", month_start(end_ms))
    if start_ms >= end_ms:
        raise InvalidRequest("the period is invalid", fields={"from": ["Must be before 'to'."]})
    return start_ms, end_ms


def month_start(ms: int) -> int:
    """The first instant (UTC) of the month of `ms`."""
    from datetime import datetime

    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return int(moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)


@click.command("usage")
@click.option("--from", "start", help="RFC 3339 start (default: the start of this month, UTC).")
@click.option("--to", "end", help="RFC 3339 end (default: now).")
@click.option(
    "--format", "style", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@with_appcontext
def usage_command(start: str | None, end: str | None, style: str) -> None:
    """Print every tenant's usage over a period, for billing: participant-seconds,
    room-seconds and room names used, per tenant."""
    usage_rule = service_state().issuer.usage
    if usage_rule is None:
        raise click.ClickException("no usage is kept: no tenant key is configured")
    try:
        start_ms, end_ms = load_period(start, end)
    except InvalidRequest as exc:
        problems = "; ".join(
            f"--{field} {' '.join(messages)}" for field, messages in exc.extra["fields"].items()
        )
        raise click.ClickException(problems) from None
    totals = usage_rule.report_all(start_ms, end_ms)
    if style == "json":
        from ..usage import format_time

        click.echo(
            json.dumps(
                {"from": format_time(start_ms), "to": format_time(end_ms), "tenants": totals},
                ensure_ascii=False,
            )
        )
        return
    writer = csv.DictWriter(
        sys.stdout, ["tenant", "participant_seconds", "room_seconds", "rooms"], lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(totals)


@bp.post("/livekit/webhook")
def livekit_webhook():
    """LiveKit's signed webhook events keep the ownership record true (`Ownership.on_event`)."""
    state = service_state()
    state.issuer.require_livekit()
    body = request.get_data(as_text=True)
    try:
        event = state.webhooks.receive(body, request.headers.get("Authorization", ""))
    except Exception:  # a bad or expired signature, a hash mismatch, or garbage alike
        raise Unauthorized("the webhook's signature does not verify") from None
    g.room = event.room.name or None
    if state.issuer.ownership is not None:
        state.issuer.ownership.on_event(event)
    return {"status": "received"}


# A tenant's own webhooks: endpoints and deliveries (webhooks:read / webhooks:write).


@bp.post("/livekit/webhook-endpoints")
def create_webhook_endpoint():
    """Subscribe a URL of the tenant's to the events of its rooms; the secret is shown here
    only."""
    tenant = require_tenant()
    fields = load_fields(webhook_endpoint_request)
    endpoint, secret = tenant_webhooks().subscribe(
        tenant, fields["url"], fields.get("events"), fields["description"]
    )
    return {**webhook_endpoint.dump(endpoint), "secret": secret}, 201


@bp.get("/livekit/webhook-endpoints")
def list_webhook_endpoints():
    """The tenant's webhook endpoints, without their secrets."""
    tenant = require_tenant()
    return {"endpoints": webhook_endpoint.dump(tenant_webhooks().endpoints(tenant), many=True)}


@bp.delete("/livekit/webhook-endpoints/<endpoint_id>")
def delete_webhook_endpoint(endpoint_id):
    """Unsubscribe one of the tenant's endpoints."""
    tenant_webhooks().unsubscribe(require_tenant(), endpoint_id)
    return {"status": "deleted", "id": endpoint_id}


@bp.post("/livekit/webhook-endpoints/<endpoint_id>/rotate-secret")
def rotate_webhook_secret(endpoint_id):
    """A new secret for one of the tenant's endpoints; the old one signs too for 24 h."""
    return {"secret": tenant_webhooks().rotate_secret(require_tenant(), endpoint_id)}


@bp.post("/livekit/webhook-endpoints/<endpoint_id>/test")
def test_webhook_endpoint(endpoint_id):
    """Send a webhook.test event to one of the tenant's endpoints."""
    delivery_id = tenant_webhooks().send_test(require_tenant(), endpoint_id)
    return {"delivery_id": delivery_id}, 202


@bp.get("/livekit/webhook-deliveries")
def list_webhook_deliveries():
    """The tenant's newest deliveries, by endpoint and status."""
    tenant = require_tenant()
    endpoint_id = request.args.get("endpoint_id") or None
    status = request.args.get("status") or None
    if status is not None and status not in DELIVERY_STATUSES:
        raise InvalidRequest(
            "unknown delivery status",
            fields={"status": [f"Must be one of: {', '.join(DELIVERY_STATUSES)}."]},
        )
    deliveries = tenant_webhooks().deliveries(tenant, endpoint_id, status)
    return {"deliveries": webhook_delivery.dump(deliveries, many=True)}


@bp.post("/livekit/webhook-deliveries/<delivery_id>/retry")
def retry_webhook_delivery(delivery_id):
    """Deliver one of the tenant's deliveries again, now."""
    tenant_webhooks().retry(require_tenant(), delivery_id)
    return {"id": delivery_id, "status": "pending"}, 202


def tenant_webhooks():
    """The tenants' webhooks of this app (present whenever a tenant key is configured, which a
    tenant's request implies)."""
    return service_state().tenant_webhooks


def check_role(role: str, presets: dict) -> None:
    """400 for a role that is no preset; 403 for one the bearer's roles claim does not allow."""
    if role not in presets:
        raise InvalidRequest(
            "unknown role", fields={"role": [f"Must be one of: {', '.join(sorted(presets))}."]}
        )
    if g.roles is not None and role not in g.roles:
        raise RoleForbidden(f"the bearer token does not allow the role {role!r}")


def check_agents(room_config: dict | None, allowed: tuple[str, ...] | None) -> None:
    """400 for an agent dispatch outside AGENT_NAMES_ALLOWED (when it is set)."""
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


def livekit_name(tenant: str, room_name: str) -> str:
    """LiveKit's name for one of the tenant's room names (the same with shared names)."""
    return service_state().issuer.livekit_name(tenant, room_name)


def own_room(rendered: dict, tenant: str) -> dict:
    """A rendered room under the tenant's own name (and LiveKit's, with per-tenant names)."""
    names = service_state().issuer.names
    if names.per_tenant:
        rendered["livekit_room_name"] = rendered["name"]
        rendered["name"] = names.own_name(tenant, rendered["name"])
    return rendered


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


def load_body(schema) -> dict:
    """Validate a management route's JSON body against `schema`; 400 naming each bad field."""
    try:
        fields = schema.load(read_json_object())
    except ValidationError as exc:
        raise InvalidRequest("some fields are missing or invalid", fields=exc.messages) from None
    g.room = fields["room_name"]
    return fields


def load_fields(schema) -> dict:
    """Validate a JSON body that names no room against `schema`; 400 naming each bad field."""
    try:
        return schema.load(read_json_object())
    except ValidationError as exc:
        raise InvalidRequest("some fields are missing or invalid", fields=exc.messages) from None


participant_schema = ParticipantSchema()
mute_schema = MuteSchema()
permissions_schema = PermissionsSchema()
room_summary = RoomSummarySchema()
room_detail = RoomDetailSchema()
track_schema = TrackSchema()
participant_schema_out = ParticipantInfoSchema()
room_name_field = LiveKitName(required=True)
webhook_endpoint_request = WebhookEndpointRequestSchema()
webhook_endpoint = WebhookEndpointSchema()
webhook_delivery = WebhookDeliverySchema()
