"""Every row of the ownership table, through HTTP into the app and over a socket to LiveKit."""

import json
import time

import pytest

from support.tokens import BODY, verify_token
from tokensvc.ownership import owner_metadata
from tokensvc.context import service_state

pytestmark = pytest.mark.livekit_server

ROOM = BODY["room_name"]


def test_missing_room_is_created_owned_by_the_tenant(client, tenants, livekit):
    """Room doesn't exist: created with metadata.auth_id = tenant; token issued."""
    response = tenants.ask(client, "acme", room=ROOM)
    assert response.status_code == 200
    room = livekit.get_room(ROOM)
    assert json.loads(room.metadata) == {"auth_id": "acme"}
    assert livekit.calls == {"ListRooms": 1, "CreateRoom": 1}


def test_own_room_gets_token_and_nothing_is_written(client, tenants, livekit):
    """Room exists and the caller owns it: token issued; CreateRoom only reads the live room."""
    existing = livekit.add_room(ROOM, json.dumps({"auth_id": "acme", "topic": "standup"}))
    response = tenants.ask(client, "acme", room=ROOM)
    assert response.status_code == 200
    room = livekit.get_room(ROOM)
    assert (room.sid, room.metadata) == (existing.sid, existing.metadata)
    assert livekit.stored_room(ROOM).metadata == existing.metadata
    assert livekit.calls == {"ListRooms": 1, "CreateRoom": 1}
    claims, _ = verify_token(response.json["token"])
    assert claims.room_config.metadata == existing.metadata


@pytest.mark.parametrize(
    "metadata",
    [
        json.dumps({"auth_id": "globex"}),
        json.dumps({"owner": "acme"}),
        json.dumps({"auth_id": 42}),
        json.dumps({"auth_id": ""}),
        json.dumps({"auth_id": ["acme"]}),
        json.dumps(["acme"]),
        json.dumps("acme"),
        "acme",
        "",
        "{not json",
        "[" * 100000,
    ],
    ids=[
        "other-owner",
        "no-auth-id",
        "numeric-auth-id",
        "empty-auth-id",
        "list-auth-id",
        "json-list",
        "json-string",
        "plain-text",
        "empty",
        "broken-json",
        "deep-nesting",
    ],
)
def test_foreign_or_unowned_room_is_refused_and_untouched(client, tenants, livekit, metadata):
    """Another owner, no string auth_id, or metadata that is not a JSON object: 403, no write."""
    existing = livekit.add_room(ROOM, metadata)
    response = tenants.ask(client, "acme", room=ROOM)
    assert response.status_code == 403
    assert response.json["code"] == "room_forbidden"
    assert "token" not in response.json
    room = livekit.get_room(ROOM)
    assert (room.sid, room.metadata) == (existing.sid, existing.metadata)
    assert livekit.stored_room(ROOM).metadata == existing.metadata
    assert livekit.calls == {"ListRooms": 1}


def test_race_lost_between_lookup_and_create_is_refused(client, tenants, livekit):
    """Ownership is decided on what CreateRoom returns, not on the earlier ListRooms."""
    rival = json.dumps({"auth_id": "globex"})
    livekit.after_next_call("ListRooms", lambda: livekit.add_room(ROOM, rival))
    response = tenants.ask(client, "acme", room=ROOM)
    assert response.status_code == 403
    assert livekit.get_room(ROOM).metadata == rival
    assert livekit.calls == {"ListRooms": 1, "CreateRoom": 1}


def test_closed_room_stays_its_holders(client, tenants, livekit):
    """A room LiveKit closed is still its holder's name: another tenant gets 403 with no LiveKit
    call; the holder gets a token with no call either, whose roomConfig makes the room its own
    again when a participant joins."""
    assert tenants.ask(client, "acme", room=ROOM).status_code == 200
    livekit.close_room(ROOM)
    livekit.calls.clear()
    refused = tenants.ask(client, "globex", room=ROOM)
    assert (refused.status_code, refused.json["code"]) == (403, "room_forbidden")
    assert livekit.calls == {} and livekit.stored_room(ROOM) is None
    response = tenants.ask(client, "acme", room=ROOM)
    assert response.status_code == 200 and livekit.calls == {}
    claims, _ = verify_token(response.json["token"])
    assert json.loads(claims.room_config.metadata) == {"auth_id": "acme"}


