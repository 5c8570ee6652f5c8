"""Audit of the minted token on every success path: exact grants, TTL, useless on the server API."""

import json

import pytest

from support.tokens import BODY, audit_token

pytestmark = pytest.mark.livekit_server


@pytest.mark.parametrize("ttl", [None, "60", "86400"])
def test_unauthenticated_token(make_app, livekit, ttl):
    """Anonymous token: the allowed grants only, exp = nbf + TOKEN_TTL, refused by the server
    API."""
    client = make_app(TOKEN_TTL=ttl).test_client()
    token = client.post("/livekit/token", json=BODY).json["token"]
    audit_token(token, BODY["room_name"], BODY["participant_identity"], int(ttl or 600), livekit)


def test_token_for_new_room(client, tenants, livekit):
    """A tenant creating a room gets the same least-privilege token, with the owner in
    roomConfig."""
    token = client.post("/livekit/token", json=BODY, headers=tenants.headers("acme")).json["token"]
    raw = audit_token(token, BODY["room_name"], BODY["participant_identity"], 600, livekit)
    assert json.loads(raw["roomConfig"]["metadata"]) == {"auth_id": "acme"}
    assert json.loads(livekit.get_room(BODY["room_name"]).metadata) == {"auth_id": "acme"}


def test_token_for_own_existing_room(client, tenants, livekit):
    """A tenant joining its own room: the same audit; the token could not take the room over."""
    livekit.add_room(BODY["room_name"], '{"auth_id": "acme", "topic": "x"}')
    token = client.post("/livekit/token", json=BODY, headers=tenants.headers("acme")).json["token"]
    audit_token(token, BODY["room_name"], BODY["participant_identity"], 600, livekit)
    assert livekit.get_room(BODY["room_name"]).metadata == '{"auth_id": "acme", "topic": "x"}'
