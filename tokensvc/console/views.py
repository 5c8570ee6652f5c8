"""The console's pages and actions: a tenant's calls, usage, webhooks and audit trail,
server-rendered, each action through the operations the API's routes use (moderation.py,
webhooks.py, usage.py, tenants.py), so ownership, scopes and suspension are decided exactly as
for the API. The route table (routes.py) registers them and the session gate."""

import csv
import io
import logging
import time
from datetime import UTC, datetime

from flask import (
    Blueprint,
    Response,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from marshmallow import ValidationError
from werkzeug.exceptions import Forbidden, HTTPException, default_exceptions
from werkzeug.wrappers import Response as BaseResponse

from ..auth import check_target
from ..context import service_state
from ..errors import (
    ApiError,
    InvalidRequest,
    LiveKitNotFound,
    RoleForbidden,
    RoomNotFound,
    ScopeForbidden,
    TenantSuspended,
    Unauthorized,
)
from ..roles import permission
from ..schemas import (
    LiveKitName,
    ParticipantInfoSchema,
    WebhookDeliverySchema,
    WebhookEndpointRequestSchema,
    WebhookEndpointSchema,
)
from ..scopes import OWN_IDENTITY_SCOPES
from ..tenants import TENANT, Actor, Tenants
from ..usage import DAY_MS, add_up
from ..webhooks import EVENT_TYPES
from ..webhooks import STATUSES as DELIVERY_STATUSES
from .sessions import console_key, csrf_matches, csrf_token, redeem_ticket, seal, unseal

log = logging.getLogger(__name__)

#: The console's blueprint, nested in the service's ("tokensvc.console.<view>").
bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
)

#: The session cookie's name.
COOKIE = "tokensvc_console"
#: Where a form carries its CSRF token; htmx sends it as a header.
CSRF_FIELD, CSRF_HEADER = "csrf_token", "X-CSRF-Token"
#: A form that carries this field was confirmed (by the page's script or the confirm page).
CONFIRMED = "confirmed"
HOUR_MS = 3600 * 1000
#: The most buckets the usage chart draws (hours beyond it become days).
MOST_BUCKETS = 24 * 31
#: What a redirect after an action says, by key (only these texts ever reach the page).
NOTICES = {
    "ended": "The room was ended.",
    "removed": "The participant was removed.",
    "muted": "The track was muted.",
    "unmuted": "The track was unmuted.",
    "role": "The participant's role was changed.",
    "tested": "A webhook.test event was queued.",
    "deleted": "The endpoint was deleted.",
    "retried": "The delivery was queued again.",
    "disabled": "The endpoint was disabled: its deliveries wait until it is enabled again.",
    "enabled": "The endpoint was enabled: what waited is being sent, oldest first.",
}
#: Answers that refuse an action before it acts: the audit trail does not keep them (as the
#: API's: a refused request writes nothing).
REFUSALS = frozenset({400, 401, 403, 409, 413, 415})
#: The audit page's outcome filter that keeps every entry whose outcome is not `ok`.
NOT_OK = "not-ok"


# The session gate, the headers of every answer, the error pages.


