"""A real participant (LiveKit's Python SDK, over WebRTC) joins the real livekit-server with the
tokens this service mints: it gets in, sees its tenant as the room's owner, and nowhere else."""

import json
import time

import jwt
import pytest
from livekit import rtc

from support.participants import join
from support.tokens import BODY, LIVEKIT_SECRET

pytestmark = [
    pytest.mark.slow,
    pytest.mark.livekit_server("livekit-server"),
    pytest.mark.usefixtures("media_network"),
]


def token_for(client, tenants, room="room-1", tenant="acme"):
    """Ask the service for a token as `tenant`; return (token, livekit_url)."""
    response = client.post(
        "/livekit/token", json={**BODY, "room_name": room}, headers=tenants.headers(tenant)
    )
    assert response.status_code == 200, response.json
    return response.json["token"], response.json["livekit_url"]


def resigned(token: str, secret: str = LIVEKIT_SECRET, **changes) -> str:
    """The token's claims with `changes` applied, signed with `secret`."""
    claims = jwt.decode(token, options={"verify_signature": False})
    return jwt.encode({**claims, **changes}, secret, "HS256")


def test_participant_joins_the_tenants_room(client, tenants, livekit):
    """The minted token joins at the URL the service returned; the room's owner is the tenant."""
    token, url = token_for(client, tenants)
    assert url == livekit.ws_url
    name, metadata = join(url, token)
    assert name == "room-1"
    assert json.loads(metadata)["auth_id"] == "acme"


def test_token_for_one_room_joins_no_other(client, tenants, livekit):
    """A token names its room: edited to another room its signature fails and the join is
    refused."""
    token, url = token_for(client, tenants, room="room-x")
    video = {**jwt.decode(token, options={"verify_signature": False})["video"], "room": "room-y"}
    edited = resigned(token, secret="not-the-livekit-secret-but-as-long-as-one", video=video)
    with pytest.raises(rtc.ConnectError):
        join(url, edited)
    assert livekit.stored_room("room-y") is None
    assert join(url, token)[0] == "room-x"


def test_expired_token_is_refused(client, tenants, livekit):
    """The service's token with exp two minutes past (beyond LiveKit's one-minute leeway):
    refused."""
    token, url = token_for(client, tenants)
    past = int(time.time()) - 120
    with pytest.raises(rtc.ConnectError):
        join(url, resigned(token, nbf=past - 600, exp=past))


def test_join_after_delete_recreates_the_room_with_its_owner(client, tenants, livekit):
    """A room deleted after the token was issued comes back on join with the token's owner."""
    token, url = token_for(client, tenants, tenant="globex")
    assert livekit.close_room("room-1")
    assert livekit.stored_room("room-1") is None
    name, metadata = join(url, token)
    assert (name, json.loads(metadata)) == ("room-1", {"auth_id": "globex"})
    assert json.loads(livekit.stored_room("room-1").metadata) == {"auth_id": "globex"}
