"""Minting: `Minter` builds the payload livekit-api's `AccessToken` builds (values and key order)
and signs it as PyJWT's `jwt.encode` does, with the LiveKit secret's checks made once."""

from datetime import timedelta

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from livekit import api

from tokensvc.config import load_settings
from tokensvc.minting import Minter, PreparedHMAC, hmac_signer
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
    return jwt.decode(token.to_jwt(), SECRET, algorithms=["HS256"], options={"verify_nbf": False})


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


def test_a_prepared_key_is_prepared_again_for_another_key():
    """The prepared HMAC signs with whichever key it is given, and refuses what PyJWT refuses
    (an empty key, a PEM key)."""
    signer = hmac_signer()
    first = signer.encode(b'{"a":1}', "first-secret-0123456789abcdef0123456789", "HS256")
    second = signer.encode(b'{"a":1}', "second-secret-0123456789abcdef012345678", "HS256")
    assert jwt.decode(first, "first-secret-0123456789abcdef0123456789", ["HS256"]) == {"a": 1}
    assert jwt.decode(second, "second-secret-0123456789abcdef012345678", ["HS256"]) == {"a": 1}
    assert first != second
    for bad in ("", "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n"):
        with pytest.raises(jwt.InvalidKeyError):
            PreparedHMAC(PreparedHMAC.SHA256).prepare_key(bad)
