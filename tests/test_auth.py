"""Tenant authentication: every key kind, every rejection, fail-closed, through HTTP."""

import base64
import hashlib
import hmac
import json
import time
from concurrent.futures import ThreadPoolExecutor

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from support.servers import StaticServer
from support.tokens import BODY, TENANT_SECRET, verify_token

ROOM = BODY["room_name"]


def private_key(kind):
    """Generate a private key of `kind` (RSA for RS*/PS*, P-256 for ES256, Ed25519)."""
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def public_pem(key) -> str:
    """The PEM text of a private key's public half."""
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def claims(tenant="acme", ttl=300, **extra):
    """Standard tenant claims; None values are left out."""
    now = int(time.time())
    payload = {"sub": tenant, "iat": now, "exp": now + ttl, **extra}
    return {k: v for k, v in payload.items() if v is not None}


def sign(payload, key, algorithm, kid=None):
    """Encode a JWT with PyJWT."""
    return jwt.encode(payload, key, algorithm, headers={"kid": kid} if kid else None)


def b64(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge_hs256(payload, secret: bytes) -> str:
    """An HS256 JWT signed with arbitrary bytes (PyJWT refuses PEM keys as HMAC secrets)."""
    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(payload).encode())
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(signature)


def ask(client, token=None, header=None, query=""):
    """POST the standard body with a bearer token (or a raw Authorization header)."""
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if header is not None:
        headers["Authorization"] = header
    return client.post("/livekit/token" + query, json=BODY, headers=headers)


def assert_refused(response, livekit, message=None, invalid_token=True):
    """401 unauthorized with the bearer challenge, no token, and no LiveKit call."""
    assert response.status_code == 401, response.json
    assert response.json["code"] == "unauthorized"
    expected = 'Bearer error="invalid_token"' if invalid_token else "Bearer"
    assert response.headers["WWW-Authenticate"] == expected
    if message:
        assert response.json["error"] == message
    assert livekit.call_count() == 0
    assert livekit.get_room(ROOM) is None


# --- the key kinds ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "algorithm"),
    [("rsa", "RS256"), ("rsa", "PS256"), ("ec", "ES256"), ("ed", "EdDSA")],
)
def test_public_key_kinds(make_app, livekit, kind, algorithm):
    """A PEM public key verifies its own algorithms; the tenant becomes the room's owner."""
    key = private_key(kind)
    client = make_app(
        AUTH_JWT_SECRET=None, AUTH_JWT_PUBLIC_KEY=public_pem(key), AUTH_REQUIRED="true"
    ).test_client()
    response = ask(client, sign(claims("acme"), key, algorithm))
    assert response.status_code == 200
    assert json.loads(livekit.get_room(ROOM).metadata) == {"auth_id": "acme"}


@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512"])
def test_hmac_algorithms(make_app, livekit, algorithm):
    """AUTH_JWT_SECRET verifies HS256/384/512."""
    client = make_app(AUTH_REQUIRED="true").test_client()
    assert ask(client, sign(claims(), TENANT_SECRET, algorithm)).status_code == 200


def test_public_key_from_file(make_app, livekit, tmp_path):
    """AUTH_JWT_PUBLIC_KEY_FILE reads the PEM from a file."""
    key = private_key("ec")
    path = tmp_path / "auth.pem"
    path.write_text(public_pem(key))
    client = make_app(AUTH_JWT_SECRET=None, AUTH_JWT_PUBLIC_KEY_FILE=str(path)).test_client()
    assert ask(client, sign(claims(), key, "ES256")).status_code == 200


def test_tenant_claim_setting(make_app, livekit, tenants):
    """AUTH_TENANT_CLAIM names the claim that holds the tenant id."""
    client = make_app(AUTH_TENANT_CLAIM="org_id").test_client()
    token = sign(claims("user-1", org_id="acme"), TENANT_SECRET, "HS256")
    assert ask(client, token).status_code == 200
    assert json.loads(livekit.get_room(ROOM).metadata) == {"auth_id": "acme"}


