"""The verifier's memory of tokens verified lately: it accepts and refuses exactly what a
verifier without memory (PyJWT on every request) does, and still checks expiry each time."""

import time

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokensvc.auth import VERIFIED_FOR_SECONDS, VERIFIED_TOKENS_MAX, TenantVerifier
from tokensvc.config import load_settings
from tokensvc.errors import Unauthorized

SECRET = "verified-tokens-secret-" + "0123456789abcdef" * 3
CONFIG = {
    "AUTH_JWT_SECRET": SECRET,
    "AUTH_JWT_ALGORITHMS": "HS256,HS384",
    "AUTH_JWT_ISSUER": "https://issuer.example",
    "AUTH_JWT_AUDIENCE": "tokensvc",
}
SETTINGS = load_settings(CONFIG)
LEEWAY = SETTINGS.auth_jwt_leeway


class Clock:
    """A clock the test moves: real time plus an offset."""

    def __init__(self):
        """Start at real time."""
        self.offset = 0.0

    def __call__(self) -> float:
        """Seconds since the epoch, moved by the offset."""
        return time.time() + self.offset


def answer(verifier: TenantVerifier, token: str):
    """What the verifier says: the bearer, or the 401's message."""
    try:
        return verifier.identify(token)
    except Unauthorized as exc:
        return exc.description


# Times far from every boundary (exp within the leeway, nbf now), so that the test's own
# seconds do not change an answer.
offsets = st.sampled_from([-7200, -300, 300, 7200])
tokens = st.fixed_dictionaries(
    {
        "sub": st.sampled_from(["acme", "globex", " acme", "", None, 7]),
        "exp": st.none() | offsets,
        "nbf": st.none() | offsets,
        "iss": st.none() | st.sampled_from(["https://issuer.example", "https://other.example"]),
        "aud": st.none() | st.sampled_from(["tokensvc", "other"]),
        "scopes": st.none() | st.sampled_from(["tokens:write", ["tokens:write"], 7]),
        "key": st.sampled_from([SECRET, SECRET + "-wrong"]),
        "alg": st.sampled_from(["HS256", "HS384", "HS512"]),
    }
)


def make_token(spec: dict, now: int) -> str:
    """Sign a token as `spec` says (absent claims left out; times relative to `now`)."""
    claims = {
        name: value
        for name, value in spec.items()
        if name not in ("key", "alg") and value is not None
    }
    for name in ("exp", "nbf"):
        if name in claims:
            claims[name] += now
    return jwt.encode(claims, spec["key"], algorithm=spec["alg"])


@settings(max_examples=200, deadline=None)
@given(
    specs=st.lists(tokens, min_size=1, max_size=5), order=st.lists(st.integers(0, 4), max_size=12)
)
def test_the_memory_answers_what_pyjwt_answers(specs, order):
    """Asked about tokens in any order, repeats included, the verifier with its memory gives
    every time the answer a verifier without memory gives (PyJWT verifying afresh)."""
    now = int(time.time())
    signed = [make_token(spec, now) for spec in specs]
    remembering = TenantVerifier(SETTINGS)
    for index in [*range(len(signed)), *order]:
        token = signed[index % len(signed)]
        assert answer(remembering, token) == answer(TenantVerifier(SETTINGS), token)


def test_a_remembered_token_still_expires():
    """A token verified a moment ago is refused as expired once its exp (plus the leeway) is
    past, with the message PyJWT's expiry gives."""
    clock = Clock()
    verifier = TenantVerifier(SETTINGS, clock=clock)
    now = int(time.time())
    token = make_token(
        {"sub": "acme", "exp": 20, "iss": "https://issuer.example", "aud": "tokensvc",
         "key": SECRET, "alg": "HS256"},
        now,
    )  # fmt: skip
    assert verifier.identify(token).tenant == "acme"
    clock.offset = 20 + LEEWAY - 5
    assert verifier.identify(token).tenant == "acme"
    clock.offset = 20 + LEEWAY + 1
    with pytest.raises(Unauthorized) as refused:
        verifier.identify(token)
    expired = make_token(
        {"sub": "acme", "exp": -LEEWAY - 60, "iss": "https://issuer.example", "aud": "tokensvc",
         "key": SECRET, "alg": "HS256"},
        now,
    )  # fmt: skip
    assert refused.value.description == answer(TenantVerifier(SETTINGS), expired)


def test_a_token_is_verified_again_after_a_while_and_memory_is_bounded():
    """Past VERIFIED_FOR_SECONDS a token is verified afresh (a JWKS key withdrawn since stops
    it then); the memory keeps at most VERIFIED_TOKENS_MAX tokens, dropping the oldest."""
    clock = Clock()
    verifier = TenantVerifier(SETTINGS, clock=clock)
    now = int(time.time())
    spec = {"sub": "acme", "exp": 7200, "iss": "https://issuer.example", "aud": "tokensvc",
            "key": SECRET, "alg": "HS256"}  # fmt: skip
    token = make_token(spec, now)
    assert verifier.identify(token).tenant == "acme"
    verifier.secret = (SECRET + "-rotated").encode()  # the key that signed it is withdrawn
    clock.offset = VERIFIED_FOR_SECONDS - 1
    assert verifier.identify(token).tenant == "acme"
    clock.offset = VERIFIED_FOR_SECONDS + 1
    with pytest.raises(Unauthorized, match="signature does not verify"):
        verifier.identify(token)
    verifier.secret = SECRET.encode()
    verifier.identify(token)
    for n in range(VERIFIED_TOKENS_MAX + 10):
        verifier.identify(make_token({**spec, "sub": f"tenant-{n}"}, now))
    assert len(verifier.verified) == VERIFIED_TOKENS_MAX
    assert token not in verifier.verified
