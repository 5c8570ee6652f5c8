"""Tenant authentication: verify the caller's bearer JWT and put its tenant on `g.tenant`; and
what the bearer may do within its tenant (scopes, roles, a bound identity), checked before
anything reaches LiveKit or the storage."""

import json
import logging
import re
import threading
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import cast

import click
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from flask import g, request
from flask.cli import with_appcontext

from .config import (
    HMAC_ALGORITHMS,
    PUBLIC_KEY_ALGORITHMS,
    RSA_ALGORITHMS,
    ConfigError,
    Settings,
)
from .context import service_state
from .errors import (
    IdentityForbidden,
    RoleForbidden,
    ScopeForbidden,
    TenantSuspended,
    Unauthorized,
)
from .jwks import JwksKeys
from .names import MAX_LIVEKIT_NAME_BYTES
from .roles import grants_beyond
from .scopes import OWN_IDENTITY_SCOPES, PARTICIPANTS_WRITE, granted_scopes
from .tenants import Tenants
from .usage import QUOTAS

log = logging.getLogger(__name__)

BEARER = re.compile(r"Bearer +([^\s]+)", re.IGNORECASE)
MAX_TENANT_BYTES = MAX_LIVEKIT_NAME_BYTES
MAX_IDENTITY_BYTES = MAX_LIVEKIT_NAME_BYTES
EC_ALGORITHMS_BY_CURVE = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
#: A bearer token whose signature and claims verified is taken at its word again for this long
#: (its expiry is still checked on every request), by each worker, for at most this many tokens.
VERIFIED_FOR_SECONDS = 60
VERIFIED_TOKENS_MAX = 4096


def authenticate(route_scopes: Mapping[str, str | None]) -> None:
    """Before each request of the token and management routes: who the bearer is
    (`load_tenant`), whether its tenant is suspended (`check_suspended`), then whether it may
    use the route (`check_scope`). `route_scopes` gives
    the scope each endpoint needs, None for a route that authenticates otherwise (LiveKit's
    webhook signs its own requests), by endpoint name within the blueprint; an endpoint it
    does not name fails (500: fail closed).
    One hook for both, with the request's `g` and `request` looked up once: Flask's work per
    hook and per lookup is a measurable part of a token."""
    context = g._get_current_object()
    asked = request._get_current_object()  # type: ignore[attr-defined]  # a LocalProxy
    needed = route_scopes[asked.endpoint.rpartition(".")[2]]
    Tenants.begin_request()
    load_tenant(context, asked, needed)
    check_suspended(context)
    check_scope(context, asked, needed)


def load_tenant(context, asked, needed: str | None) -> None:
    """Verify the bearer token, if any, and set `g.tenant` (None: anonymous), `g.roles`,
    `g.scopes`, `g.identity` and `g.quotas` (see `Bearer`); none is read on a route that needs
    no scope (`needed` None)."""
    context.tenant, context.roles, context.scopes, context.identity = None, None, None, None
    context.quotas, context.subject = {}, None
    if asked.method == "OPTIONS" or needed is None:
        return
    state = service_state()
    header = asked.headers.get("Authorization")
    if header is None:
        if state.settings.auth_required:
            raise Unauthorized("a bearer token is required", invalid_token=False)
        return
    match = BEARER.fullmatch(header.strip())
    if match is None:
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    if state.verifier is None:
        raise Unauthorized("this service has no key to verify bearer tokens with")
    bearer = state.verifier.identify(match.group(1))
    context.tenant, context.roles, context.scopes = bearer.tenant, bearer.roles, bearer.scopes
    context.identity, context.quotas = bearer.identity, bearer.quotas
    context.subject = bearer.subject


def check_suspended(context) -> None:
    """Right after the tenant is known: 403 tenant_suspended for a tenant the operator
    suspended, on every route (one read of its record, cached: tenants.py)."""
    if context.tenant is None:
        return
    tenants = service_state().tenants
    if tenants is not None and tenants.is_suspended(context.tenant):
        raise TenantSuspended()


def check_scope(context, asked, needed: str | None) -> None:
    """After `load_tenant`: 403 scope_forbidden when a tenant's bearer lacks the scope its route
    needs (`needed`). A bearer bound to an identity passes on to the route without
    `participants:write`, which then lets it act on its own identity only (`check_target`).
    Anonymous requests are left to the routes (the token route serves them as before; the
    management routes answer 401). An empty scopes claim allows nothing, a bound identity
    acting on itself included."""
    if context.tenant is None or asked.method == "OPTIONS" or needed is None:
        return
    if needed in context.scopes:
        return
    if needed in OWN_IDENTITY_SCOPES and context.identity is not None and context.scopes:
        return
    raise ScopeForbidden(needed)