# --- every rejection -------------------------------------------------------------------------


@pytest.fixture
def strict(make_app):
    """An app that requires auth, with issuer and audience configured."""
    return make_app(
        AUTH_REQUIRED="true",
        AUTH_JWT_ISSUER="https://auth.example",
        AUTH_JWT_AUDIENCE="tokensvc,other",
    ).test_client()


def good(**extra):
    """Claims the strict app accepts."""
    return claims(iss="https://auth.example", aud="tokensvc", **extra)


TENANT_CLAIM = "the bearer token's tenant claim 'sub'"


def test_strict_app_accepts_good_token(strict, livekit):
    """The baseline for the rejections below: a correct token passes."""
    assert ask(strict, sign(good(), TENANT_SECRET, "HS256")).status_code == 200


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (good(ttl=-120), "the bearer token has expired"),
        (good(nbf=int(time.time()) + 600), "the bearer token is not valid yet"),
        (good(iat=int(time.time()) + 600), "the bearer token is not valid yet"),
        ({**good(), "iss": "https://evil.example"}, "the bearer token has the wrong issuer"),
        ({**good(), "aud": "someone-else"}, "the bearer token has the wrong audience"),
        ({k: v for k, v in good().items() if k != "exp"}, "the bearer token has no 'exp' claim"),
        ({k: v for k, v in good().items() if k != "iss"}, "the bearer token has no 'iss' claim"),
        ({**good(), "sub": None}, "the bearer token has an invalid 'sub' claim"),
        ({**good(), "sub": "   "}, f"{TENANT_CLAIM} has leading or trailing white space"),
        ({**good(), "sub": 42}, "the bearer token has an invalid 'sub' claim"),
        ({**good(), "sub": ["acme"]}, "the bearer token has an invalid 'sub' claim"),
        ({**good(), "sub": "t" * 257}, f"{TENANT_CLAIM} is longer than 256 bytes in UTF-8"),
    ],
    ids=[
        "expired",
        "not-before",
        "issued-in-future",
        "issuer",
        "audience",
        "no-exp",
        "no-iss",
        "null-tenant",
        "blank-tenant",
        "numeric-tenant",
        "list-tenant",
        "long-tenant",
    ],
)
def test_claim_rejections(strict, livekit, payload, message):
    """Each bad claim is refused with a message saying what was wrong."""
    assert_refused(ask(strict, sign(payload, TENANT_SECRET, "HS256")), livekit, message)


def test_leeway_accepts_small_clock_skew(make_app, livekit):
    """A token expired 10 s ago passes with the default 30 s leeway, and fails with leeway 0."""
    token = sign(claims(ttl=-10), TENANT_SECRET, "HS256")
    assert ask(make_app().test_client(), token).status_code == 200
    livekit.reset()
    assert_refused(ask(make_app(AUTH_JWT_LEEWAY="0").test_client(), token), livekit)


def test_tampered_payload_and_signature(strict, livekit):
    """Changing the payload or the signature of a valid token breaks it."""
    token = sign(good(), TENANT_SECRET, "HS256")
    header, payload, signature = token.split(".")
    other_payload = sign(good(tenant="globex"), TENANT_SECRET, "HS256").split(".")[1]
    message = "the bearer token's signature does not verify"
    assert_refused(ask(strict, f"{header}.{other_payload}.{signature}"), livekit, message)
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    assert_refused(ask(strict, f"{header}.{payload}.{flipped}"), livekit, message)


def test_alg_none_is_refused(strict, livekit):
    """An unsigned token (`alg: none`) is never accepted."""
    token = jwt.encode(good(), None, algorithm="none")
    assert_refused(ask(strict, token), livekit, "the bearer token's algorithm is not accepted")


