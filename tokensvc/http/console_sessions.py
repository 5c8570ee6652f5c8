"""`POST /livekit/console-sessions`: a one-use URL into the tenant's console (scope
`console:open`), for the tenant's backend to hand to a browser or an iframe."""

import jwt
from flask import g, request, url_for

from ..console.sessions import ConsoleSession, console_key, issue_ticket
from ..context import service_state
from .inputs import require_tenant


def open_console_session():
    """A URL with a ticket that opens a console session, once, within 60 s; the session is
    the bearer's: its tenant, scopes, roles, bound identity, and no longer than its JWT."""
    tenant = require_tenant()
    state = service_state()
    console_key(state.settings)  # 500 console_not_configured before anything is written
    session = ConsoleSession(
        tenant,
        frozenset(g.scopes),
        tuple(g.roles) if g.roles is not None else None,
        g.identity,
        bearer_expiry(),
        "",
        dict(g.quotas),
        subject=g.get("subject") or "",
    )
    ticket = issue_ticket(state.console_tickets, session)
    return {"url": url_for("tokensvc.console.enter", ticket=ticket, _external=True)}, 201


def bearer_expiry() -> int:
    """The `exp` of the request's bearer JWT, which the tenant hook has verified already."""
    token = request.headers["Authorization"].strip().split()[-1]
    return int(jwt.decode(token, options={"verify_signature": False})["exp"])
