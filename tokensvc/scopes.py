"""Scopes: what the bearer of a tenant JWT may do, declared once (no Flask).

The claim named by AUTH_SCOPES_CLAIM (default `scope`) lists them, as RFC 9068's space-separated
string or as a list of strings. A JWT without the claim may do everything, unless it carries the
roles claim (an end user's JWT): then it may only mint tokens. The routes (auth.py's hook), the
OpenAPI document's security requirements and docs/security.md all read the tables below.
"""

TOKENS_CREATE = "tokens:create"
ROOMS_READ = "rooms:read"
ROOMS_WRITE = "rooms:write"
PARTICIPANTS_WRITE = "participants:write"
WEBHOOKS_READ = "webhooks:read"
WEBHOOKS_WRITE = "webhooks:write"
USAGE_READ = "usage:read"

#: Every scope and what it allows.
SCOPES = {
    TOKENS_CREATE: "mint participant tokens",
    ROOMS_READ: "list the tenant's rooms and inspect one",
    ROOMS_WRITE: "end one of the tenant's rooms",
    PARTICIPANTS_WRITE: "remove, mute and re-permission any participant of the tenant's rooms",
    WEBHOOKS_READ: "list the tenant's webhook endpoints and their deliveries",
    WEBHOOKS_WRITE: "subscribe, unsubscribe, rotate, test and retry the tenant's webhooks",
    USAGE_READ: "read the tenant's usage",
}

#: The scope each route needs: the view's name -> (method, path, scope).
ROUTE_SCOPES = {
    "issue_token": ("POST", "/livekit/token", TOKENS_CREATE),
    "list_rooms": ("GET", "/livekit/rooms", ROOMS_READ),
    "get_room": ("GET", "/livekit/rooms/{room_name}", ROOMS_READ),
    "end_room": ("DELETE", "/livekit/rooms/{room_name}", ROOMS_WRITE),
    "remove_participant": ("DELETE", "/livekit/participant", PARTICIPANTS_WRITE),
    "mute_track": ("POST", "/livekit/participant/mute", PARTICIPANTS_WRITE),
    "set_permissions": ("POST", "/livekit/participant/permissions", PARTICIPANTS_WRITE),
    "usage": ("GET", "/livekit/usage", USAGE_READ),
    "create_webhook_endpoint": ("POST", "/livekit/webhook-endpoints", WEBHOOKS_WRITE),
    "list_webhook_endpoints": ("GET", "/livekit/webhook-endpoints", WEBHOOKS_READ),
    "delete_webhook_endpoint": (
        "DELETE",
        "/livekit/webhook-endpoints/{endpoint_id}",
        WEBHOOKS_WRITE,
    ),
    "rotate_webhook_secret": (
        "POST",
        "/livekit/webhook-endpoints/{endpoint_id}/rotate-secret",
        WEBHOOKS_WRITE,
    ),
    "test_webhook_endpoint": (
        "POST",
        "/livekit/webhook-endpoints/{endpoint_id}/test",
        WEBHOOKS_WRITE,
    ),
    "list_webhook_deliveries": ("GET", "/livekit/webhook-deliveries", WEBHOOKS_READ),
    "retry_webhook_delivery": (
        "POST",
        "/livekit/webhook-deliveries/{delivery_id}/retry",
        WEBHOOKS_WRITE,
    ),
}

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


def scope_of(view: str) -> str:
    """The scope the route of `view` needs (KeyError for a route with no entry: fail closed)."""
    return ROUTE_SCOPES[view][2]