def test_tenant_id_with_json_characters_round_trips(client, tenants, livekit):
    """Metadata is built with a JSON encoder: quotes, braces and backslashes survive exactly."""
    tenant = 'ac"me}\\{"auth_id":"x"'
    assert tenants.ask(client, tenant, room=ROOM).status_code == 200
    assert json.loads(livekit.get_room(ROOM).metadata) == {"auth_id": tenant}
    assert tenants.ask(client, tenant, room=ROOM).status_code == 200
    assert tenants.ask(client, "x", room=ROOM).status_code == 403


def test_unauthenticated_request_skips_ownership_entirely(make_app, livekit):
    """Unauthenticated mode: even a foreign room gets a token, and LiveKit is not called."""
    livekit.add_room(ROOM, json.dumps({"auth_id": "globex"}))
    client = make_app(AUTH_JWT_SECRET=None, AUTH_REQUIRED=None).test_client()
    response = client.post("/livekit/token", json=BODY)
    assert response.status_code == 200
    assert livekit.call_count() == 0


ACME, GLOBEX = owner_metadata("acme"), owner_metadata("globex")


def views(livekit):
    """(live metadata, stored metadata) of the room; None where a view has no room."""
    live, stored = livekit.get_room(ROOM), livekit.stored_room(ROOM)
    return (live and live.metadata, stored and stored.metadata)


@pytest.mark.livekit_server("emulator")
def test_create_race_won_live_room_keeps_the_room(client, tenants, livekit):
    """Divergence, the caller's create wins the live room while a rival's overwrites the store:
    the caller gets the token, the rival never does, and nothing is written on either's retry."""
    livekit.race_next_create(ROOM, GLOBEX, live_winner="caller")
    assert tenants.ask(client, "acme", room=ROOM).status_code == 200
    assert views(livekit) == (ACME, GLOBEX)
    refused = tenants.ask(client, "globex", room=ROOM)
    assert refused.status_code == 403 and refused.json["code"] == "room_forbidden"
    # The winner holds the name in the service's record: its next token needs no LiveKit call,
    # and the diverged store is never read again.
    assert tenants.ask(client, "acme", room=ROOM).status_code == 200
    assert views(livekit) == (ACME, GLOBEX)
    assert livekit.calls == {"ListRooms": 1, "CreateRoom": 1}


@pytest.mark.livekit_server("emulator")
def test_create_race_lost_live_room_is_refused(client, tenants, livekit):
    """Divergence, the rival's create wins the live room while the caller's overwrites the store:
    the caller is refused on CreateRoom's answer, now and on every retry; nothing is written."""
    livekit.race_next_create(ROOM, GLOBEX, live_winner="rival")
    assert tenants.ask(client, "acme", room=ROOM).status_code == 403
    assert views(livekit) == (GLOBEX, ACME)
    assert tenants.ask(client, "acme", room=ROOM).status_code == 403
    assert views(livekit) == (GLOBEX, ACME)


@pytest.mark.livekit_server("emulator")
def test_store_only_room_of_another_tenant_is_never_recreated(client, tenants, livekit):
    """A room only in the store (its node failed) that another tenant owns: 403 on ListRooms
    alone; CreateRoom, which would overwrite its owner, is never called."""
    livekit.add_stored_room(ROOM, GLOBEX)
    response = tenants.ask(client, "acme", room=ROOM)
    assert response.status_code == 403
    assert views(livekit) == (None, GLOBEX)
    assert livekit.calls == {"ListRooms": 1}


@pytest.mark.livekit_server("emulator")
@pytest.mark.livekit_server("emulator")
def test_unrecorded_store_only_room_of_the_caller_comes_back_as_it_was(make_app, tenants, livekit):
    """A store-only room the record does not know, whose metadata names the caller, is made live
    again with its own metadata and options, even when the service has other options."""
    metadata = json.dumps({"auth_id": "acme", "topic": "standup"})
    livekit.add_stored_room(ROOM, metadata, empty_timeout=77, max_participants=3)
    client = make_app(ROOM_EMPTY_TIMEOUT="10", ROOM_MAX_PARTICIPANTS="50").test_client()
    response = tenants.ask(client, "acme", room=ROOM)
    assert response.status_code == 200
    live = livekit.get_room(ROOM)
    assert (live.metadata, live.empty_timeout, live.max_participants) == (metadata, 77, 3)
    assert livekit.stored_room(ROOM).metadata == metadata
    claims, _ = verify_token(response.json["token"])
    assert claims.room_config.metadata == metadata