def gate(scopes: dict) -> None:
    """Before each console request: the session from its cookie (401 page without a valid
    one), the CSRF token of a POST (403), whether the tenant is suspended (a page saying so,
    403 tenant_suspended, on every route but signing out: read as the API's auth hook reads
    it, on every request), and the scope of the route (`scopes`, by endpoint), as the API's
    bearer check decides it. A session the operator opened changes nothing, whatever the
    route. The session's tenant, scopes, roles and identity are put where the API's checks
    read them (`g`)."""
    from .routes import ANY_SESSION, NO_SESSION

    endpoint = request.endpoint.rpartition(".")[2] if request.endpoint else ""
    needed = scopes[endpoint] if endpoint else NO_SESSION
    g.console = g.suspension = None
    if needed is NO_SESSION:
        return
    state = service_state()
    key = console_key(state.settings)
    session = unseal(key, request.cookies.get(COOKIE), time.time())
    if session is None or not session.tenant:
        raise Unauthorized("no console session: open the console again from your product")
    g.console, g.console_key = session, key
    g.tenant, g.scopes, g.roles = session.tenant, session.scopes, session.roles
    g.identity, g.quotas = session.identity, session.quotas
    if request.method == "POST":
        sent = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
        if not csrf_matches(key, session, sent):
            raise Forbidden("the form's CSRF token is missing or wrong: reload the page")
    if endpoint != "leave" and state.tenants is not None:
        Tenants.begin_request()
        record = state.tenants.record(session.tenant)
        if record is not None and record.suspended:
            g.suspension = record
            raise TenantSuspended()
    if session.operator and request.method == "POST" and endpoint != "leave":
        raise Forbidden("this console was opened read-only by the operator")
    if needed is ANY_SESSION or (isinstance(needed, str) and may(needed)):
        return
    raise ScopeForbidden(str(needed))


def may(scope: str) -> bool:
    """Whether this request's session may use a route needing `scope` (as the API decides:
    a bound identity may act on itself without participants:write)."""
    session = g.console
    return session is not None and (
        session.may(scope) or (scope in OWN_IDENTITY_SCOPES and session.identity is not None)
    )


@bp.after_request
def console_headers(response: Response) -> Response:
    """Every console answer: who may frame it (CONSOLE_FRAME_ANCESTORS, else nobody), where
    its scripts and styles come from (its own origin only), no referrer (a ticket is in the
    entry URL), never cached."""
    return page_headers(response, service_state().settings.console_frame_ancestors)


def page_headers(response: Response, ancestors) -> Response:
    """The headers of a console page that `ancestors` (origins; none: nobody) may frame."""
    policy = [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "object-src 'none'",
        "frame-ancestors " + (" ".join(ancestors) if ancestors else "'none'"),
    ]
    response.headers["Content-Security-Policy"] = "; ".join(policy)
    if not ancestors:
        response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    if request.endpoint != "tokensvc.console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


def render_error(error: HTTPException):
    """An error on a console page, as a page (the API's answers stay JSON). A suspended
    tenant's page says so (with the operator's reason: the tenant's audit trail shows it too).
    When the page's own script polled (htmx) and the session is gone or suspended, the
    answer asks it to reload the whole page, which then says why."""
    status = error.code or 500
    code = error.error_code if isinstance(error, ApiError) else None
    g.error_code = code
    suspension = getattr(g, "suspension", None) if code == TenantSuspended.error_code else None
    response = Response(
        render_template(
            "console/error.html",
            status=status,
            code=code,
            message=error.description,
            signed_out=status == 401,
            suspension=suspension,
        ),
        status,
    )
    if request.headers.get("HX-Request") == "true" and (status == 401 or suspension):
        response.headers["HX-Refresh"] = "true"
    return response


bp.register_error_handler(HTTPException, render_error)
for _status in default_exceptions:
    bp.register_error_handler(_status, render_error)


def record_action(actions: dict, response: Response) -> Response:
    """After a console request: when its view is one of `actions` (endpoint -> action) and it
    went ahead (`acting`: confirmed, not refused), keep the audit entry as the API's routes do:
    the tenant, the JWT's subject and bound identity, what, on what, the outcome (ok or the
    error code), `via: console`. A failure to keep it is logged; the answer stands."""
    action = actions.get((request.endpoint or "").rpartition(".")[2])
    acted, session = g.get("audit"), g.get("console")
    tenants = service_state().tenants
    if action is None or acted is None or session is None or tenants is None:
        return response
    if response.status_code in REFUSALS:
        return response
    outcome = "ok" if response.status_code < 400 else (g.get("error_code") or "internal_error")
    target, detail = acted
    actor = Actor(TENANT, session.subject, session.identity or "")
    try:
        tenants.add_entry(
            actor, session.tenant, action, target, outcome, {**detail, "via": "console"}
        )
    except ApiError:
        log.warning("the audit entry of %s could not be kept (the storage failed)", action)
    return response


