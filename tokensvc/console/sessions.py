"""The console's way in, without Flask: one-use tickets, the signed session a ticket turns into,
and the CSRF token of a session.

A tenant's backend asks `POST /livekit/console-sessions` for a URL; its ticket is 32 random
bytes, kept in the storage (any instance redeems it) by its SHA-256 only, for TICKET_TTL_MS on
the storage's clock, once. Redeemed, it becomes a session: the tenant, what its JWT allowed
(scopes, roles, a bound identity, quota claims) and an expiry no later than the JWT's and no
later than CONSOLE_SESSION_TTL from now, signed with the console's key (itsdangerous, HMAC
SHA-256) into an HttpOnly cookie. The key is CONSOLE_SECRET_KEY, or, when it is unset, derived
from LIVEKIT_API_SECRET (HMAC-SHA256 of a fixed label): every instance of a deployment shares
it, and changing either secret ends every session.
"""

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from itsdangerous import BadSignature, URLSafeSerializer

from ..config import Settings
from ..errors import ConsoleNotConfigured

#: How long a ticket may wait to be opened, ms (storage clock).
TICKET_TTL_MS = 60_000
#: The label the console's key is derived under from LIVEKIT_API_SECRET.
KEY_LABEL = b"tokensvc console sessions v1"
#: The salts that keep a session's signature from passing for anything else signed with the key.
SESSION_SALT = "tokensvc.console.session"
CSRF_SALT = b"tokensvc.console.csrf"


def console_key(settings: Settings) -> bytes:
    """The key sessions are signed with: CONSOLE_SECRET_KEY, else one derived from
    LIVEKIT_API_SECRET; 500 console_not_configured with neither."""
    if settings.console_secret_key:
        return settings.console_secret_key.encode()
    if settings.livekit_api_secret:
        return hmac.new(settings.livekit_api_secret.encode(), KEY_LABEL, hashlib.sha256).digest()
    raise ConsoleNotConfigured()


@dataclass(frozen=True)
class ConsoleSession:
    """What a console session may do: the tenant's, with its JWT's scopes, roles (None: any),
    bound identity (None: any) and quota claims; until `expires` (epoch seconds); `sid` names
    the session (its CSRF token is derived from it)."""

    tenant: str
    scopes: frozenset
    roles: tuple | None
    identity: str | None
    expires: int
    sid: str
    quotas: Mapping = field(default_factory=dict)

    def may(self, scope: str) -> bool:
        """Whether the session has `scope`."""
        return scope in self.scopes

    def as_dict(self) -> dict:
        """The session as JSON-ready fields."""
        return {
            "tenant": self.tenant,
            "scopes": sorted(self.scopes),
            "roles": list(self.roles) if self.roles is not None else None,
            "identity": self.identity,
            "expires": self.expires,
            "sid": self.sid,
            "quotas": dict(self.quotas),
        }

    @classmethod
    def from_dict(cls, fields: dict) -> "ConsoleSession":
        """A session from `as_dict`'s fields (KeyError, TypeError for anything else)."""
        roles = fields["roles"]
        return cls(
            str(fields["tenant"]),
            frozenset(fields["scopes"]),
            tuple(roles) if roles is not None else None,
            fields["identity"],
            int(fields["expires"]),
            str(fields["sid"]),
            dict(fields["quotas"]),
        )


def ticket_id(ticket: str) -> str:
    """The id a ticket is kept under: its SHA-256 (the storage never holds the ticket)."""
    return hashlib.sha256(ticket.encode("utf-8", "surrogatepass")).hexdigest()


def issue_ticket(store, session: ConsoleSession) -> str:
    """A new ticket for `session` (its `expires` is the JWT's, its sid unset yet), kept in
    `store` for TICKET_TTL_MS."""
    ticket = secrets.token_urlsafe(32)
    store.issue(ticket_id(ticket), json.dumps(session.as_dict()), TICKET_TTL_MS)
    return ticket


def redeem_ticket(store, ticket: str, now: float, ttl: int) -> ConsoleSession | None:
    """The session a ticket opens, once, expiring at the earlier of the JWT's expiry and `ttl`
    seconds from `now`; None for a ticket unknown, used, past its time or malformed, and for a
    JWT that has expired meanwhile."""
    if not ticket or len(ticket) > 128:
        return None
    payload = store.redeem(ticket_id(ticket))
    if payload is None:
        return None
    fields = json.loads(payload)
    expires = min(int(fields["expires"]), int(now) + ttl)
    if expires <= now:
        return None
    return ConsoleSession.from_dict(
        {**fields, "expires": expires, "sid": secrets.token_urlsafe(16)}
    )


def seal(key: bytes, session: ConsoleSession) -> str:
    """The session as a cookie's value, signed."""
    return URLSafeSerializer(key, salt=SESSION_SALT).dumps(session.as_dict())


def unseal(key: bytes, value: str | None, now: float) -> ConsoleSession | None:
    """The session a cookie carries, or None: absent, forged, malformed or expired."""
    if not value:
        return None
    try:
        session = ConsoleSession.from_dict(URLSafeSerializer(key, salt=SESSION_SALT).loads(value))
    except (BadSignature, KeyError, TypeError, ValueError):
        return None
    return session if session.expires > now else None


def csrf_token(key: bytes, session: ConsoleSession) -> str:
    """The session's CSRF token: a MAC of its sid (the same on every page of the session)."""
    return hmac.new(key, CSRF_SALT + session.sid.encode(), hashlib.sha256).hexdigest()


def csrf_matches(key: bytes, session: ConsoleSession, sent: str | None) -> bool:
    """Whether `sent` is the session's CSRF token (compared in constant time)."""
    return sent is not None and hmac.compare_digest(csrf_token(key, session), sent)
