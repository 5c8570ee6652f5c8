"""The operator's API: tenants' records (plans, suspension) and the whole audit trail, behind
`Authorization: Bearer <ADMIN_TOKEN>` (compared in constant time). Without ADMIN_TOKEN the
routes answer 404, as if they were not there; any other bearer, a tenant's JWT included, 401.
Every action goes through `Tenants` (tenants.py), as the CLI's do."""

import hmac

from flask import Blueprint, request
from werkzeug.exceptions import NotFound

from ..auth import tenant_problem
from ..context import service_state
from ..errors import InvalidRequest, Unauthorized
from ..tenants import API_OPERATOR, AUDIT_LISTED_MAX, parse_limits
from .inputs import read_json_object

#: Its routes are registered from the route table (routes.py).
bp = Blueprint("admin", __name__)
#: The longest suspension reason kept.
MAX_REASON_CHARS = 1000


@bp.before_request
def check_admin_token():
    """404 without ADMIN_TOKEN (or without the tenants' storage); 401 unless the bearer is
    ADMIN_TOKEN."""
    state = service_state()
    expected = state.settings.admin_token
    if expected is None or state.tenants is None:
        raise NotFound()
    sent = request.headers.get("Authorization", "")
    if not hmac.compare_digest(sent.encode(), f"Bearer {expected}".encode()):
        raise Unauthorized("the operator's bearer token (ADMIN_TOKEN) is required")


def load_tenant_id(tenant: str) -> str:
    """A tenant id from the path, as the authentication service would sign it; 400 otherwise."""
    problem = tenant_problem(tenant)
    if problem:
        raise InvalidRequest("the tenant id is invalid", fields={"tenant": [f"It {problem}."]})
    return tenant


def list_tenants():
    """Every tenant with a record."""
    return {"tenants": service_state().tenants.list_all()}


def get_tenant(tenant):
    """One tenant: its overrides, what applies, its status (with or without a record)."""
    return service_state().tenants.show(load_tenant_id(tenant))


def update_tenant(tenant):
    """Set some of a tenant's limits (`null` removes an override)."""
    tenant = load_tenant_id(tenant)
    limits = parse_limits(read_json_object())
    return service_state().tenants.set_limits(tenant, limits, API_OPERATOR)


def suspend_tenant(tenant):
    """Suspend a tenant: its requests are refused and its live rooms end at once."""
    tenant = load_tenant_id(tenant)
    reason = read_json_object().get("reason", "") if request.get_data(cache=True) else ""
    if not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS:
        raise InvalidRequest(
            "the reason is invalid",
            fields={"reason": [f"Must be text of at most {MAX_REASON_CHARS} characters."]},
        )
    return service_state().tenants.suspend(tenant, reason, API_OPERATOR)


def resume_tenant(tenant):
    """Resume a suspended tenant."""
    return service_state().tenants.resume(load_tenant_id(tenant), API_OPERATOR)


def admin_audit():
    """The newest entries of the whole trail (`?tenant=` for one tenant's; `?limit=`)."""
    tenant = request.args.get("tenant") or None
    return {"entries": service_state().tenants.audit(tenant, load_limit())}


def load_limit() -> int:
    """`?limit=`: a whole number from 1 to AUDIT_LISTED_MAX (default: that)."""
    text = request.args.get("limit")
    if text is None:
        return AUDIT_LISTED_MAX
    if not text.isdigit() or not 1 <= int(text) <= AUDIT_LISTED_MAX:
        raise InvalidRequest(
            "the limit is invalid",
            fields={"limit": [f"Must be a whole number from 1 to {AUDIT_LISTED_MAX}."]},
        )
    return int(text)
