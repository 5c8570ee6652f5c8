"""Scopes: what the bearer of a tenant JWT may do, declared once (no Flask).

The claim named by AUTH_SCOPES_CLAIM (default `scope`) lists them, as RFC 9068's space-separated
string or as a list of strings. A JWT without the claim may do everything, unless it carries the
roles claim (an end user's JWT): then it may only mint tokens. The scope each route needs is
declared with the route, in the route table (tokensvc/http/routes.py).
"""

TOKENS_CREATE = "tokens:create"
ROOMS_READ = "rooms:read"
ROOMS_WRITE = "rooms:write"
PARTICIPANTS_WRITE = "participants:write"
WEBHOOKS_READ = "webhooks:read"
WEBHOOKS_WRITE = "webhooks:write"
USAGE_READ = "usage:read"
CONSOLE_OPEN = "console:open"
AUDIT_READ = "audit:read"

#: Every scope and what it allows.
SCOPES = {
    TOKENS_CREATE: "mint participant tokens",
    ROOMS_READ: "list the tenant's rooms and inspect one",
    ROOMS_WRITE: "end one of the tenant's rooms",
    PARTICIPANTS_WRITE: "remove, mute and re-permission any participant of the tenant's rooms",
    WEBHOOKS_READ: "list the tenant's webhook endpoints and their deliveries",
    WEBHOOKS_WRITE: (
        "subscribe, unsubscribe, rotate, test, disable or enable and retry the tenant's webhooks"
    ),
    USAGE_READ: "read the tenant's usage",
    CONSOLE_OPEN: "open the tenant's console (its pages then allow what the other scopes allow)",
    AUDIT_READ: "read the tenant's audit trail",
}

#: What a read-only console session may do (the operator opens a tenant's console with these).
READ_SCOPES = frozenset({ROOMS_READ, USAGE_READ, WEBHOOKS_READ, AUDIT_READ})

#: Scopes a bearer bound to an identity (AUTH_IDENTITY_CLAIM) may do without, on its own
#: identity only: it may leave, mute itself and change its own permissions (within its roles).
OWN_IDENTITY_SCOPES = frozenset({PARTICIPANTS_WRITE})

#: What a JWT with the roles claim and without the scopes claim may do.
ROLES_ONLY = frozenset({TOKENS_CREATE})
EVERY_SCOPE = frozenset(SCOPES)


def claimed_scopes(value) -> frozenset:
    """The scopes a claim value lists (a space-separated string or a list of strings); scopes
    this service does not know are left out. ValueError for any other value."""
    if isinstance(value, str):
        names = value.split(" ")
    elif isinstance(value, list) and all(isinstance(name, str) for name in value):
        names = value
    else:
        raise ValueError("is not a space-separated string or a list of scopes")
    return frozenset(names) & EVERY_SCOPE


def granted_scopes(claim, has_claim: bool, has_roles: bool) -> frozenset:
    """What a bearer may do: the claim's scopes; without the claim every scope, or only
    `tokens:create` when the JWT carries the roles claim."""
    if has_claim:
        return claimed_scopes(claim)
    return ROLES_ONLY if has_roles else EVERY_SCOPE