def test_hs256_signed_with_the_public_key_is_refused(make_app, livekit):
    """Algorithm confusion: HS256 keyed with the public PEM fails, with or without a secret."""
    key = private_key("rsa")
    pem = public_pem(key)
    forged = forge_hs256(claims("acme"), pem.encode())
    only_pem = make_app(AUTH_JWT_SECRET=None, AUTH_JWT_PUBLIC_KEY=pem).test_client()
    assert_refused(ask(only_pem, forged), livekit, "the bearer token's algorithm is not accepted")
    both = make_app(AUTH_JWT_PUBLIC_KEY=pem).test_client()
    assert_refused(ask(both, forged), livekit, "the bearer token's signature does not verify")


def test_algorithm_outside_allow_list(make_app, livekit):
    """AUTH_JWT_ALGORITHMS narrows what the key allows."""
    client = make_app(AUTH_JWT_ALGORITHMS="HS512").test_client()
    assert ask(client, sign(claims(), TENANT_SECRET, "HS512")).status_code == 200
    livekit.reset()
    assert_refused(
        ask(client, sign(claims(), TENANT_SECRET, "HS256")),
        livekit,
        "the bearer token's algorithm is not accepted",
    )


def test_wrong_key_kind_for_algorithm(make_app, livekit):
    """An ES256 token against an RSA public key is refused (the key fixes the algorithms)."""
    client = make_app(
        AUTH_JWT_SECRET=None, AUTH_JWT_PUBLIC_KEY=public_pem(private_key("rsa"))
    ).test_client()
    token = sign(claims(), private_key("ec"), "ES256")
    assert_refused(ask(client, token), livekit, "the bearer token's algorithm is not accepted")


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer a.b.c d.e.f", "Token abc", "bearer"],
    ids=["bearer-alone", "bearer-space", "basic", "two-tokens", "other-scheme", "lowercase-alone"],
)
def test_malformed_authorization_header(make_app, livekit, header):
    """Anything but `Bearer <token>` is a malformed header: 401 (auth optional or not)."""
    for required in ("true", "false"):
        client = make_app(AUTH_REQUIRED=required).test_client()
        assert_refused(
            ask(client, header=header), livekit, "the Authorization header must be 'Bearer <token>'"
        )


@pytest.mark.parametrize("template", ["bearer {}", "BEARER {}", "Bearer   {}"])
def test_scheme_is_case_insensitive_and_spaces_are_flexible(client, livekit, tenants, template):
    """The scheme is case-insensitive and may be followed by one space or more."""
    response = ask(client, header=template.format(tenants.token("acme")))
    assert response.status_code == 200
    assert json.loads(livekit.get_room(ROOM).metadata) == {"auth_id": "acme"}


def test_garbage_token(client, livekit):
    """A bearer value that is not a JWT: 401 saying so."""
    assert_refused(ask(client, "not-a-jwt"), livekit, "the bearer token is not a well-formed JWT")


def test_token_in_query_string_is_ignored(make_app, livekit, tenants):
    """A token in the URL is never read: required -> 401 (no token); optional -> anonymous."""
    query = f"?access_token={tenants.token('acme')}"
    required = make_app(AUTH_REQUIRED="true").test_client()
    assert_refused(
        ask(required, query=query), livekit, "a bearer token is required", invalid_token=False
    )
    optional = make_app().test_client()
    response = ask(optional, query=query)
    assert response.status_code == 200
    # Anonymous, not acme's: the room it made has no owner.
    assert livekit.get_room(response.json["room_name"]).metadata == "{}"


def test_missing_token_when_required(make_app, livekit):
    """AUTH_REQUIRED and no header: 401 with a bare `Bearer` challenge."""
    client = make_app(AUTH_REQUIRED="true").test_client()
    assert_refused(ask(client), livekit, "a bearer token is required", invalid_token=False)


def test_bad_token_when_optional_is_still_refused(client, livekit, tenants):
    """AUTH_REQUIRED off: a header that is present is verified; a bad one is never ignored."""
    token = tenants.token("acme", secret="some-other-secret-of-at-least-32-bytes")
    assert_refused(ask(client, token), livekit)


