"""The operator's console (`/admin/console`): every tenant's status, plan, live rooms and
usage this month; suspend and resume, through `Tenants` exactly as the admin API (so the audit
trail keeps them); and a tenant's console opened read-only.

It is behind ADMIN_TOKEN: 404 when that is unset, as the admin API. The operator signs in by
pasting the token (compared in constant time) into a form whose CSRF token is bound to a nonce
cookie; the session is a cookie of the console's kind, marked operator, signed with a key
derived from ADMIN_TOKEN (sessions.py), HttpOnly, SameSite=Strict, for at most
OPERATOR_SESSION_SECONDS; every POST carries its CSRF token. Nobody may frame it."""

import hmac
import logging
import secrets
import time

from flask import Blueprint, Response, g, redirect, render_template, request, url_for
from werkzeug.exceptions import Forbidden, HTTPException, NotFound, default_exceptions

from ..auth import tenant_problem
from ..context import service_state
from ..errors import InvalidRequest, Unauthorized
from ..scopes import READ_SCOPES
from ..tenants import OPERATOR, Actor
from ..usage import format_time
from .sessions import (
    OPERATOR_SALT,
    console_key,
    csrf_matches,
    csrf_token,
    login_matches,
    login_token,
    operator_key,
    operator_session,
    read_only_session,
    seal,
    unseal,
)
from .views import (
    CSRF_FIELD,
    confirm,
    month_start,
    page_headers,
    render_error,
    set_session_cookie,
)

log = logging.getLogger(__name__)

#: The operator's console's blueprint ("tokensvc.operator.<view>"); its static files are the
#: console's.
bp = Blueprint("operator", __name__, url_prefix="/admin/console", template_folder="templates")

#: The operator's session cookie, and the login form's nonce cookie.
COOKIE, LOGIN_COOKIE = "tokensvc_operator", "tokensvc_operator_login"
#: How long the login form may wait, seconds.
LOGIN_FORM_SECONDS = 600
#: The longest suspension reason kept (as the admin API).
MAX_REASON_CHARS = 1000
#: Who the audit trail says acted.
CONSOLE_OPERATOR = Actor(OPERATOR, "admin-console")
#: What a redirect after an action says, by key.
NOTICES = {
    "suspended": "The tenant was suspended: its requests are refused and its live rooms ended.",
    "resumed": "The tenant was resumed.",
    "signed-out": "Signed out.",
}


def gate(gates: dict):
    """Before each request of the operator's console: 404 without ADMIN_TOKEN (or without the
    tenants' storage); the operator's session from its cookie (a page asks for the token
    without one, a POST is 401); the CSRF token of a POST (403)."""
    from .routes import OPERATOR_LOGIN

    state = service_state()
    if state.settings.admin_token is None or state.tenants is None:
        raise NotFound()
    endpoint = request.endpoint.rpartition(".")[2] if request.endpoint else ""
    key = operator_key(state.settings)
    g.console, g.operator_key = None, key
    g.operator = unseal(key, request.cookies.get(COOKIE), time.time(), OPERATOR_SALT)
    if gates.get(endpoint) is OPERATOR_LOGIN:
        return None
    if g.operator is None:
        if request.method == "GET":
            return redirect(url_for(".login_form"), 303)
        raise Unauthorized("no operator session: sign in again")
    if request.method == "POST" and not csrf_matches(key, g.operator, request.form.get(CSRF_FIELD)):
        raise Forbidden("the form's CSRF token is missing or wrong: reload the page")
    return None


@bp.after_request
def operator_headers(response: Response) -> Response:
    """The console's headers; nobody may frame the operator's console."""
    return page_headers(response, ())


bp.register_error_handler(HTTPException, render_error)
for _status in default_exceptions:
    bp.register_error_handler(_status, render_error)


@bp.context_processor
def operator_context() -> dict:
    """What the operator's templates may use: the session, its CSRF token, `may` (nothing of a
    tenant's)."""
    session = getattr(g, "operator", None)
    found: dict = {"session": None, "pages": (), "may": lambda scope: False}
    found["operator_session"] = session
    found["csrf_field"] = CSRF_FIELD
    found["notice"] = NOTICES.get(request.args.get("notice", ""))
    if session is not None:
        found["csrf"] = csrf_token(g.operator_key, session)
    return found


# Signing in and out.


def login_form(status: int = 200, problem: str | None = None):
    """The form the operator pastes ADMIN_TOKEN into (signed in already: the tenants)."""
    if g.operator is not None and problem is None:
        return redirect(url_for(".tenants"), 303)
    nonce = secrets.token_urlsafe(16)
    response = Response(
        render_template(
            "console/operator_login.html",
            login_token=login_token(g.operator_key, nonce),
            problem=problem,
        ),
        status,
    )
    response.set_cookie(LOGIN_COOKIE, nonce, max_age=LOGIN_FORM_SECONDS, **cookie_attributes())
    return response


