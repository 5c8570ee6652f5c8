"""A tenant's audit trail: `GET /livekit/audit` (audit:read) shows its own entries, and the
`api` blueprint's after-request hook keeps an entry for each management action a tenant's
bearer asks for (routes.py names them), with its outcome, refused ones included."""

import logging

from flask import g, request

from ..context import service_state
from ..errors import ApiError
from ..tenants import TENANT, Actor
from .admin import load_limit
from .inputs import require_tenant

log = logging.getLogger(__name__)

#: Answers that refuse a request before it acts (a field, the bearer, a scope, an identity, a
#: role, a suspension, a limit): not kept, since a refused request writes nothing.
REFUSALS = frozenset({400, 401, 403, 409, 413, 415})


def tenant_audit():
    """The tenant's own newest audit entries (`?limit=`)."""
    tenant = require_tenant()
    return {"entries": service_state().tenants.audit(tenant, load_limit())}


def record_action(actions: dict[str, str], response):
    """After a request of the `api` blueprint: when its view is one of `actions` (view name ->
    action) and a tenant asked, keep the audit entry: who (the tenant, its bearer's subject and
    bound identity), what, on what, the outcome (ok or the error code). A failure to keep it is
    logged; the answer stands (the action is done)."""
    action = actions.get((request.endpoint or "").rpartition(".")[2])
    tenant = g.get("tenant")
    state = service_state()
    if action is None or tenant is None or state.tenants is None:
        return response
    if response.status_code in REFUSALS:
        return response  # refused before acting: a refused request writes nothing
    outcome = "ok"
    document = response.get_json(silent=True) if response.is_json else None
    if response.status_code >= 400:
        outcome = (document or {}).get("code", str(response.status_code))
    view_args = request.view_args or {}
    target = g.get("room") or view_args.get("endpoint_id") or (document or {}).get("id") or ""
    detail = {}
    if g.get("participant"):
        detail["participant_identity"] = g.participant
    actor = Actor(TENANT, g.get("subject") or "", g.get("identity") or "")
    try:
        state.tenants.add_entry(actor, tenant, action, target, outcome, detail)
    except ApiError:
        log.warning("the audit entry of %s could not be kept (the storage failed)", action)
    return response