def test_header_without_any_configured_key_is_refused(make_app, livekit, tenants):
    """No key configured and a bearer token sent: refused, not treated as anonymous."""
    client = make_app(AUTH_JWT_SECRET=None).test_client()
    assert_refused(
        ask(client, tenants.token()),
        livekit,
        "this service has no key to verify bearer tokens with",
    )


def test_messages_never_echo_the_token(strict, livekit):
    """Error bodies say what is wrong without repeating the token."""
    token = sign(good(ttl=-120), TENANT_SECRET, "HS256")
    body = ask(strict, token).get_data(as_text=True)
    assert token not in body and token.split(".")[1] not in body


# --- JWKS ------------------------------------------------------------------------------------


class JwksServer(StaticServer):
    """A JWKS endpoint on a loopback port that can rotate keys and go down."""

    def __init__(self):
        """Serve an empty key set."""
        self.keys = []
        super().__init__(lambda: json.dumps({"keys": self.keys}), "application/json")

    @property
    def url(self):
        """The JWKS URL."""
        return f"http://127.0.0.1:{self.port}/.well-known/jwks.json"

    def publish(self, key, kid, algorithm=None):
        """Add a private key's public half to the set."""
        jwk = json.loads(jwt.get_algorithm_by_name(algorithm or "RS256").to_jwk(key.public_key()))
        jwk["kid"] = kid
        if algorithm:
            jwk["alg"] = algorithm
        self.keys.append(jwk)


@pytest.fixture
def jwks():
    """A running JWKS server."""
    server = JwksServer()
    yield server
    server.stop()


def jwks_app(make_app, jwks, **settings):
    """A client for an app verifying with the JWKS server only."""
    return make_app(
        AUTH_JWT_SECRET=None, AUTH_JWKS_URL=jwks.url, AUTH_REQUIRED="true", **settings
    ).test_client()


def test_jwks_key_verifies(make_app, livekit, jwks):
    """A token whose kid is in the JWKS is verified with that key."""
    key = private_key("rsa")
    jwks.publish(key, "k1")
    client = jwks_app(make_app, jwks)
    assert ask(client, sign(claims(), key, "RS256", kid="k1")).status_code == 200
    assert ask(client, sign(claims(), key, "PS256", kid="k1")).status_code == 200
    assert jwks.fetches == 1


def test_jwks_rotation_without_restart(make_app, livekit, jwks):
    """A new kid published later is fetched when a token names it."""
    old, new = private_key("rsa"), private_key("ec")
    jwks.publish(old, "old")
    client = jwks_app(make_app, jwks, AUTH_JWKS_REFRESH_SECONDS="0")
    assert ask(client, sign(claims(), old, "RS256", kid="old")).status_code == 200
    jwks.publish(new, "new", "ES256")
    response = ask(client, sign(claims(), new, "ES256", kid="new"))
    assert response.status_code == 200
    assert jwks.fetches == 2


def test_jwks_down_cached_keys_keep_working(make_app, livekit, jwks):
    """With the JWKS unreachable, keys already fetched still verify."""
    key = private_key("ed")
    jwks.publish(key, "k1", "EdDSA")
    client = jwks_app(make_app, jwks, AUTH_JWKS_REFRESH_SECONDS="0")
    assert ask(client, sign(claims(), key, "EdDSA", kid="k1")).status_code == 200
    jwks.stop()
    assert ask(client, sign(claims(), key, "EdDSA", kid="k1")).status_code == 200


def test_unknown_kid_with_jwks_down_is_503(make_app, livekit, jwks):
    """An unknown kid while the JWKS is unreachable: 503 auth_unavailable, LiveKit not called."""
    jwks.stop()
    client = jwks_app(make_app, jwks, AUTH_JWKS_TIMEOUT="1")
    response = ask(client, sign(claims(), private_key("rsa"), "RS256", kid="k9"))
    assert response.status_code == 503
    assert response.json["code"] == "auth_unavailable"
    assert livekit.call_count() == 0