def acting(target: str, **detail) -> None:
    """The view goes ahead with its action on `target` (confirmed): the audit trail keeps it."""
    g.audit = (target, detail)


@bp.app_template_filter("console_time")
def console_time(seconds: int) -> str:
    """Epoch seconds as the pages show a time."""
    return clock_text(seconds * 1000)


@bp.context_processor
def console_context() -> dict:
    """What every console template may use: the session, its CSRF token, the pages it may
    see, and `may(scope)` (a suspended tenant's: none, nothing)."""
    session = getattr(g, "console", None)
    if session is None:
        return {"session": None, "pages": (), "may": lambda scope: False}
    from .routes import PAGES

    suspended = getattr(g, "suspension", None) is not None
    return {
        "session": session,
        "csrf": csrf_token(g.console_key, session),
        "csrf_field": CSRF_FIELD,
        "pages": [
            (endpoint, label) for endpoint, label, scope in PAGES if may(scope) and not suspended
        ],
        "may": (lambda scope: False) if suspended else may,
        "roles_for_session": roles_for_session,
        "notice": NOTICES.get(request.args.get("notice", "")),
    }


# The way in, and out.


def roles_for_session() -> list[str]:
    """The roles this session may give (its JWT's roles claim; without one every preset)."""
    presets = service_state().settings.role_presets
    return sorted(role for role in presets if g.roles is None or role in g.roles)


def enter():
    """Open a session from a one-use ticket: set its cookie and go to the console's start (the
    ticket leaves the address bar); a used, expired or forged ticket gets a page saying so."""
    state = service_state()
    settings = state.settings
    key = console_key(settings)
    now = time.time()
    session = None
    if state.console_tickets is not None:
        ticket = request.args.get("ticket", "")
        session = redeem_ticket(state.console_tickets, ticket, now, settings.console_session_ttl)
    if session is None:
        raise Forbidden(
            "this console link was used already, has expired or is not valid: "
            "ask for a new one from your product"
        )
    response = redirect(url_for(".start"), 303)
    set_session_cookie(response, key, session, now)
    return response


def set_session_cookie(response: BaseResponse, key: bytes, session, now: float) -> None:
    """Set a tenant's console session on `response`: HttpOnly, on the console's path, Secure
    (not with DEV_MODE), SameSite=Lax (framed: None, Secure, Partitioned), until it expires."""
    settings = service_state().settings
    framed = bool(settings.console_frame_ancestors)
    response.set_cookie(
        COOKIE,
        seal(key, session),
        max_age=max(1, session.expires - int(now)),
        path=url_for("tokensvc.console.start"),
        secure=framed or not settings.dev_mode,
        httponly=True,
        samesite="None" if framed else "Lax",
        partitioned=framed,
    )


def start():
    """The first page this session may see."""
    from .routes import PAGES

    for endpoint, _label, scope in PAGES:
        if may(scope):
            return redirect(url_for("." + endpoint), 303)
    return render_template("console/empty.html")


def alive():
    """Nothing (204) while the session may go on: every page polls it, so that an open console
    says so once its tenant is suspended or its session ends (the gate's answer)."""
    return Response(status=204)


def leave():
    """End the session in this browser (its cookie deleted)."""
    response = Response(render_template("console/error.html", status=200, left=True))
    response.delete_cookie(COOKIE, path=url_for(".start"))
    return response


# Calls.


def calls():
    """The tenant's live rooms and who is in them (refreshed by the fragment)."""
    return render_template("console/calls.html", rooms=live_rooms(g.console.tenant))


def calls_live():
    """The rooms fragment that the calls page polls."""
    return render_template("console/_rooms.html", rooms=live_rooms(g.console.tenant))


