"""Minting: `Minter` builds the payload livekit-api's `AccessToken` builds (values and key order)
and signs it as PyJWT's `jwt.encode` does, with the LiveKit secret's checks made once."""

import warnings
from datetime import timedelta

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt.warnings import InsecureKeyLengthWarning
from livekit import api

from tokensvc.config import load_settings
from tokensvc.livekit.minting import Minter
from tokensvc.roles import ROLE_ATTRIBUTE, TENANT_ATTRIBUTE, video_grants

KEY, SECRET = "minting-key", "minting-secret-0123456789abcdef0123456789"
SETTINGS = load_settings(
    {"LIVEKIT_URL": "ws://127.0.0.1:7880", "LIVEKIT_API_KEY": KEY, "LIVEKIT_API_SECRET": SECRET}
)
text = st.text(max_size=20)
names = st.text(min_size=1, max_size=20)
agents = st.lists(st.builds(api.RoomAgentDispatch, agent_name=text, metadata=text), max_size=2)
room_options = st.fixed_dictionaries(
    {},
    optional={
        "empty_timeout": st.integers(0, 10**6),
        "departure_timeout": st.integers(0, 10**6),
        "max_participants": st.integers(0, 1000),
    },
)


def livekit_claims(options, *, identity, name, metadata, attributes, role, room, tenant,
                   room_metadata, agents, ttl) -> dict:  # fmt: skip
    """The claims of the token livekit-api's AccessToken signs for the same participant."""
    grants = api.VideoGrants(room_join=True, room=room, **video_grants(SETTINGS.role_presets[role]))
    token = (
        api.AccessToken(KEY, SECRET)
        .with_identity(identity)
        .with_name(name)
        .with_grants(grants)
        .with_ttl(timedelta(seconds=ttl))
    )
    if metadata:
        token.with_metadata(metadata)
    everything = {**attributes, ROLE_ATTRIBUTE: role}
    if tenant is not None:
        everything[TENANT_ATTRIBUTE] = tenant
    token.with_attributes(everything)
    config = api.RoomConfiguration(metadata=room_metadata or "", agents=agents, **options)
    if config.ByteSize():
        token.with_room_config(config)
    # Read back, not judged: with a TTL of 1 s, a loaded machine may reach the decode after exp.
    unchecked = {"verify_nbf": False, "verify_exp": False}
    return jwt.decode(token.to_jwt(), SECRET, algorithms=["HS256"], options=unchecked)


@settings(max_examples=300, deadline=None)
@given(
    options=room_options,
    identity=names,
    name=text,
    metadata=text,
    attributes=st.dictionaries(text, text, max_size=3),
    role=st.sampled_from(sorted(SETTINGS.role_presets)),
    room=names,
    tenant=st.none() | names,
    room_metadata=st.none() | text,
    agents=agents,
    ttl=st.integers(1, 86400),
)
def test_the_payload_is_livekits_key_for_key(options, **participant):
    """For any participant, role, room configuration and TTL: the same claims as livekit-api's,
    in the same order (top level and video grant), with exp = nbf + TTL."""
    theirs = livekit_claims(options, **participant)
    assert theirs["exp"] - theirs["nbf"] in (participant["ttl"], participant["ttl"] + 1)
    ours = Minter(SETTINGS, options).payload(**participant, now=theirs["nbf"])
    assert ours == {**theirs, "exp": theirs["nbf"] + participant["ttl"]}
    assert list(ours) == list(theirs)
    assert list(ours["video"]) == list(theirs["video"])


@pytest.mark.parametrize("role", sorted(SETTINGS.role_presets))
def test_the_token_is_pyjwts_byte_for_byte(role):
    """The signed token equals `jwt.encode(claims, secret, "HS256")`, and LiveKit's own
    verifier reads the grants back."""
    minter = Minter(SETTINGS, {})
    claims = minter.payload(
        identity="alice", name="Alice", metadata="", attributes={}, role=role, room="r1",
        tenant="acme", room_metadata=None, ttl=600,
    )  # fmt: skip
    token = minter.sign(claims)
    assert token == jwt.encode(claims, SECRET, algorithm="HS256")
    verified = api.TokenVerifier(KEY, SECRET).verify(token)
    assert (verified.identity, verified.video.room, verified.video.room_join) == (
        "alice",
        "r1",
        True,
    )
    assert verified.attributes == {ROLE_ATTRIBUTE: role, TENANT_ATTRIBUTE: "acme"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


#: The registered claims a participant token carries, of the types PyJWT requires of them.
registered = st.fixed_dictionaries(
    {"sub": names, "iss": text, "nbf": st.integers(0, 2**40), "exp": st.integers(0, 2**40)}
)
REGISTERED = {"sub", "iss", "nbf", "exp", "iat", "aud", "jti"}


@settings(max_examples=300, deadline=None)
@given(
    others=st.dictionaries(st.text().filter(lambda k: k not in REGISTERED), json_values),
    registered=registered,
)
def test_any_claims_are_signed_as_pyjwt_signs_them(others, registered):
    """Whatever the other claims (any keys, nesting, non-ASCII text): the token is
    `jwt.encode`'s."""
    claims = {**others, **registered}
    assert Minter(SETTINGS, {}).sign(claims) == jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.mark.parametrize(
    "secret", ["", "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n"]
)
def test_a_secret_pyjwt_refuses_signs_nothing(secret):
    """PyJWT's key checks still run: an empty or PEM secret is refused when it is used (the
    settings refuse both before, for their own reasons)."""
    minter = Minter(SETTINGS, {})
    minter.api_secret = secret
    with pytest.raises(jwt.InvalidKeyError):
        minter.sign({"sub": "alice"})


def test_a_short_secret_is_warned_of_as_pyjwt_warns():
    """A secret shorter than 32 bytes (DEV_MODE) signs, with PyJWT's own warning, once."""
    minter = Minter(SETTINGS, {})
    minter.api_secret = "short-secret"
    with pytest.warns(InsecureKeyLengthWarning, match="12 bytes long") as caught:
        first, second = minter.sign({"sub": "alice"}), minter.sign({"sub": "bob"})
    assert len(caught) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)  # PyJWT's decode warns too
        assert jwt.decode(first, "short-secret", ["HS256"]) == {"sub": "alice"}
        assert jwt.decode(second, "short-secret", ["HS256"]) == {"sub": "bob"}


def test_another_secret_is_prepared_afresh():
    """The prepared key follows the secret: a token after a change is signed with the new one."""
    minter = Minter(SETTINGS, {})
    assert jwt.decode(minter.sign({"sub": "a"}), SECRET, ["HS256"]) == {"sub": "a"}
    minter.api_secret = "another-secret-0123456789abcdef0123456789"
    token = minter.sign({"sub": "b"})
    assert jwt.decode(token, "another-secret-0123456789abcdef0123456789", ["HS256"]) == {"sub": "b"}
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, SECRET, ["HS256"])