def test_unknown_kid_with_jwks_up_is_401_and_rate_limited(make_app, livekit, jwks):
    """An unknown kid: 401; repeated unknown kids fetch the JWKS at most once per interval."""
    jwks.publish(private_key("rsa"), "k1")
    client = jwks_app(make_app, jwks)
    stranger = private_key("rsa")
    for attempt in range(5):
        assert_refused(
            ask(client, sign(claims(), stranger, "RS256", kid=f"x{attempt}")),
            livekit,
            "the bearer token's key id is unknown",
        )
    assert jwks.fetches == 1


def test_jwks_alg_must_match_the_token(make_app, livekit, jwks):
    """A JWK that declares RS256 does not verify a PS256 token, nor an EC key an RS256 one."""
    key = private_key("rsa")
    jwks.publish(key, "rs", "RS256")
    client = jwks_app(make_app, jwks)
    assert_refused(
        ask(client, sign(claims(), key, "PS256", kid="rs")),
        livekit,
        "the bearer token's algorithm does not match its key",
    )


# --- the CLI ---------------------------------------------------------------------------------


def test_tenant_token_command(make_app, livekit):
    """`flask tenant-token --tenant acme` prints a token the service accepts as tenant acme."""
    app = make_app(
        AUTH_REQUIRED="true", AUTH_JWT_ISSUER="https://auth.example", AUTH_JWT_AUDIENCE="tokensvc"
    )
    result = app.test_cli_runner().invoke(args=["tenant-token", "--tenant", "acme"])
    assert result.exit_code == 0, result.output
    response = ask(app.test_client(), result.output.strip())
    assert response.status_code == 200
    assert json.loads(livekit.get_room(ROOM).metadata) == {"auth_id": "acme"}
    assert verify_token(response.json["token"])[0].identity == BODY["participant_identity"]


def test_tenant_token_command_needs_the_secret(make_app):
    """Without AUTH_JWT_SECRET the command says so and fails."""
    app = make_app(AUTH_JWT_SECRET=None)
    result = app.test_cli_runner().invoke(args=["tenant-token", "--tenant", "acme"])
    assert result.exit_code != 0
    assert "AUTH_JWT_SECRET is not set" in result.output


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (42, "is missing or not a non-empty string"),
        ("", "is missing or not a non-empty string"),
        (None, "is missing or not a non-empty string"),
        ("  ", "has leading or trailing white space"),
        ("x" * 257, "is longer than 256 bytes in UTF-8"),
    ],
)
def test_custom_tenant_claim_must_be_usable(make_app, livekit, value, problem):
    """With AUTH_TENANT_CLAIM set, a missing, blank, non-string or long value is refused."""
    client = make_app(AUTH_TENANT_CLAIM="org_id").test_client()
    token = sign(claims("user-1", org_id=value), TENANT_SECRET, "HS256")
    message = f"the bearer token's tenant claim 'org_id' {problem}"
    assert_refused(ask(client, token), livekit, message)


def test_pem_key_and_jwks_together(make_app, livekit, jwks):
    """With AUTH_JWT_PUBLIC_KEY (RSA) and AUTH_JWKS_URL both set, a token with a kid from the
    JWKS is verified with the JWKS's key, and one without a kid with the PEM key; each key
    signs nothing for the other."""
    pem_key, jwks_key = private_key("rsa"), private_key("rsa")
    jwks.publish(jwks_key, "k1")
    client = make_app(
        AUTH_JWT_SECRET=None,
        AUTH_JWT_PUBLIC_KEY=public_pem(pem_key),
        AUTH_JWKS_URL=jwks.url,
        AUTH_REQUIRED="true",
    ).test_client()
    assert ask(client, sign(claims(), jwks_key, "RS256", kid="k1")).status_code == 200
    assert ask(client, sign(claims(), pem_key, "RS256")).status_code == 200
    assert ask(client, sign(claims(), jwks_key, "PS256", kid="k1")).status_code == 200
    assert ask(client, sign(claims(), pem_key, "RS256", kid="k1")).status_code == 401
    assert ask(client, sign(claims(), jwks_key, "RS256")).status_code == 401