def live_rooms(tenant: str) -> list[dict]:
    """Each live room of the tenant's (by the ownership rule, as GET /livekit/rooms) with its
    participants (as GET /livekit/rooms/{name}), in the tenant's own names."""
    state = service_state()
    moderator, presets = state.moderator, state.settings.role_presets
    found = []
    for room in moderator.list_rooms(tenant):
        try:
            room, participants = moderator.room(tenant, room.name)
        except (RoomNotFound, LiveKitNotFound):
            continue  # it ended meanwhile
        people = []
        for info in participants:
            person = participant_schema.dump(info)
            person["role"] = role_of(person, presets)
            person["joined"] = clock_text(info.joined_at * 1000) if info.joined_at else ""
            people.append(person)
        found.append(
            {
                "name": own_name(tenant, room.name),
                "sid": room.sid,
                "num_participants": room.num_participants,
                "started": clock_text(room.creation_time * 1000) if room.creation_time else "",
                "participants": sorted(people, key=lambda person: person["identity"]),
            }
        )
    return sorted(found, key=lambda room: room["name"])


def role_of(person: dict, presets: dict) -> str:
    """The preset whose grants the participant's permissions are, else its minted role, else
    "custom"."""
    grants = person.get("permission") or {}
    for name, preset in presets.items():
        wanted = permission(preset)
        if all(
            grants.get(grant, False) == wanted.get(grant, False)
            for grant in ("can_publish", "can_subscribe", "can_publish_data", "hidden")
        ):
            return name
    return "custom"


def end_room():
    """End one of the tenant's rooms for everyone (DELETE /livekit/rooms/{name})."""
    room_name = form_name("room_name")
    confirmation = confirm(f"End the room {room_name!r} for everyone in it?")
    if confirmation is not None:
        return confirmation
    tenant = g.console.tenant
    acting(room_name)
    service_state().moderator.end_room(tenant, livekit_name(tenant, room_name))
    return redirect(url_for(".calls", notice="ended"), 303)


def remove_participant():
    """Remove a participant, durably (DELETE /livekit/participant)."""
    room_name, identity = form_name("room_name"), form_name("participant_identity")
    check_target(identity)
    confirmation = confirm(f"Remove {identity!r} from {room_name!r}?")
    if confirmation is not None:
        return confirmation
    tenant = g.console.tenant
    acting(room_name, participant_identity=identity)
    service_state().moderator.remove_participant(tenant, livekit_name(tenant, room_name), identity)
    return redirect(url_for(".calls", notice="removed"), 303)


def mute_track():
    """Mute or unmute one published track (POST /livekit/participant/mute)."""
    room_name, identity = form_name("room_name"), form_name("participant_identity")
    track_sid = form_name("track_sid")
    muted = request.form.get("muted") != "false"
    check_target(identity)
    verb = "Mute" if muted else "Unmute"
    confirmation = confirm(f"{verb} the track {track_sid} of {identity!r}?")
    if confirmation is not None:
        return confirmation
    tenant = g.console.tenant
    acting(room_name, participant_identity=identity)
    service_state().moderator.mute(
        tenant, livekit_name(tenant, room_name), identity, track_sid, None, muted
    )
    return redirect(url_for(".calls", notice="muted" if muted else "unmuted"), 303)


def set_role():
    """Give a connected participant a role's permissions live (POST
    /livekit/participant/permissions with `role`)."""
    room_name, identity = form_name("room_name"), form_name("participant_identity")
    role = request.form.get("role", "")
    presets = service_state().settings.role_presets
    if role not in presets:
        raise InvalidRequest(f"unknown role; one of: {', '.join(sorted(presets))}")
    if g.roles is not None and role not in g.roles:
        raise RoleForbidden(f"the session does not allow the role {role!r}")
    check_target(identity)
    confirmation = confirm(f"Make {identity!r} a {role}?")
    if confirmation is not None:
        return confirmation
    tenant = g.console.tenant
    acting(room_name, participant_identity=identity)
    service_state().moderator.set_permissions(
        tenant, livekit_name(tenant, room_name), identity, permission(presets[role])
    )
    return redirect(url_for(".calls", notice="role"), 303)


