"""The LiveKit emulator behaves as livekit-server does on the wire (docs/livekit.md)."""

import asyncio
import json
import time
import urllib.error
import urllib.request

import jwt
import pytest
from livekit import api

from support.tokens import LIVEKIT_KEY, LIVEKIT_SECRET
from tokensvc.testing import LiveKitUnderTest

ROOM_SERVICE = "/twirp/livekit.RoomService/"

# Every wire behaviour is checked on the real server too, so the emulator stays honest; the
# few that need the emulator's own controls say so.
pytestmark = pytest.mark.livekit_server


def server_token(secret=LIVEKIT_SECRET, key=LIVEKIT_KEY, ttl=600, **video):
    """Mint a server API token with the given video grants."""
    now = int(time.time())
    return jwt.encode({"iss": key, "exp": now + ttl, "nbf": now, "video": video}, secret, "HS256")


def twirp(livekit, method, body, token=None, content_type="application/json", http_method="POST"):
    """Call a RoomService method with a JSON body; return (status, content type, body text)."""
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(
        livekit.url + ROOM_SERVICE + method, data=data, headers=headers, method=http_method
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get_content_type(), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get_content_type(), error.read().decode()


def run(livekit, make_call):
    """Run one livekit-api call against the emulator with a fresh LiveKitAPI."""

    async def call():
        async with api.LiveKitAPI(livekit.ws_url, LIVEKIT_KEY, LIVEKIT_SECRET) as lkapi:
            return await make_call(lkapi)

    return asyncio.run(call())


def test_create_room_is_get_or_create(livekit):
    """CreateRoom of a live room returns it unchanged: same sid and metadata, no error."""
    first = run(
        livekit,
        lambda lk: lk.room.create_room(
            api.CreateRoomRequest(name="r", metadata="one", empty_timeout=60)
        ),
    )
    second = run(
        livekit,
        lambda lk: lk.room.create_room(
            api.CreateRoomRequest(name="r", metadata="two", empty_timeout=10)
        ),
    )
    assert first.sid.startswith("RM_") and first.creation_time > 0
    assert (second.sid, second.metadata, second.empty_timeout) == (first.sid, "one", 60)


def listed(livekit, name):
    """The metadata ListRooms reports for `name` (the store's view), or None."""
    rooms = run(livekit, lambda lk: lk.room.list_rooms(api.ListRoomsRequest(names=[name]))).rooms
    return rooms[0].metadata if rooms else None


@pytest.mark.livekit_server("emulator")  # race_next_create: tests/test_race.py races for real
@pytest.mark.parametrize(
    ("live_winner", "live", "stored"), [("caller", "A", "B"), ("rival", "B", "A")]
)
def test_concurrent_create_leaves_the_two_views_disagreeing(livekit, live_winner, live, stored):
    """race_next_create: CreateRoom answers with the live room's winner; ListRooms reads the
    store, which the later creator overwrote; a second CreateRoom reads the live room unchanged."""

    def create(lk):
        return lk.room.create_room(api.CreateRoomRequest(name="r", metadata="A"))

    livekit.race_next_create("r", "B", live_winner=live_winner)
    assert run(livekit, create).metadata == live
    assert listed(livekit, "r") == stored
    assert run(livekit, create).metadata == live
    assert listed(livekit, "r") == stored


@pytest.mark.livekit_server("emulator")  # add_stored_room: test_multinode.py kills a real node
def test_store_only_room_is_overwritten_by_create(livekit):
    """add_stored_room: not live, so CreateRoom goes through the allocator and its metadata and
    options replace the stored ones, as on livekit-server after a node failure."""
    livekit.add_stored_room("r", "owner-A", empty_timeout=77)
    assert livekit.get_room("r") is None and listed(livekit, "r") == "owner-A"
    room = run(
        livekit,
        lambda lk: lk.room.create_room(
            api.CreateRoomRequest(name="r", metadata="owner-B", empty_timeout=9)
        ),
    )
    assert (room.metadata, room.empty_timeout) == ("owner-B", 9)
    assert listed(livekit, "r") == "owner-B"


@pytest.mark.livekit_server("emulator")  # race_next_create
def test_update_metadata_rewrites_the_store_only_on_change(livekit):
    """UpdateRoomMetadata with the live room's own value cannot repair a store that disagrees."""
    livekit.race_next_create("r", "B", live_winner="caller")
    livekit.add_room("r", "A")
    token = server_token(roomAdmin=True, room="r")
    twirp(livekit, "UpdateRoomMetadata", {"room": "r", "metadata": "A"}, token)
    assert (livekit.get_room("r").metadata, listed(livekit, "r")) == ("A", "B")
    twirp(livekit, "UpdateRoomMetadata", {"room": "r", "metadata": "C"}, token)
    assert (livekit.get_room("r").metadata, listed(livekit, "r")) == ("C", "C")


def test_list_rooms_matches_names_exactly(livekit):
    """ListRooms(names): exact, case-sensitive; missing names absent; no names: every room."""
    for name in ("Alpha", "alpha", "beta"):
        livekit.add_room(name)
    named = run(livekit, lambda lk: lk.room.list_rooms(api.ListRoomsRequest(names=["alpha", "x"])))
    assert [room.name for room in named.rooms] == ["alpha"]
    every = run(livekit, lambda lk: lk.room.list_rooms(api.ListRoomsRequest()))
    assert sorted(room.name for room in every.rooms) == ["Alpha", "alpha", "beta"]


def test_update_metadata_replaces_and_delete_missing_is_not_found(livekit):
    """UpdateRoomMetadata replaces the whole string; DeleteRoom of a missing room: not_found."""
    livekit.add_room("r", '{"auth_id": "acme"}')
    updated = run(
        livekit,
        lambda lk: lk.room.update_room_metadata(
            api.UpdateRoomMetadataRequest(room="r", metadata="replaced")
        ),
    )
    assert updated.metadata == "replaced"
    run(livekit, lambda lk: lk.room.delete_room(api.DeleteRoomRequest(room="r")))
    with pytest.raises(api.ServerError) as error:
        run(livekit, lambda lk: lk.room.delete_room(api.DeleteRoomRequest(room="r")))
    assert (error.value.status, error.value.code) == (404, "not_found")


def test_json_requests_get_protojson_answers(livekit):
    """JSON in (snake or camel case, unknown keys dropped), JSON out with proto field names."""
    token = server_token(roomCreate=True)
    status, ctype, text = twirp(
        livekit, "CreateRoom", {"name": "j", "emptyTimeout": 42, "metadata": "m", "bogus": 1}, token
    )
    assert (status, ctype) == (200, "application/json")
    room = json.loads(text)
    assert (room["name"], room["empty_timeout"], room["metadata"]) == ("j", 42, "m")
    assert room["num_participants"] == 0


@pytest.mark.parametrize(
    ("grant", "method", "body"),
    [
        ({"roomList": True}, "CreateRoom", {"name": "x"}),
        ({"roomCreate": True}, "ListRooms", {}),
        ({"roomAdmin": True, "room": "other"}, "UpdateRoomMetadata", {"room": "x", "metadata": ""}),
        ({"roomJoin": True, "room": "x"}, "DeleteRoom", {"room": "x"}),
    ],
)
def test_missing_grant_is_twirp_unauthenticated(livekit, grant, method, body):
    """A valid token without the method's grant: 401 Twirp permissions denied."""
    status, ctype, text = twirp(livekit, method, body, server_token(**grant))
    assert (status, ctype) == (401, "application/json")
    assert json.loads(text) == {"code": "unauthenticated", "msg": "permissions denied"}


def test_no_authorization_header_is_twirp_unauthenticated(livekit):
    """No header at all: 401 Twirp permissions denied."""
    status, _, text = twirp(livekit, "ListRooms", {})
    assert (status, json.loads(text)["code"]) == (401, "unauthenticated")


BAD_SIGNATURE = server_token(secret="wrong-secret-wrong-secret-wrong-secret", roomList=True)
EXPIRED = server_token(ttl=-120, roomList=True)


@pytest.mark.parametrize(
    ("token", "said"),
    [
        (
            BAD_SIGNATURE,
            f"invalid token: {BAD_SIGNATURE}, error: token signature is invalid: "
            "signature is invalid",
        ),
        (server_token(key="unknown-key", roomList=True), "invalid API key: unknown-key"),
        (EXPIRED, f"invalid token: {EXPIRED}, error: token has invalid claims: token is expired"),
        ("not-a-jwt", "invalid authorization token"),
    ],
    ids=["bad-signature", "unknown-key", "expired", "garbage"],
)
def test_token_that_fails_verification_is_plain_text_401(livekit, token, said):
    """A token that does not verify: 401 with a plain-text body saying why, not Twirp JSON."""
    assert twirp(livekit, "ListRooms", {}, token) == (401, "text/plain", said)


def test_bad_route_and_content_type(livekit):
    """Unknown method or content type: 404 bad_route."""
    token = server_token(roomList=True)
    assert json.loads(twirp(livekit, "Nope", {}, token)[2])["code"] == "bad_route"
    status, _, text = twirp(livekit, "ListRooms", b"", token, content_type="text/plain")
    assert (status, json.loads(text)["code"]) == (404, "bad_route")


def test_limits(livekit):
    """Room names over 256 bytes and metadata over 512 KiB: invalid_argument."""
    token = server_token(roomCreate=True)
    status, _, text = twirp(livekit, "CreateRoom", {"name": "x" * 257}, token)
    assert status == 400
    assert json.loads(text) == {
        "code": "invalid_argument",
        "msg": "twirp error unknown: room name length exceeds limits: max length 256",
    }
    status, _, text = twirp(livekit, "CreateRoom", {"name": "m", "metadata": "x" * 524289}, token)
    assert json.loads(text)["msg"] == "metadata size exceeds limits 524288"
    assert json.loads(text)["meta"] == {"argument": "metadata size exceeds limits"}


def test_body_over_10_mib_is_refused(livekit):
    """A request body over 10 MiB: a plain-text 413, and the connection closed (a client still
    sending may see it reset before it reads the answer, as from livekit-server)."""
    try:
        status, ctype, _ = twirp(
            livekit, "ListRooms", b"x" * (10 * 1024 * 1024 + 1), server_token()
        )
    except (urllib.error.URLError, ConnectionError) as error:
        reason = getattr(error, "reason", error)
        assert isinstance(reason, ConnectionError), error
    else:
        assert (status, ctype) == (413, "text/plain")


def test_rooms_close_after_empty_timeout(livekit):
    """A room nobody joins closes after empty_timeout, and its name is free again (the real
    server looks every few seconds, so wait up to 30 s)."""
    livekit.add_room("short", empty_timeout=1)
    assert livekit.get_room("short") is not None
    deadline = time.monotonic() + 30
    while livekit.get_room("short") is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert livekit.get_room("short") is None


def test_both_livekits_offer_the_one_test_interface(livekit):
    """The emulator and the real server's wrapper both implement `LiveKitUnderTest`."""
    assert isinstance(livekit, LiveKitUnderTest)
    assert livekit.url.startswith("http://127.0.0.1:") and livekit.ws_url.startswith("ws://")


@pytest.mark.livekit_server("livekit-server")
def test_the_real_server_refuses_a_fault_it_cannot_apply(livekit):
    """Setting an error or a malformed answer on the real server raises (a test cannot pass on a
    fault that never happened); latency, which the proxy applies, is taken."""
    with pytest.raises(NotImplementedError, match="faults.error"):
        livekit.faults.error = "internal"
    with pytest.raises(NotImplementedError, match="faults.malformed"):
        livekit.faults.malformed = True
    livekit.faults.latency = 0.01
    assert (livekit.faults.latency, livekit.faults.error) == (0.01, None)


@pytest.mark.livekit_server("livekit-server")
def test_reading_a_room_writes_nothing(livekit):
    """get_room of an ended room finds none and does not bring it back."""
    livekit.add_room("ended")
    assert livekit.close_room("ended")
    assert livekit.get_room("ended") is None and livekit.stored_room("ended") is None