class TricklingJwks(JwksServer):
    """A JWKS that, once told to trickle, sends its whole answer one byte every 0.2 s."""

    def __init__(self):
        """Serve normally until `trickle` is set."""
        self.trickle = False
        super().__init__()

    def respond(self, handler) -> None:
        """Answer at once, or one byte every 0.2 s when trickling."""
        data = json.dumps({"keys": self.keys}).encode()
        answer = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(data), data)
        )
        if not self.trickle:
            handler.wfile.write(answer)
            return
        for byte in answer:
            try:
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
            except OSError:
                return
            time.sleep(0.2)


@pytest.fixture
def trickling_jwks():
    """A JWKS server that can be made to trickle."""
    server = TricklingJwks()
    yield server
    server.stop()


def timed_ask(client, token):
    """(response, seconds it took)."""
    start = time.monotonic()
    response = ask(client, token)
    return response, time.monotonic() - start


def test_trickling_jwks_never_holds_a_cached_key(make_app, livekit, trickling_jwks):
    """With the JWKS trickling (its answer would take minutes) and AUTH_JWKS_TIMEOUT=1: a cached
    key answers at once while a refresh for an unknown kid runs, and again after the cache has
    passed its maximum age (the refresh then runs in the background)."""
    key = private_key("rsa")
    trickling_jwks.publish(key, "k1")
    app = make_app(
        AUTH_JWT_SECRET=None,
        AUTH_JWKS_URL=trickling_jwks.url,
        AUTH_REQUIRED="true",
        AUTH_JWKS_REFRESH_SECONDS="0",
        AUTH_JWKS_TIMEOUT="1",
        AUTH_JWKS_MAX_AGE="1.5",
    )
    client = app.test_client()
    assert ask(client, sign(claims(), key, "RS256", kid="k1")).status_code == 200
    trickling_jwks.trickle = True
    with ThreadPoolExecutor(1) as pool:
        unknown = pool.submit(
            timed_ask, client, sign(claims(), private_key("rsa"), "RS256", kid="k2")
        )
        time.sleep(0.2)  # the unknown kid's refresh is under way
        cached, seconds = timed_ask(client, sign(claims(), key, "RS256", kid="k1"))
        assert cached.status_code == 200 and seconds < 1
        refused, waited = unknown.result()
    assert (refused.status_code, refused.json["code"]) == (503, "auth_unavailable")
    assert waited < 2
    time.sleep(1.5)  # the unknown kid's refresh was cut off at its 1 s; the cache is now stale
    fetches = trickling_jwks.fetches
    cached, seconds = timed_ask(client, sign(claims(), key, "RS256", kid="k1"))
    assert cached.status_code == 200 and seconds < 1
    time.sleep(0.2)
    assert trickling_jwks.fetches == fetches + 1  # the stale cache started a refresh


def test_trickling_jwks_with_no_key_is_503_within_the_timeout(make_app, livekit, trickling_jwks):
    """No key cached and the JWKS trickling: 503 auth_unavailable once AUTH_JWKS_TIMEOUT (1 s) has
    passed, not when the JWKS finally finishes; LiveKit is not called."""
    trickling_jwks.publish(private_key("rsa"), "k1")
    trickling_jwks.trickle = True
    client = make_app(
        AUTH_JWT_SECRET=None,
        AUTH_JWKS_URL=trickling_jwks.url,
        AUTH_REQUIRED="true",
        AUTH_JWKS_TIMEOUT="1",
    ).test_client()
    response, seconds = timed_ask(client, sign(claims(), private_key("rsa"), "RS256", kid="k1"))
    assert (response.status_code, response.json["code"]) == (503, "auth_unavailable")
    assert 0.9 < seconds < 2
    assert livekit.call_count() == 0