# Usage.


def usage():
    """The tenant's usage over a period: a chart per hour or day, a table per room, the
    quotas beside their use."""
    start_ms, end_ms, step = usage_period()
    tenant = g.console.tenant
    rule = service_state().issuer.usage
    report = rule.report(tenant, start_ms, end_ms)
    return render_template(
        "console/usage.html",
        report=report,
        series=usage_series(tenant, start_ms, end_ms, step),
        quotas=quotas(tenant),
        start_day=day_text(start_ms),
        end_day=day_text(end_ms - 1),
        step=step,
        csv_query={"from": report["from"], "to": report["to"]},
    )


def usage_csv():
    """Exactly what GET /livekit/usage returns for the same `from` and `to`, as CSV: a row
    per room, then the totals (an empty room name: no room has one)."""
    start_ms, end_ms, _step = usage_period()
    report = service_state().issuer.usage.report(g.console.tenant, start_ms, end_ms)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = ("room_name", "participant_seconds", "room_seconds", "peak_participants")
    writer.writerow(("from", "to", *columns, "participants"))
    for room in report["rooms"]:
        writer.writerow(
            (report["from"], report["to"], *(room[c] for c in columns), room["participants"])
        )
    writer.writerow(
        (report["from"], report["to"], "", report["participant_seconds"], report["room_seconds"])
        + ("", "")
    )
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="usage.csv"'},
    )


def usage_period() -> tuple[int, int, str]:
    """(from, to, step) of the request: `from` and `to` as RFC 3339 times or dates (a date
    `to` includes its day); default this month so far (UTC); `step` hour or day."""
    store = service_state().issuer.usage.store
    now = store.time_ms()
    end = read_time("to", now, whole_day=True)
    start = read_time("from", month_start(end), whole_day=False)
    if start >= end:
        raise InvalidRequest("the period is invalid: 'from' must be before 'to'")
    step = request.args.get("step", "day")
    if step not in ("hour", "day"):
        raise InvalidRequest("the step is one of: hour, day")
    return start, end, step


def read_time(field: str, default: int, whole_day: bool) -> int:
    """A time (ms) from the query: an RFC 3339 time, or a date (YYYY-MM-DD, UTC: its start,
    or with `whole_day` its end); 400 naming a bad one."""
    text = request.args.get(field, "").strip()
    if not text:
        return default
    try:
        if len(text) == 10:
            moment = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
            return int(moment.timestamp() * 1000) + (DAY_MS if whole_day else 0)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"{field!r} is not a date or an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise InvalidRequest(f"{field!r} needs a time zone")
    return int(moment.timestamp() * 1000)


