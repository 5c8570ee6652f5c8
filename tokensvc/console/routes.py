"""The console's route tables: `CONSOLE_ROUTES`, each page and action of the tenant's console,
its method, path (under the console's `/console` prefix), view, the scope it needs and, for a
page, its place in the navigation; and `OPERATOR_ROUTES`, the operator's console's (under
`/admin/console`, behind ADMIN_TOKEN).

The console is not part of the JSON API, so it is not in the API's table (tokensvc/http/
routes.py, which the OpenAPI document and the bearer check read): it has a table of its own, and
tests/test_routes.py checks that every route the app serves is in one of the two. Its scopes are
the API's: a console session may do exactly what the JWT it was opened with may do through the
API, and every action goes through the same operations (moderation.py, webhooks.py, usage.py).
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from ..scopes import (
    AUDIT_READ,
    PARTICIPANTS_WRITE,
    ROOMS_READ,
    ROOMS_WRITE,
    USAGE_READ,
    WEBHOOKS_READ,
    WEBHOOKS_WRITE,
)
from . import operator, views


@dataclass(frozen=True)
class Gate:
    """A route that needs no scope, and why."""

    why: str


#: The way in (a ticket) and the static files: no session.
NO_SESSION = Gate("no session: the ticket or a static file")
#: Pages every session may see (the start page, leaving, the poll that notices a suspension).
ANY_SESSION = Gate("any console session")
#: The operator's console: an operator's session (ADMIN_TOKEN signed in).
OPERATOR_SESSION = Gate("the operator's session (signed in with ADMIN_TOKEN)")
#: The operator's way in: ADMIN_TOKEN itself, pasted into the form.
OPERATOR_LOGIN = Gate("the operator's sign-in: the form takes ADMIN_TOKEN")


@dataclass(frozen=True)
class ConsoleRoute:
    """One route of the console: `method` on `path` (werkzeug's rule syntax, under /console)
    served by `view` (named `name` when the view is Flask's own), needing `scope`; a page
    named `page` is listed in the navigation, in the table's order, for sessions with its
    scope; an action the audit trail keeps names its entry's action (`audit`, as the API's
    route for the same change names it)."""

    method: str
    path: str
    view: Callable | None
    scope: str | Gate
    page: str | None = None
    name: str | None = None
    audit: str | None = None

    @property
    def endpoint(self) -> str:
        """The endpoint's name within the console's blueprint."""
        if self.name is not None:
            return self.name
        assert self.view is not None
        return self.view.__name__


CONSOLE_ROUTES: tuple[ConsoleRoute, ...] = (
    ConsoleRoute("GET", "/enter", views.enter, NO_SESSION),
    ConsoleRoute("GET", "/static/<path:filename>", None, NO_SESSION, name="static"),
    ConsoleRoute("GET", "/", views.start, ANY_SESSION),
    ConsoleRoute("POST", "/leave", views.leave, ANY_SESSION),
    ConsoleRoute("GET", "/alive", views.alive, ANY_SESSION),
    # Calls: the live rooms, refreshed by htmx from the fragment.
    ConsoleRoute("GET", "/calls", views.calls, ROOMS_READ, page="Calls"),
    ConsoleRoute("GET", "/calls/live", views.calls_live, ROOMS_READ),
    ConsoleRoute("POST", "/calls/end", views.end_room, ROOMS_WRITE, audit="rooms.end"),
    ConsoleRoute(
        "POST",
        "/calls/remove",
        views.remove_participant,
        PARTICIPANTS_WRITE,
        audit="participants.remove",
    ),
    ConsoleRoute(
        "POST", "/calls/mute", views.mute_track, PARTICIPANTS_WRITE, audit="participants.mute"
    ),
    ConsoleRoute(
        "POST",
        "/calls/role",
        views.set_role,
        PARTICIPANTS_WRITE,
        audit="participants.permissions",
    ),
    # Usage: the chart, the table per room, the quotas, and the CSV of GET /livekit/usage.
    ConsoleRoute("GET", "/usage", views.usage, USAGE_READ, page="Usage"),
    ConsoleRoute("GET", "/usage.csv", views.usage_csv, USAGE_READ),
    # Webhooks: endpoints (their status: the circuit breaker's) and the delivery log.
    ConsoleRoute("GET", "/webhooks", views.webhooks, WEBHOOKS_READ, page="Webhooks"),
    ConsoleRoute(
        "POST",
        "/webhooks/endpoints",
        views.add_endpoint,
        WEBHOOKS_WRITE,
        audit="webhook_endpoints.create",
    ),
    ConsoleRoute(
        "POST",
        "/webhooks/endpoints/<endpoint_id>/rotate",
        views.rotate_secret,
        WEBHOOKS_WRITE,
        audit="webhook_endpoints.rotate",
    ),
    ConsoleRoute(
        "POST", "/webhooks/endpoints/<endpoint_id>/test", views.test_endpoint, WEBHOOKS_WRITE
    ),
    ConsoleRoute(
        "POST",
        "/webhooks/endpoints/<endpoint_id>/delete",
        views.delete_endpoint,
        WEBHOOKS_WRITE,
        audit="webhook_endpoints.delete",
    ),
    ConsoleRoute(
        "POST",
        "/webhooks/endpoints/<endpoint_id>/enabled",
        views.set_endpoint_enabled,
        WEBHOOKS_WRITE,
        audit="webhook_endpoints.update",
    ),
    ConsoleRoute(
        "POST", "/webhooks/deliveries/<delivery_id>/retry", views.retry_delivery, WEBHOOKS_WRITE
    ),
    # Audit: the tenant's own trail, as GET /livekit/audit.
    ConsoleRoute("GET", "/audit", views.audit, AUDIT_READ, page="Audit"),
)

#: The operator's console, under /admin/console: 404 without ADMIN_TOKEN (operator.gate).
OPERATOR_ROUTES: tuple[ConsoleRoute, ...] = (
    ConsoleRoute("GET", "/login", operator.login_form, OPERATOR_LOGIN),
    ConsoleRoute("POST", "/login", operator.login, OPERATOR_LOGIN),
    ConsoleRoute("POST", "/logout", operator.logout, OPERATOR_SESSION),
    ConsoleRoute("GET", "/", operator.tenants, OPERATOR_SESSION),
    ConsoleRoute("POST", "/tenants/<tenant>/suspend", operator.suspend, OPERATOR_SESSION),
    ConsoleRoute("POST", "/tenants/<tenant>/resume", operator.resume, OPERATOR_SESSION),
    ConsoleRoute("POST", "/tenants/<tenant>/view", operator.view, OPERATOR_SESSION),
)

#: Each endpoint's scope (or Gate), by endpoint name within the blueprint.
ENDPOINT_SCOPES = {route.endpoint: route.scope for route in CONSOLE_ROUTES}
#: The audit trail's action of each audited endpoint, by endpoint name within the blueprint.
AUDITED = {route.endpoint: route.audit for route in CONSOLE_ROUTES if route.audit is not None}
#: The navigation: (endpoint, label, scope) of each page, in order.
PAGES = tuple(
    (route.endpoint, route.page, route.scope)
    for route in CONSOLE_ROUTES
    if route.page is not None and isinstance(route.scope, str)
)

# Register: the session gate (it reads each endpoint's scope from the table), then each route
# (the static files' route is the blueprint's own).
views.bp.before_request(partial(views.gate, ENDPOINT_SCOPES))
views.bp.after_request(partial(views.record_action, AUDITED))
for _route in CONSOLE_ROUTES:
    if _route.view is not None:
        views.bp.add_url_rule(_route.path, view_func=_route.view, methods=[_route.method])
operator.bp.before_request(
    partial(operator.gate, {route.endpoint: route.scope for route in OPERATOR_ROUTES})
)
for _route in OPERATOR_ROUTES:
    assert _route.view is not None
    operator.bp.add_url_rule(_route.path, view_func=_route.view, methods=[_route.method])