def check_identity(identity: str) -> None:
    """The token route: a bearer bound to an identity mints only that identity (403
    identity_forbidden)."""
    if g.identity is not None and identity != g.identity:
        raise IdentityForbidden("the bearer token is bound to another participant identity")


def check_target(identity: str) -> None:
    """Removal, mute, permissions: without `participants:write` a bearer (then one bound to an
    identity: `check_scope` refused the others) may act only on its own identity (403
    identity_forbidden)."""
    if g.tenant is None or PARTICIPANTS_WRITE in g.scopes:
        return
    if identity != g.identity:
        raise IdentityForbidden(
            "the bearer token may act only on its own participant identity "
            f"without the scope {PARTICIPANTS_WRITE!r}"
        )


def check_grants(grants: dict, presets: dict) -> None:
    """Explicit grants (ParticipantPermission fields) never exceed the union of the grants of
    the roles the bearer's roles claim allows (403 role_forbidden naming them)."""
    if g.roles is None:
        return
    beyond = grants_beyond(grants, presets, g.roles)
    if beyond:
        raise RoleForbidden(f"the bearer token's roles do not grant {', '.join(beyond)}")


@dataclass(frozen=True)
class Bearer:
    """What a verified tenant JWT says: its tenant; the roles it allows (None: every role); the
    scopes it has; the participant identity it is bound to (None: any); the quotas its claims
    set (`usage.QUOTAS` name -> limit: they only lower the tenant's); its `sub` claim, when it
    is a string (the audit trail's subject)."""

    tenant: str
    roles: tuple | None
    scopes: frozenset
    identity: str | None
    quotas: Mapping = field(default_factory=dict)
    subject: str | None = None


