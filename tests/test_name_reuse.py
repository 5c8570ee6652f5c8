"""A room name stays its tenant's beyond the room's life: another tenant is refused for as long
as any token of the holder (never used, or refreshed by LiveKit) can still join, and an old
token lands only in its own tenant's room. Through HTTP into the app, on the emulator (holds aged
in the test's own SQLite file, for the timing the real server cannot be hurried through) and on
the real livekit-server with real participants (the scenarios marked `waits` take minutes)."""

import json
import time

import pytest
from livekit import rtc

from support.participants import join, stay
from tokensvc.context import service_state
from tokensvc.storage import EXTEND_SLACK_MS

ROOM = "name-reuse"
GRACE_S = 720  # max(600 s, TOKEN_TTL) + 60 s + HOLD_MARGIN: a refreshed token's life


def owner(metadata: str) -> str | None:
    """The auth_id in a room's metadata."""
    return json.loads(metadata).get("auth_id")


def age_hold(app, room: str = ROOM) -> None:
    """Move the storage's clock past the hold's `until`, as if its time had passed."""
    hold = hold_of(app, room)
    hold_of_store(app).clock.advance(hold.until - hold.now + 1)


def hold_of_store(app):
    """The app's ownership record."""
    return service_state(app).issuer.ownership.holds


def hold_of(app, room: str = ROOM):
    """The hold the service recorded for `room`."""
    return hold_of_store(app).get(room)


def wait_until_gone(livekit, room: str = ROOM, seconds: float = 30) -> None:
    """Wait until LiveKit no longer lists the room (it closed by itself)."""
    deadline = time.monotonic() + seconds
    while livekit.stored_room(room) is not None:
        assert time.monotonic() < deadline, "the room did not close"
        time.sleep(0.2)


@pytest.mark.livekit_server("emulator")
def test_held_name_passes_on_only_after_a_grace_with_the_room_gone(
    make_app, tenants, livekit, backend
):
    """Hold run out, room gone: 403 and the grace starts (one ListRooms); within it 403 with no
    LiveKit call; once it is over, the next tenant gets the name and the old holder is refused."""
    app = make_app(STORAGE_URL=backend)
    client = app.test_client()
    assert tenants.ask(client, "acme", room=ROOM).status_code == 200
    livekit.close_room(ROOM)
    age_hold(app)
    livekit.calls.clear()
    assert tenants.ask(client, "globex", room=ROOM).status_code == 403
    assert livekit.calls == {"ListRooms": 1}
    hold = hold_of(app)
    assert (hold.holder, hold.gone) == ("acme", True)
    assert hold.until - hold.now >= (GRACE_S - 5) * 1000
    livekit.calls.clear()
    assert tenants.ask(client, "globex", room=ROOM).status_code == 403
    assert livekit.calls == {}
    age_hold(app)
    response = tenants.ask(client, "globex", room=ROOM)
    assert response.status_code == 200
    assert owner(livekit.get_room(ROOM).metadata) == "globex"
    assert hold_of(app).holder == "globex"
    assert tenants.ask(client, "acme", room=ROOM).status_code == 403


@pytest.mark.livekit_server("emulator")
def test_run_out_hold_of_a_live_room_is_extended(make_app, tenants, livekit, backend):
    """Hold run out while the room still lives: the holder keeps the name for another grace."""
    app = make_app(STORAGE_URL=backend)
    client = app.test_client()
    assert tenants.ask(client, "acme", room=ROOM).status_code == 200
    age_hold(app)
    assert tenants.ask(client, "globex", room=ROOM).status_code == 403
    hold = hold_of(app)
    assert (hold.holder, hold.gone) == ("acme", False)
    assert hold.until - hold.now >= (GRACE_S - 5) * 1000
    assert owner(livekit.get_room(ROOM).metadata) == "acme"


@pytest.mark.livekit_server("emulator")
def test_a_token_during_the_grace_starts_it_over(make_app, tenants, livekit, backend):
    """The holder asking during the grace clears the gone mark: the name is not passed on when
    that grace ends, a new one starts instead."""
    app = make_app(STORAGE_URL=backend)
    client = app.test_client()
    assert tenants.ask(client, "acme", room=ROOM).status_code == 200
    livekit.close_room(ROOM)
    age_hold(app)
    assert tenants.ask(client, "globex", room=ROOM).status_code == 403  # grace starts
    assert tenants.ask(client, "acme", room=ROOM).status_code == 200  # the holder is back
    livekit.close_room(ROOM)
    age_hold(app)
    assert tenants.ask(client, "globex", room=ROOM).status_code == 403
    assert hold_of(app).holder == "acme" and hold_of(app).gone


