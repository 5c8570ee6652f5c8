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

The operator's console (/admin/console) has sessions of the same kind, marked operator, signed
with a key derived from the console's and ADMIN_TOKEN (`operator_key`: changing or unsetting
ADMIN_TOKEN ends them) under a salt of their own, so neither kind passes for the other. An
operator may open a tenant's console read-only: a tenant session with the read scopes only,
marked as opened by the operator.
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
OPERATOR_SALT = "tokensvc.console.operator"
CSRF_SALT = b"tokensvc.console.csrf"
LOGIN_SALT = b"tokensvc.console.operator-login"
#: The label the operator's key is derived under from the console's key and ADMIN_TOKEN.
OPERATOR_LABEL = b"tokensvc operator console v1"
#: How long an operator's session lasts, seconds (never longer than CONSOLE_SESSION_TTL).
OPERATOR_SESSION_SECONDS = 15 * 60


def console_key(settings: Settings) -> bytes:
    """The key sessions are signed with: CONSOLE_SECRET_KEY, else one derived from
    LIVEKIT_API_SECRET; 500 console_not_configured with neither."""
    if settings.console_secret_key:
        return settings.console_secret_key.encode()
    if settings.livekit_api_secret:
        return hmac.new(settings.livekit_api_secret.encode(), KEY_LABEL, hashlib.sha256).digest()
    raise ConsoleNotConfigured()


def operator_key(settings: Settings) -> bytes:
    """The key the operator's sessions are signed with: derived from the console's key and
    ADMIN_TOKEN (a new ADMIN_TOKEN ends every operator session)."""
    assert settings.admin_token is not None
    token = hashlib.sha256(settings.admin_token.encode()).digest()
    return hmac.new(console_key(settings), OPERATOR_LABEL + token, hashlib.sha256).digest()


@dataclass(frozen=True)
class ConsoleSession:
    """What a console session may do: the tenant's, with its JWT's scopes, roles (None: any),
    bound identity (None: any) and quota claims; until `expires` (epoch seconds); `sid` names
    the session (its CSRF token is derived from it). `operator`: the operator's own session
    (no tenant), or a tenant's session the operator opened (read-only). `subject`: the JWT's
    subject, for the audit trail."""

    tenant: str
    scopes: frozenset
    roles: tuple | None
    identity: str | None
    expires: int
    sid: str
    quotas: Mapping = field(default_factory=dict)
    operator: bool = False
    subject: str = ""

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
            "operator": self.operator,
            "subject": self.subject,
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
            fields.get("operator") is True,
            str(fields.get("subject") or ""),
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
        {**fields, "expires": expires, "sid": new_sid(), "operator": False}
    )


def new_sid() -> str:
    """A new session's id."""
    return secrets.token_urlsafe(16)


def seal(key: bytes, session: ConsoleSession, salt: str = SESSION_SALT) -> str:
    """The session as a cookie's value, signed (`salt`: OPERATOR_SALT for the operator's)."""
    return URLSafeSerializer(key, salt=salt).dumps(session.as_dict())


def unseal(
    key: bytes, value: str | None, now: float, salt: str = SESSION_SALT
) -> ConsoleSession | None:
    """The session a cookie carries, or None: absent, forged, malformed or expired (`salt`:
    OPERATOR_SALT for the operator's, which is then marked operator and has no tenant)."""
    if not value:
        return None
    try:
        session = ConsoleSession.from_dict(URLSafeSerializer(key, salt=salt).loads(value))
    except (BadSignature, KeyError, TypeError, ValueError):
        return None
    if salt == OPERATOR_SALT and (not session.operator or session.tenant):
        return None
    return session if session.expires > now else None


def operator_session(now: float, ttl: int) -> ConsoleSession:
    """A new operator's session, for OPERATOR_SESSION_SECONDS (at most `ttl`) from `now`."""
    expires = int(now) + min(OPERATOR_SESSION_SECONDS, ttl)
    return ConsoleSession("", frozenset(), None, None, expires, new_sid(), {}, operator=True)


def read_only_session(
    tenant: str, scopes: frozenset, operator: ConsoleSession, now: float, ttl: int
) -> ConsoleSession:
    """A tenant's session the operator opens: `scopes` (the read scopes), no longer than the
    operator's own session nor `ttl` seconds from `now`."""
    expires = min(operator.expires, int(now) + ttl)
    return ConsoleSession(tenant, scopes, None, None, expires, new_sid(), {}, operator=True)


def csrf_token(key: bytes, session: ConsoleSession) -> str:
    """The session's CSRF token: a MAC of its sid (the same on every page of the session)."""
    return hmac.new(key, CSRF_SALT + session.sid.encode(), hashlib.sha256).hexdigest()


def csrf_matches(key: bytes, session: ConsoleSession, sent: str | None) -> bool:
    """Whether `sent` is the session's CSRF token (compared in constant time)."""
    return sent is not None and hmac.compare_digest(csrf_token(key, session), sent)


def login_token(key: bytes, nonce: str) -> str:
    """The operator's login form's CSRF token: a MAC of the nonce its page set in a cookie."""
    return hmac.new(key, LOGIN_SALT + nonce.encode(), hashlib.sha256).hexdigest()


def login_matches(key: bytes, nonce: str | None, sent: str | None) -> bool:
    """Whether `sent` is the login form's token for the cookie's `nonce` (constant time)."""
    if not nonce or sent is None:
        return False
    return hmac.compare_digest(login_token(key, nonce), sent)