def login():
    """Sign in with ADMIN_TOKEN (constant-time compare): a new operator session."""
    key = g.operator_key
    if not login_matches(key, request.cookies.get(LOGIN_COOKIE), request.form.get(CSRF_FIELD)):
        raise Forbidden("the form's CSRF token is missing or wrong: reload the page")
    settings = service_state().settings
    sent = request.form.get("admin_token", "").strip()
    assert settings.admin_token is not None
    if not hmac.compare_digest(sent.encode(), settings.admin_token.encode()):
        log.warning("operator console: a sign-in with a wrong token was refused")
        return login_form(401, "That is not the operator's token (ADMIN_TOKEN).")
    now = time.time()
    session = operator_session(now, settings.console_session_ttl)
    response = redirect(url_for(".tenants"), 303)
    response.set_cookie(
        COOKIE,
        seal(key, session, OPERATOR_SALT),
        max_age=max(1, session.expires - int(now)),
        **cookie_attributes(),
    )
    response.delete_cookie(LOGIN_COOKIE, path=url_for(".tenants"))
    log.info("operator console: signed in")
    return response


def logout():
    """End the operator's session in this browser."""
    response = redirect(url_for(".login_form", notice="signed-out"), 303)
    response.delete_cookie(COOKIE, path=url_for(".tenants"))
    return response


def cookie_attributes() -> dict:
    """The operator's cookies: on its path, HttpOnly, SameSite=Strict, Secure (not with
    DEV_MODE, for plain-http development)."""
    return {
        "path": url_for(".tenants"),
        "secure": not service_state().settings.dev_mode,
        "httponly": True,
        "samesite": "Strict",
    }


# The tenants.


def tenants():
    """Every tenant with a record or with usage this month: status, plan, live rooms, usage."""
    state = service_state()
    rule = state.issuer.usage
    now = rule.store.time_ms()
    start = month_start(now)
    records = {record.id: record for record in state.tenants.store.all()}
    used = {row["tenant"]: row for row in rule.report_all(start, now)}
    rows = []
    for tenant in sorted(set(records) | set(used)):
        record = records.get(tenant)
        shown = state.tenants.render(tenant, record) if record else state.tenants.show(tenant)
        usage = used.get(tenant, {})
        rows.append(
            {
                **shown,
                "changed_at": shown["updated_at"],
                "live_rooms": len(rule.rooms_in_use(tenant)),
                "participant_minutes": round(usage.get("participant_seconds", 0) / 60, 1),
                "room_minutes": round(usage.get("room_seconds", 0) / 60, 1),
            }
        )
    return render_template(
        "console/operator.html",
        rows=rows,
        since=format_time(start),
        now=format_time(now),
        max_reason=MAX_REASON_CHARS,
    )


def suspend(tenant: str):
    """Suspend a tenant (with a reason), as POST /admin/tenants/{tenant}/suspend."""
    tenant = tenant_id(tenant)
    reason = request.form.get("reason", "").strip()
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidRequest(f"the reason is longer than {MAX_REASON_CHARS} characters")
    confirmation = confirm(
        f"Suspend {tenant!r}? Its requests are refused and its live rooms end now.",
        back=url_for(".tenants"),
    )
    if confirmation is not None:
        return confirmation
    service_state().tenants.suspend(tenant, reason, CONSOLE_OPERATOR)
    return redirect(url_for(".tenants", notice="suspended"), 303)


def resume(tenant: str):
    """Resume a suspended tenant, as POST /admin/tenants/{tenant}/resume."""
    tenant = tenant_id(tenant)
    confirmation = confirm(f"Resume {tenant!r}?", back=url_for(".tenants"))
    if confirmation is not None:
        return confirmation
    service_state().tenants.resume(tenant, CONSOLE_OPERATOR)
    return redirect(url_for(".tenants", notice="resumed"), 303)


def view(tenant: str):
    """Open the tenant's console read-only in this browser: a tenant session with the read
    scopes only, no longer than the operator's; the tenant's audit trail keeps it."""
    tenant = tenant_id(tenant)
    state = service_state()
    now = time.time()
    session = read_only_session(
        tenant, READ_SCOPES, g.operator, now, state.settings.console_session_ttl
    )
    state.tenants.add_entry(
        CONSOLE_OPERATOR, tenant, "console.view", tenant, "ok", {"scopes": sorted(READ_SCOPES)}
    )
    response = redirect(url_for("tokensvc.console.start"), 303)
    set_session_cookie(response, console_key(state.settings), session, now)
    return response


def tenant_id(tenant: str) -> str:
    """A tenant id from the path, as the authentication service would sign it; 400 otherwise."""
    problem = tenant_problem(tenant)
    if problem:
        raise InvalidRequest(f"the tenant id is invalid: it {problem}")
    return tenant