@pytest.mark.livekit_server("emulator")
def test_store_only_room_of_the_holder_is_left_to_the_join(make_app, tenants, livekit):
    """The holder's own store-only room (its node failed): the holder's token is minted with no
    LiveKit call and nothing written; its roomConfig (owner and options) is what a join applies
    when it makes the room live again. Another tenant is refused."""
    client = make_app(ROOM_EMPTY_TIMEOUT="10", ROOM_MAX_PARTICIPANTS="50").test_client()
    assert tenants.ask(client, "acme", room=ROOM).status_code == 200
    livekit.close_room(ROOM)
    stored = json.dumps({"auth_id": "acme", "topic": "standup"})
    livekit.add_stored_room(ROOM, stored, empty_timeout=77, max_participants=3)
    livekit.calls.clear()
    response = tenants.ask(client, "acme", room=ROOM)
    assert response.status_code == 200 and livekit.calls == {}
    assert views(livekit) == (None, stored)
    claims, _ = verify_token(response.json["token"])
    config = claims.room_config
    assert (config.metadata, config.empty_timeout, config.max_participants) == (ACME, 10, 50)
    assert tenants.ask(client, "globex", room=ROOM).status_code == 403


@pytest.mark.livekit_server("emulator")
def test_pending_claim_of_the_same_tenant_still_checks_livekit(app, tenants, livekit):
    """A claim another request of acme just made (still pending) does not let acme skip
    LiveKit's word: a store-only room of globex is refused on ListRooms and never re-created."""
    livekit.add_stored_room(ROOM, GLOBEX)
    service_state(app).issuer.ownership.holds.claim(ROOM, "acme", 2**42)
    response = tenants.ask(app.test_client(), "acme", room=ROOM)
    assert response.status_code == 403
    assert views(livekit) == (None, GLOBEX)
    assert livekit.calls == {"ListRooms": 1}
    assert service_state(app).issuer.ownership.holds.get(ROOM).holder == "globex"


@pytest.mark.livekit_server("emulator")
def test_holder_mints_without_a_call_once_checked(app, tenants, livekit):
    """The holder's checked name costs no LiveKit call and no wait: the token is minted at once
    with the holder's metadata."""
    client = app.test_client()
    assert tenants.ask(client, "acme", room=ROOM).status_code == 200
    livekit.calls.clear()
    response = tenants.ask(client, "acme", room=ROOM)
    assert response.status_code == 200 and livekit.calls == {}
    claims, _ = verify_token(response.json["token"])
    assert claims.room_config.metadata == ACME
    assert tenants.ask(client, "globex", room=ROOM).status_code == 403


@pytest.mark.livekit_server("emulator")
def test_a_crashed_creators_lock_is_room_busy_then_200(make_app, tenants, livekit):
    """A creator that claimed the name and took its lock, then died before CreateRoom answered:
    the holder gets 503 room_busy with Retry-After (not livekit_unavailable) and no LiveKit call;
    another tenant 403; once the lock expires, the holder's next request creates the room."""
    app = make_app(LIVEKIT_TIMEOUT="0.2")
    client = app.test_client()
    crashed = service_state(app).issuer.ownership.holds.claim(ROOM, "acme", 60_000, None, 1000)
    assert crashed.lock is not None
    response = tenants.ask(client, "acme", room=ROOM)
    assert (response.status_code, response.json["code"]) == (503, "room_busy")
    assert response.headers["Retry-After"] == "1"
    assert tenants.ask(client, "globex", room=ROOM).status_code == 403
    assert livekit.calls == {}
    time.sleep(1.0)
    assert tenants.ask(client, "acme", room=ROOM).status_code == 200
    assert livekit.calls == {"ListRooms": 1, "CreateRoom": 1}