@pytest.mark.livekit_server
def test_closed_room_is_refused_to_others_with_no_livekit_write(make_app, tenants, livekit):
    """The holder's room ended (DeleteRoom): another tenant 403, no LiveKit call at all."""
    client = make_app().test_client()
    assert tenants.ask(client, "acme", room=ROOM).status_code == 200
    assert livekit.close_room(ROOM)
    livekit.calls.clear()
    refused = tenants.ask(client, "globex", room=ROOM)
    assert (refused.status_code, refused.json["code"]) == (403, "room_forbidden")
    assert livekit.call_count() == 0
    assert livekit.stored_room(ROOM) is None


@pytest.mark.livekit_server
def test_key_configured_means_a_bearer_is_required(make_app, tenants, livekit):
    """A tenant key and AUTH_REQUIRED unset: 401 without a bearer, nothing asked of LiveKit."""
    client = make_app(AUTH_REQUIRED=None).test_client()
    response = tenants.ask(client, None, room=ROOM)
    assert (response.status_code, response.json["code"]) == (401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert livekit.call_count() == 0
    assert tenants.ask(client, "acme", room=ROOM).status_code == 200


@pytest.mark.livekit_server
def test_anonymous_is_refused_a_tenants_room(make_app, tenants, livekit):
    """AUTH_REQUIRED=false: an anonymous request for a room a tenant holds is 403 with no LiveKit
    call, and for a tenant's room the record does not know, 403 on ListRooms alone."""
    client = make_app(AUTH_REQUIRED="false").test_client()
    assert tenants.ask(client, "acme", room=ROOM).status_code == 200
    livekit.calls.clear()
    refused = tenants.ask(client, None, room=ROOM)
    assert (refused.status_code, refused.json["code"]) == (403, "room_forbidden")
    assert livekit.call_count() == 0
    livekit.add_room("made-elsewhere", json.dumps({"auth_id": "globex"}))
    assert tenants.ask(client, None, room="made-elsewhere").status_code == 403
    assert livekit.calls == {"ListRooms": 1}
    assert owner(livekit.get_room("made-elsewhere").metadata) == "globex"


@pytest.mark.livekit_server
def test_anonymous_names_are_refused_to_tenants(make_app, tenants, livekit):
    """AUTH_REQUIRED=false: a name anonymous tokens use is held for them; a tenant gets 403, and
    the room LiveKit has for it has no owner a tenant could claim."""
    client = make_app(AUTH_REQUIRED="false").test_client()
    assert tenants.ask(client, None, room=ROOM).status_code == 200
    assert livekit.get_room(ROOM).metadata == "{}"
    assert tenants.ask(client, "acme", room=ROOM).status_code == 403
    assert tenants.ask(client, None, room=ROOM).status_code == 200


@pytest.mark.slow
@pytest.mark.livekit_server("livekit-server")
@pytest.mark.usefixtures("media_network")
@pytest.mark.parametrize("ending", ["empty-timeout", "delete-room"])
def test_never_used_token_lands_only_in_its_tenants_room(make_app, tenants, livekit, ending):
    """Tenant A's token is never used; the room closes (empty timeout) or is ended (DeleteRoom);
    tenant B asks for the name: 403. A's old token then joins A's room, never one of B's."""
    client = make_app(ROOM_EMPTY_TIMEOUT="1").test_client()
    response = tenants.ask(client, "acme", room=ROOM)
    assert response.status_code == 200
    if ending == "delete-room":
        assert livekit.close_room(ROOM)
    wait_until_gone(livekit)
    refused = tenants.ask(client, "globex", room=ROOM)
    assert (refused.status_code, refused.json["code"]) == (403, "room_forbidden")
    assert livekit.stored_room(ROOM) is None
    name, metadata = join(response.json["livekit_url"], response.json["token"])
    assert (name, owner(metadata)) == (ROOM, "acme")
    assert tenants.ask(client, "globex", room=ROOM).status_code == 403


@pytest.mark.waits
@pytest.mark.livekit_server("livekit-server")
@pytest.mark.usefixtures("media_network")
def test_refreshed_token_after_the_join_token_expired(make_app, tenants, livekit):
    """TOKEN_TTL=30: A joins, keeps LiveKit's refreshed token, leaves; the room closes. 95 s
    after A's token was minted (its own life and LiveKit's leeway over), B asks: 403. The
    refreshed token still joins, and lands in A's room, never B's."""
    client = make_app(
        TOKEN_TTL="30", ROOM_EMPTY_TIMEOUT="2", ROOM_DEPARTURE_TIMEOUT="1"
    ).test_client()
    minted = time.monotonic()
    response = tenants.ask(client, "acme", room=ROOM)
    assert response.status_code == 200
    url = response.json["livekit_url"]
    name, metadata, refreshed = stay(url, response.json["token"], seconds=1, refreshes=1)
    assert (name, owner(metadata)) == (ROOM, "acme") and refreshed
    wait_until_gone(livekit)
    time.sleep(max(0.0, minted + 95 - time.monotonic()))
    refused = tenants.ask(client, "globex", room=ROOM)
    assert (refused.status_code, refused.json["code"]) == (403, "room_forbidden")
    with pytest.raises(rtc.ConnectError):  # the join token itself is past exp + leeway
        join(url, response.json["token"])
    name, metadata = join(url, refreshed[-1])
    assert (name, owner(metadata)) == (ROOM, "acme")
    wait_until_gone(livekit)
    assert tenants.ask(client, "globex", room=ROOM).status_code == 403


@pytest.mark.waits
@pytest.mark.livekit_server("livekit-server")
@pytest.mark.usefixtures("media_network")
def test_refreshed_token_of_a_long_meeting(make_app, tenants, livekit):
    """A stays connected past one 5-minute refresh, then the room is ended (DeleteRoom): B is
    refused, and A's newest refreshed token lands only in A's room."""
    client = make_app(
        TOKEN_TTL="30", ROOM_EMPTY_TIMEOUT="2", ROOM_DEPARTURE_TIMEOUT="1"
    ).test_client()
    response = tenants.ask(client, "acme", room=ROOM)
    url = response.json["livekit_url"]
    name, metadata, refreshed = stay(url, response.json["token"], seconds=305, refreshes=2)
    assert len(refreshed) >= 2, "LiveKit sent no refresh after 5 minutes"
    livekit.close_room(ROOM)
    wait_until_gone(livekit)
    assert tenants.ask(client, "globex", room=ROOM).status_code == 403
    name, metadata = join(url, refreshed[-1])
    assert (name, owner(metadata)) == (ROOM, "acme")
    assert tenants.ask(client, "globex", room=ROOM).status_code == 403


@pytest.mark.waits
@pytest.mark.livekit_server("livekit-server")
def test_hold_ends_after_the_real_grace_and_not_before(make_app, tenants, livekit):
    """TOKEN_TTL=30, A's token never used, the room ended at once. B is refused while A's hold
    lasts (A's token can join for 90 s; the hold is made 30 s longer still), then for the grace
    that starts when the service sees the room gone (660 s with HOLD_MARGIN=0, to keep the
    wait short; the margin only adds to both); after it, B gets the name and its own room."""
    app = make_app(TOKEN_TTL="30", HOLD_MARGIN="0")
    client = app.test_client()
    held = 30 + 60 + EXTEND_SLACK_MS // 1000
    minted = time.monotonic()
    assert tenants.ask(client, "acme", room=ROOM).status_code == 200
    assert livekit.close_room(ROOM)
    time.sleep(held - 12)
    assert tenants.ask(client, "globex", room=ROOM).status_code == 403  # A's hold lasts
    time.sleep(max(0.0, minted + held + 2 - time.monotonic()))
    seen_gone = time.monotonic()
    assert tenants.ask(client, "globex", room=ROOM).status_code == 403  # the grace starts
    assert hold_of(app).gone
    grace = GRACE_S - 60
    time.sleep(grace - 20)
    assert tenants.ask(client, "globex", room=ROOM).status_code == 403
    time.sleep(max(0.0, seen_gone + grace + 2 - time.monotonic()))
    response = tenants.ask(client, "globex", room=ROOM)
    assert response.status_code == 200
    assert owner(livekit.get_room(ROOM).metadata) == "globex"
    assert tenants.ask(client, "acme", room=ROOM).status_code == 403
