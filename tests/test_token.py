"""The success path: response body, and the minted token's claims read with LiveKit's verifier."""

import json
import time

import pytest

from support.tokens import BODY, verify_token
from tokensvc.schemas import TokenResponseSchema
from tokensvc.service import IssuedToken

FORBIDDEN_GRANTS = ("roomAdmin", "roomCreate", "roomList", "roomRecord")


@pytest.fixture
def unauthenticated(make_app):
    """A client of the service with no tenant key at all (the seed's unauthenticated mode)."""
    return make_app(AUTH_JWT_SECRET=None, AUTH_REQUIRED=None).test_client()


def test_unauthenticated_token_echoes_request_and_calls_no_livekit(unauthenticated, livekit):
    """Without a bearer token: 200, the request echoed, and LiveKit never called."""
    response = unauthenticated.post("/livekit/token", json=BODY)
    assert response.status_code == 200
    assert set(response.json) == {
        "token",
        "room_name",
        "participant_identity",
        "livekit_url",
        "server_url",
        "participant_token",
    }
    assert response.json["participant_token"] == response.json["token"]
    assert response.json["server_url"] == response.json["livekit_url"]
    assert response.json["room_name"] == BODY["room_name"]
    assert response.json["participant_identity"] == BODY["participant_identity"]
    assert response.json["livekit_url"] == livekit.ws_url
    assert livekit.call_count() == 0
    assert livekit.get_room(BODY["room_name"]) is None


def test_token_claims_are_join_only_for_one_room(unauthenticated):
    """The token names the participant and grants exactly join/publish/subscribe/data."""
    before = int(time.time())
    token = unauthenticated.post("/livekit/token", json=BODY).json["token"]
    claims, raw = verify_token(token)
    assert claims.identity == BODY["participant_identity"]
    assert claims.name == BODY["participant_name"]
    assert raw["video"] == {
        "roomJoin": True,
        "room": BODY["room_name"],
        "canPublish": True,
        "canSubscribe": True,
        "canPublishData": True,
    }
    assert before + 600 <= raw["exp"] <= int(time.time()) + 600
    assert "roomConfig" not in raw


def test_authenticated_token_carries_room_owner_in_room_config(client, tenants, livekit):
    """With a tenant, roomConfig.metadata holds the same JSON as the room's metadata."""
    response = client.post("/livekit/token", json=BODY, headers=tenants.headers("acme"))
    assert response.status_code == 200
    claims, raw = verify_token(response.json["token"])
    room = livekit.get_room(BODY["room_name"])
    assert json.loads(claims.room_config.metadata) == {"auth_id": "acme"}
    assert claims.room_config.metadata == room.metadata
    assert not any(raw["video"].get(grant) for grant in FORBIDDEN_GRANTS)


@pytest.mark.parametrize("ttl", [60, 7200])
def test_token_ttl_setting_sets_exp(make_app, ttl):
    """TOKEN_TTL (seconds) decides `exp`."""
    client = make_app(TOKEN_TTL=str(ttl)).test_client()
    before = int(time.time())
    _, raw = verify_token(client.post("/livekit/token", json=BODY).json["token"])
    assert before + ttl <= raw["exp"] <= int(time.time()) + ttl


def test_public_url_is_returned_to_clients(make_app, tenants, livekit):
    """LIVEKIT_PUBLIC_URL, when set, is the URL clients are told; the server API calls still
    go to LIVEKIT_URL (the room is created there)."""
    client = make_app(LIVEKIT_PUBLIC_URL="wss://rtc.example.com").test_client()
    response = client.post("/livekit/token", json=BODY, headers=tenants.headers("acme"))
    assert response.json["livekit_url"] == response.json["server_url"] == "wss://rtc.example.com"
    assert livekit.calls["CreateRoom"] == 1 and livekit.get_room(BODY["room_name"]) is not None


def test_minted_token_has_no_empty_or_null_grants(client):
    """The video grant holds only what the service sets: no nulls, no empty strings."""
    _, raw = verify_token(client.post("/livekit/token", json=BODY).json["token"])
    assert all(value not in (None, "") for value in raw["video"].values())


def test_room_options_reach_new_rooms_and_token(make_app, tenants, livekit):
    """ROOM_* settings shape the rooms the service creates, and ride in roomConfig."""
    client = make_app(
        ROOM_EMPTY_TIMEOUT="120", ROOM_DEPARTURE_TIMEOUT="15", ROOM_MAX_PARTICIPANTS="4"
    ).test_client()
    response = client.post("/livekit/token", json=BODY, headers=tenants.headers())
    room = livekit.get_room(BODY["room_name"])
    assert (room.empty_timeout, room.departure_timeout, room.max_participants) == (120, 15, 4)
    claims, _ = verify_token(response.json["token"])
    config = claims.room_config
    assert (config.empty_timeout, config.departure_timeout, config.max_participants) == (120, 15, 4)


def test_unknown_fields_are_ignored(client):
    """Fields the contract does not list do not change the answer."""
    response = client.post("/livekit/token", json={**BODY, "grants": "admin", "roomAdmin": True})
    assert response.status_code == 200
    _, raw = verify_token(response.json["token"])
    assert "roomAdmin" not in raw["video"]


def test_names_keep_their_white_space_and_unicode(client):
    """Names are passed to LiveKit as given: no trimming, full Unicode."""
    body = {"room_name": " Zimmer ü ", "participant_name": "Zoë 🎧", "participant_identity": "id ‏x"}
    response = client.post("/livekit/token", json=body)
    claims, raw = verify_token(response.json["token"])
    assert response.json["room_name"] == body["room_name"]
    assert (raw["video"]["room"], claims.name, claims.identity) == (
        body["room_name"],
        body["participant_name"],
        body["participant_identity"],
    )


@pytest.mark.parametrize("room_names", ["shared", "per-tenant"])
def test_the_answer_is_the_response_schemas_dump(make_app, tenants, room_names):
    """The answer is what the response schema (the OpenAPI document's) dumps for the token it
    describes: the same fields, values and nothing else."""
    client = make_app(ROOM_NAMES=room_names).test_client()
    answer = client.post("/livekit/token", json=BODY, headers=tenants.headers("acme")).json
    issued = IssuedToken(
        token=answer["token"],
        room_name=answer["room_name"],
        participant_identity=answer["participant_identity"],
        livekit_url=answer["livekit_url"],
        livekit_room_name=answer.get("livekit_room_name"),
    )
    dumped = TokenResponseSchema().dump(issued)
    if dumped.get("livekit_room_name") is None:
        dumped.pop("livekit_room_name", None)
    assert answer == dumped
    assert ("livekit_room_name" in answer) == (room_names == "per-tenant")