class TenantVerifier:
    """Verifies tenant JWTs with the configured secret, public key and/or JWKS."""

    def __init__(self, settings: Settings, observe_jwks_fetch=None, clock=time.time):
        """Load the keys and fix the algorithm allow-list; refuse unusable settings. JWKS
        fetches are reported to `observe_jwks_fetch(outcome)` when given; `clock` (seconds)
        ages the tokens verified lately."""
        self.secret = settings.auth_jwt_secret.encode() if settings.auth_jwt_secret else None
        self.public_key, public_algorithms = _load_public_key(settings.auth_jwt_public_key)
        self.jwks = None
        if settings.auth_jwks_url:
            self.jwks = JwksKeys(
                settings.auth_jwks_url,
                settings.auth_jwks_timeout,
                settings.auth_jwks_refresh_seconds,
                observe_jwks_fetch,
                settings.auth_jwks_max_age,
            )
        derived = set(public_algorithms)
        if self.secret:
            derived.update(HMAC_ALGORITHMS)
        if self.jwks:
            derived.update(PUBLIC_KEY_ALGORITHMS)
        wanted = settings.auth_jwt_algorithms or tuple(sorted(derived))
        self.algorithms = tuple(alg for alg in wanted if alg in derived)
        if not self.algorithms:
            raise ConfigError(
                "AUTH_JWT_ALGORITHMS: none of " + ", ".join(wanted) + " fits the configured keys"
            )
        self.public_algorithms = public_algorithms
        self.issuer = settings.auth_jwt_issuer
        self.audience = list(settings.auth_jwt_audience) or None
        self.leeway = settings.auth_jwt_leeway
        self.tenant_claim = settings.auth_tenant_claim
        self.roles_claim = settings.auth_roles_claim
        self.scopes_claim = settings.auth_scopes_claim
        self.identity_claim = settings.auth_identity_claim
        self.quota_claims = dict(zip(QUOTAS, settings.auth_quota_claims, strict=False))
        self.clock = clock
        # token -> (what it says, its exp, until when it is taken at its word), oldest first
        self.verified: dict[str, tuple[Bearer, int, float]] = {}
        self.verified_lock = threading.Lock()

    def tenant(self, token: str) -> str:
        """Return the tenant id of a valid token, or raise Unauthorized saying what is wrong."""
        return self.identify(token).tenant

    def identify(self, token: str) -> Bearer:
        """Return what a valid token says (`Bearer`), or raise Unauthorized saying what is
        wrong. A token verified in the last VERIFIED_FOR_SECONDS is not verified again, but
        its expiry is, as PyJWT checks it (`exp <= now - leeway` has expired)."""
        now = self.clock()
        seen = self.verified.get(token)
        if seen is not None:
            bearer, exp, until = seen
            if exp <= now - self.leeway:
                raise Unauthorized("the bearer token has expired")
            if now < until:
                return bearer
        bearer, exp = self._verify(token)
        with self.verified_lock:
            self.verified.pop(token, None)  # a token verified again goes to the back
            if len(self.verified) >= VERIFIED_TOKENS_MAX:
                del self.verified[next(iter(self.verified))]
            self.verified[token] = (bearer, exp, now + VERIFIED_FOR_SECONDS)
        return bearer

    def _verify(self, token: str) -> tuple[Bearer, int]:
        """Verify a token with PyJWT and return what it says and its `exp`."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthorized("the bearer token is not a well-formed JWT") from None
        algorithm = header.get("alg")
        if algorithm not in self.algorithms:
            raise Unauthorized("the bearer token's algorithm is not accepted")
        key = self._key_for(algorithm, header.get("kid"))
        claims = self._decode(token, key, algorithm)
        roles = self._roles_of(claims)
        bearer = Bearer(
            self._tenant_of(claims),
            roles,
            self._scopes_of(claims, roles is not None),
            self._identity_of(claims),
            MappingProxyType(self._quotas_of(claims)),
            claims["sub"] if isinstance(claims.get("sub"), str) else None,
        )
        return bearer, int(claims["exp"])  # PyJWT has checked that it is a whole number

    def _roles_of(self, claims: dict) -> tuple | None:
        """The role names the token allows (the roles claim), or None without the claim."""
        if self.roles_claim not in claims:
            return None
        roles = claims[self.roles_claim]
        if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
            raise Unauthorized(
                f"the bearer token's roles claim {self.roles_claim!r} is not a list of role names"
            )
        return tuple(roles)

    def _scopes_of(self, claims: dict, has_roles: bool) -> frozenset:
        """The scopes the token has (scopes.granted_scopes), or 401 naming a malformed claim."""
        try:
            return granted_scopes(
                claims.get(self.scopes_claim), self.scopes_claim in claims, has_roles
            )
        except ValueError as exc:
            raise Unauthorized(
                f"the bearer token's scopes claim {self.scopes_claim!r} {exc}"
            ) from None

    def _identity_of(self, claims: dict) -> str | None:
        """The participant identity the token is bound to (compared exactly, never normalised),
        or None when AUTH_IDENTITY_CLAIM is unset or the token does not carry it."""
        if self.identity_claim is None or self.identity_claim not in claims:
            return None
        identity = claims[self.identity_claim]
        if (
            not isinstance(identity, str)
            or not identity.strip()
            or len(identity.encode("utf-8", "surrogatepass")) > MAX_IDENTITY_BYTES
        ):
            raise Unauthorized(
                f"the bearer token's identity claim {self.identity_claim!r} is not "
                f"a participant identity (a string of 1 to {MAX_IDENTITY_BYTES} "
                f"bytes)"
            )
        return identity

    def _quotas_of(self, claims: dict) -> dict:
        """The quotas the token's claims set (AUTH_QUOTA_CLAIMS), or 401 naming a claim that is
        not a whole number from 0."""
        quotas = {}
        for quota, claim in self.quota_claims.items():
            if claim not in claims:
                continue
            value = claims[claim]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise Unauthorized(
                    f"the bearer token's quota claim {claim!r} is not a whole number from 0"
                )
            quotas[quota] = value
        return quotas

    def _key_for(self, algorithm: str, kid):
        """Return the key that verifies `algorithm`: never a public key for an HMAC token. With
        both a PEM key and a JWKS, a token that names a `kid` is the JWKS's, one without the
        PEM's."""
        if algorithm in HMAC_ALGORITHMS:
            return self.secret
        if algorithm in self.public_algorithms and (kid is None or self.jwks is None):
            return self.public_key
        if self.jwks is None:
            raise Unauthorized("the bearer token's algorithm is not accepted")
        return self.jwks.key_for(kid, algorithm)

    def _decode(self, token: str, key, algorithm: str) -> dict:
        """Verify signature and registered claims; translate PyJWT's errors into messages."""
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway,
                options={"require": ["exp"], "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            message = "the bearer token has expired"
        except jwt.ImmatureSignatureError:
            message = "the bearer token is not valid yet"
        except jwt.InvalidIssuerError:
            message = "the bearer token has the wrong issuer"
        except jwt.InvalidAudienceError:
            message = "the bearer token has the wrong audience"
        except jwt.InvalidSignatureError:
            message = "the bearer token's signature does not verify"
        except jwt.exceptions.InvalidSubjectError:
            message = "the bearer token has an invalid 'sub' claim"
        except jwt.exceptions.InvalidIssuedAtError:
            message = "the bearer token has an invalid 'iat' claim"
        except jwt.MissingRequiredClaimError as exc:
            message = f"the bearer token has no {exc.claim!r} claim"
        except (jwt.InvalidTokenError, jwt.InvalidKeyError, TypeError, ValueError):
            message = "the bearer token is invalid"
        raise Unauthorized(message)

    def _tenant_of(self, claims: dict) -> str:
        """Return the tenant claim exactly as signed, or refuse it saying why (never its value)."""
        tenant = claims.get(self.tenant_claim)
        problem = tenant_problem(tenant)
        if problem:
            raise Unauthorized(f"the bearer token's tenant claim {self.tenant_claim!r} {problem}")
        return cast(str, tenant)  # tenant_problem refuses anything but a string


def tenant_problem(tenant) -> str | None:
    """Say what makes `tenant` unusable as a tenant id, or None when it is usable as it is.

    A tenant id is used exactly as the authentication service signed it, never trimmed or
    normalised: two ids it tells apart (" acme" and "acme") must never name one room owner.
    """
    if not isinstance(tenant, str) or not tenant:
        return "is missing or not a non-empty string"
    try:
        size = len(tenant.encode("utf-8"))
    except UnicodeEncodeError:
        return "is not valid Unicode text"
    if size > MAX_TENANT_BYTES:
        return f"is longer than {MAX_TENANT_BYTES} bytes in UTF-8"
    if tenant != tenant.strip():
        return "has leading or trailing white space"
    if any(unicodedata.category(char) == "Cc" for char in tenant):
        return "holds a control character"
    return None


def _load_public_key(pem: str | None):
    """Load a PEM public key and return it with the algorithms its kind allows."""
    if not pem:
        return None, ()
    try:
        key = load_pem_public_key(pem.encode())
    except (ValueError, TypeError):
        raise ConfigError("AUTH_JWT_PUBLIC_KEY: not a PEM public key") from None
    if isinstance(key, rsa.RSAPublicKey):
        return key, RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in EC_ALGORITHMS_BY_CURVE:
        return key, (EC_ALGORITHMS_BY_CURVE[key.curve.name],)
    if isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return key, ("EdDSA",)
    raise ConfigError("AUTH_JWT_PUBLIC_KEY: unsupported key type")


@click.command("tenant-token")
@click.option("--tenant", required=True, help="Tenant id to put in the tenant claim.")
@click.option("--ttl", default=3600, show_default=True, help="Lifetime in seconds.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    help="A scope the bearer may use (repeatable; e.g. tokens:create), in the scopes claim.",
)
@click.option(
    "--role",
    "roles",
    multiple=True,
    help="A role the bearer may ask for (repeatable), in the roles claim.",
)
@click.option(
    "--identity", help="The one participant identity the bearer may use (AUTH_IDENTITY_CLAIM)."
)
@click.option(
    "--claim",
    "extra_claims",
    multiple=True,
    metavar="KEY=VALUE",
    help="Any other claim (repeatable); VALUE is JSON (max_rooms=3), else a string.",
)
@with_appcontext
def tenant_token_command(
    tenant: str,
    ttl: int,
    scopes: tuple[str, ...],
    roles: tuple[str, ...],
    identity: str | None,
    extra_claims: tuple[str, ...],
) -> None:
    """Print a tenant JWT signed with AUTH_JWT_SECRET, for trying the service with curl."""
    settings = service_state().settings
    if not settings.auth_jwt_secret:
        raise click.ClickException("AUTH_JWT_SECRET is not set; tenant-token signs with it")
    problem = tenant_problem(tenant)
    if problem:
        raise click.ClickException(f"--tenant {problem}; the service would refuse it")
    now = datetime.now(UTC)
    claims: dict = {}
    for pair in extra_claims:
        key, value = _claim_of(pair)
        claims[key] = value
    if scopes:
        claims[settings.auth_scopes_claim] = " ".join(scopes)
    if roles:
        claims[settings.auth_roles_claim] = list(roles)
    if identity is not None:
        if not settings.auth_identity_claim:
            raise click.ClickException(
                "--identity: AUTH_IDENTITY_CLAIM is not set, so the service reads no bound "
                "identity; set it (e.g. AUTH_IDENTITY_CLAIM=identity)"
            )
        claims[settings.auth_identity_claim] = identity
    claims.update(
        {settings.auth_tenant_claim: tenant, "iat": now, "exp": now + timedelta(seconds=ttl)}
    )
    if settings.auth_jwt_issuer:
        claims["iss"] = settings.auth_jwt_issuer
    if settings.auth_jwt_audience:
        claims["aud"] = settings.auth_jwt_audience[0]
    algorithm = next((alg for alg in HMAC_ALGORITHMS if alg in _allowed(settings)), "HS256")
    click.echo(jwt.encode(claims, settings.auth_jwt_secret, algorithm=algorithm))


def _claim_of(pair: str) -> tuple[str, object]:
    """One `--claim KEY=VALUE`: VALUE read as JSON when it is JSON, else as the string."""
    key, equals, text = pair.partition("=")
    if not equals or not key:
        raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--claim")
    try:
        return key, json.loads(text)
    except ValueError:
        return key, text


def _allowed(settings: Settings):
    """Return the configured allow-list, or every HMAC algorithm when none is set."""
    return settings.auth_jwt_algorithms or HMAC_ALGORITHMS
