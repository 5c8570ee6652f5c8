"""The minting shortcut: `FlatClaims.asdict()` equals livekit-api's own `Claims.asdict()`."""

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st
from livekit import api
from livekit.api.access_token import Claims

from tokensvc.service import FlatClaims

text = st.text(max_size=20)
room_configs = st.builds(
    api.RoomConfiguration,
    metadata=text,
    empty_timeout=st.integers(0, 10**6),
    max_participants=st.integers(0, 1000),
    agents=st.lists(st.builds(api.RoomAgentDispatch, agent_name=text, metadata=text), max_size=2),
)
claims = st.builds(
    Claims,
    identity=text,
    name=text,
    kind=text,
    metadata=text,
    video=st.none() | st.builds(api.VideoGrants),
    sip=st.none() | st.builds(api.SIPGrants),
    attributes=st.none() | st.dictionaries(text, text, max_size=3),
    sha256=st.none() | text,
    room_preset=st.none() | text,
    room_config=st.none() | room_configs,
)


@settings(max_examples=500)
@given(claims)
def test_flat_claims_serialise_like_livekit(original):
    """For any claims, the fast serialiser gives the same payload as livekit-api's."""
    flat = FlatClaims(**{f.name: getattr(original, f.name) for f in dataclasses.fields(Claims)})
    assert flat.asdict() == original.asdict()