def usage_series(tenant: str, start: int, end: int, step: str) -> dict:
    """Participant- and room-minutes per hour or day over [start, end), from one read of the
    usage records (the report's own arithmetic, per bucket)."""
    rule = service_state().issuer.usage
    now, rooms, sessions = rule.store.usage(tenant, start, end)
    size = HOUR_MS if step == "hour" and (end - start) // HOUR_MS <= MOST_BUCKETS else DAY_MS
    first = start - start % size
    series: dict = {"step": "hour" if size == HOUR_MS else "day", "times": [], "participant": []}
    series["room"] = []
    bucket = first
    while bucket < end and len(series["times"]) <= MOST_BUCKETS:
        found = add_up(
            now, rooms, sessions, max(bucket, start), min(bucket + size, end), lambda r: r.name
        )
        series["times"].append(bucket // 1000)
        series["participant"].append(round(found["participant_seconds"] / 60, 2))
        series["room"].append(round(found["room_seconds"] / 60, 2))
        bucket += size
    return series


def quotas(tenant: str) -> list[dict]:
    """Each quota of the tenant's (its record's, else the settings', lowered by the session's
    JWT's claims), with its use now: rooms in use as the quota counts them, the fullest live
    room's participants."""
    state = service_state()
    rule = state.issuer.usage
    limits = rule.limits(tenant, g.console.quotas)
    live = rule.rooms_in_use(tenant)
    fullest: int | None = None
    try:
        fullest = max(
            (room.num_participants for room in state.moderator.list_rooms(tenant)), default=0
        )
    except ApiError:
        fullest = None  # LiveKit did not answer: the use is not known now
    return [
        {"name": "Live rooms at once", "use": len(live), "limit": limits.max_rooms},
        {
            "name": "Participants in one room (the fullest now)",
            "use": fullest,
            "limit": limits.max_participants,
        },
    ]


# Webhooks.


def webhooks(secret: dict | None = None, status: int = 200):
    """The tenant's endpoints and the delivery log (by endpoint and status)."""
    tenant = g.console.tenant
    hooks = service_state().tenant_webhooks
    endpoint_id = request.args.get("endpoint_id") or None
    status_filter = request.args.get("status") or None
    if status_filter is not None and status_filter not in DELIVERY_STATUSES:
        raise InvalidRequest(f"unknown delivery status; one of: {', '.join(DELIVERY_STATUSES)}")
    endpoints = endpoint_schema.dump(hooks.endpoints(tenant), many=True)
    deliveries = delivery_schema.dump(
        hooks.deliveries(tenant, endpoint_id, status_filter), many=True
    )
    return (
        render_template(
            "console/webhooks.html",
            endpoints=endpoints,
            deliveries=deliveries,
            endpoint_id=endpoint_id or "",
            status=status_filter or "",
            statuses=DELIVERY_STATUSES,
            event_types=EVENT_TYPES,
            secret=secret,
        ),
        status,
    )


def add_endpoint():
    """Subscribe a URL (POST /livekit/webhook-endpoints); its secret is shown on this page
    only."""
    fields: dict[str, object] = {
        "url": request.form.get("url", "").strip(),
        "description": request.form.get("description", ""),
    }
    events = request.form.getlist("events")
    if events:
        fields["events"] = events
    try:
        loaded = endpoint_request.load(fields)
    except ValidationError as exc:
        raise InvalidRequest(f"the endpoint is invalid: {exc.messages}") from None
    acting("")
    endpoint, secret = service_state().tenant_webhooks.subscribe(
        g.console.tenant, loaded["url"], loaded.get("events"), loaded["description"]
    )
    acting(endpoint.id)
    return webhooks({"endpoint_id": endpoint.id, "secret": secret, "new": True}, 201)


def rotate_secret(endpoint_id: str):
    """A new secret for an endpoint; the old one signs too for 24 h. Shown once, here."""
    confirmation = confirm(f"Rotate the secret of {endpoint_id}? The old one signs for 24 h.")
    if confirmation is not None:
        return confirmation
    acting(endpoint_id)
    secret = service_state().tenant_webhooks.rotate_secret(g.console.tenant, endpoint_id)
    return webhooks({"endpoint_id": endpoint_id, "secret": secret, "new": False})


def test_endpoint(endpoint_id: str):
    """Send a webhook.test event to an endpoint."""
    service_state().tenant_webhooks.send_test(g.console.tenant, endpoint_id)
    return redirect(url_for(".webhooks", endpoint_id=endpoint_id, notice="tested"), 303)


def delete_endpoint(endpoint_id: str):
    """Unsubscribe an endpoint."""
    confirmation = confirm(f"Delete the endpoint {endpoint_id}? Its pending deliveries fail.")
    if confirmation is not None:
        return confirmation
    acting(endpoint_id)
    service_state().tenant_webhooks.unsubscribe(g.console.tenant, endpoint_id)
    return redirect(url_for(".webhooks", notice="deleted"), 303)


def set_endpoint_enabled(endpoint_id: str):
    """Disable an endpoint (its deliveries wait) or enable it again (what waited is sent,
    oldest first): what PATCH /livekit/webhook-endpoints/{id} `{"enabled"}` does."""
    wanted = request.form.get("enabled", "")
    if wanted not in ("true", "false"):
        raise InvalidRequest("enabled is true or false")
    enabled = wanted == "true"
    question = (
        f"Enable the endpoint {endpoint_id}? What waited for it is sent, oldest first."
        if enabled
        else f"Disable the endpoint {endpoint_id}? Its deliveries wait until it is enabled."
    )
    confirmation = confirm(question)
    if confirmation is not None:
        return confirmation
    acting(endpoint_id, enabled=enabled)
    service_state().tenant_webhooks.set_enabled(g.console.tenant, endpoint_id, enabled)
    notice = "enabled" if enabled else "disabled"
    return redirect(url_for(".webhooks", endpoint_id=endpoint_id, notice=notice), 303)


def retry_delivery(delivery_id: str):
    """Deliver one again, now (POST /livekit/webhook-deliveries/{id}/retry)."""
    service_state().tenant_webhooks.retry(g.console.tenant, delivery_id)
    return redirect(url_for(".webhooks", notice="retried"), 303)


# Audit.


def audit():
    """The tenant's audit trail, newest first (as GET /livekit/audit), filtered by action and
    outcome (`ok`, any other, or one error code)."""
    entries = service_state().tenants.audit(g.console.tenant)
    action = request.args.get("action") or ""
    outcome = request.args.get("outcome") or ""
    actions = sorted({entry["action"] for entry in entries})
    outcomes = sorted({entry["outcome"] for entry in entries} - {"ok"})
    shown = [
        entry
        for entry in entries
        if (not action or entry["action"] == action)
        and (
            not outcome
            or entry["outcome"] == outcome
            or (outcome == NOT_OK and entry["outcome"] != "ok")
        )
    ]
    for entry in shown:
        entry["detail_text"] = ", ".join(f"{k}: {v}" for k, v in sorted(entry["detail"].items()))
    return render_template(
        "console/audit.html",
        entries=shown,
        total=len(entries),
        actions=actions,
        outcomes=outcomes,
        action=action,
        outcome=outcome,
        not_ok=NOT_OK,
    )


# What the views share.


def confirm(question: str, back: str | None = None):
    """None when the form was confirmed; else the page that asks `question` and posts the same
    form again, confirmed (the page's script asks in a dialog instead, and confirms); its
    Cancel goes `back` (default: the console's start)."""
    if request.form.get(CONFIRMED) == "yes":
        return None
    fields = [(k, v) for k, v in request.form.items(multi=True) if k not in (CSRF_FIELD,)]
    return render_template(
        "console/confirm.html",
        question=question,
        action=request.path,
        fields=fields,
        back=back or url_for(".start"),
    )


def form_name(field: str) -> str:
    """A name from the form (a room name, an identity, a track sid): LiveKit's rules; 400."""
    try:
        return name_field.deserialize(request.form.get(field))
    except ValidationError:
        raise InvalidRequest(f"{field} is missing or invalid") from None


def livekit_name(tenant: str, room_name: str) -> str:
    """LiveKit's name for one of the tenant's room names (the same with shared names)."""
    return service_state().issuer.livekit_name(tenant, room_name)


def own_name(tenant: str, name: str) -> str:
    """The tenant's own name for LiveKit's room name."""
    issuer = service_state().issuer
    if issuer.ownership is not None and issuer.ownership.per_tenant:
        return issuer.ownership.own_name(tenant, name) or name
    return name


def clock_text(ms: int) -> str:
    """A time as the pages show it (UTC, to the second)."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def day_text(ms: int) -> str:
    """The UTC date of `ms`, as a date input takes it."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def month_start(ms: int) -> int:
    """The first instant (UTC) of the month of `ms`."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return int(moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)


participant_schema = ParticipantInfoSchema()
endpoint_schema = WebhookEndpointSchema()
endpoint_request = WebhookEndpointRequestSchema()
delivery_schema = WebhookDeliverySchema()
name_field = LiveKitName(required=True)
