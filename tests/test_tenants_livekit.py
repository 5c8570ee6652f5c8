"""Tenants the operator owns, on the real livekit-server with its webhooks pointed at the service
and real WebRTC participants, on both backends: a participant removed for a quota is told why
before it goes; a room life LiveKit starts for a rejoin with an earlier token beyond max_rooms is
ended; a suspension ends a live room within 2 s, telling its participant, and refuses the next
token with 403 tenant_suspended."""

import json
import time

import pytest

from support.tokens import BODY
from tokensvc.context import service_state
from tokensvc.tenants import CLI_OPERATOR

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("media_network")]

ADMIN_TOKEN = "operator-token-" + "0123456789abcdef" * 2


@pytest.fixture
def served(make_webhooked, backend):
    """A real livekit-server whose webhooks go to the service (this test's backend), rooms
    closing a second after they empty. (app, test client, server)."""
    app, server = make_webhooked(
        STORAGE_URL=backend,
        ROOM_EMPTY_TIMEOUT="1",
        ROOM_DEPARTURE_TIMEOUT="1",
        ADMIN_TOKEN=ADMIN_TOKEN,
    )
    return app, app.test_client(), server


def token(client, tenants, room, identity, tenant="acme"):
    """Ask for a token: (status, body)."""
    response = client.post(
        "/livekit/token",
        headers=tenants.headers(tenant),
        json={**BODY, "room_name": room, "participant_identity": identity},
    )
    return response.status_code, response.json


def notices(call, label) -> list:
    """The data messages on topic tokensvc participant `label` received, decoded."""
    return [
        json.loads(data)
        for kind, *rest in call.events[label]
        if kind == "data"
        for topic, data in [rest]
        if topic == "tokensvc"
    ]


def gone(call, label) -> bool:
    """Whether participant `label` was disconnected."""
    return ("disconnected",) in call.events[label]


def test_a_participant_removed_for_a_quota_is_told_why(served, tenants, call, capsys):
    """acme's record caps a room at 2; a third participant with a token minted before the cap
    joins: it receives {"code": "quota_exceeded", "quota": "max_participants", "limit": 2} on
    topic tokensvc, then is disconnected; the two others stay."""
    app, client, server = served
    records = service_state(app).tenants
    tokens = {}
    for identity in ("p1", "p2", "p3"):
        status, body = token(client, tenants, "told", identity)
        assert status == 200, body
        tokens[identity] = body["token"]
    records.set_limits("acme", {"max_participants": 2}, CLI_OPERATOR)
    for identity in ("p1", "p2"):
        call.join(identity, server.ws_url, tokens[identity])
    time.sleep(2.0)  # their joins are seated
    call.join("p3", server.ws_url, tokens["p3"])
    assert call.wait_for(lambda: gone(call, "p3"), 15)
    with capsys.disabled():
        seen = [event if event[0] != "token" else ("token",) for event in call.events["p3"]]
        print(f"\nremoved for a quota, it saw: {seen}")
    assert notices(call, "p3") == [
        {"code": "quota_exceeded", "quota": "max_participants", "limit": 2}
    ]
    kinds = [event[0] for event in call.events["p3"]]
    assert kinds.index("data") < kinds.index("disconnected")
    assert not gone(call, "p1") and not gone(call, "p2")


def test_a_rejoin_beyond_max_rooms_is_ended(served, tenants, call, capsys):
    """max_rooms 1: room x finishes, y is minted and joined, then x is joined again with its
    earlier token (LiveKit starts a new life of it): that life is ended (DeleteRoom on its
    room_started), its participant disconnected; y stays; the next new room is refused. (The
    notice sent on room_started reaches nobody: the rejoining participant is not active yet.)"""
    app, client, server = served
    service_state(app).tenants.set_limits("acme", {"max_rooms": 1}, CLI_OPERATOR)
    holds = service_state(app).issuer.ownership.holds
    status, x = token(client, tenants, "x", "early")
    assert status == 200, x
    call.join("early", server.ws_url, x["token"])
    call.run(call.rooms["early"].disconnect())
    assert call.wait_for(lambda: holds.get("x").gone, 20)  # x finished
    status, y = token(client, tenants, "y", "host")
    assert status == 200, y
    call.join("host", server.ws_url, y["token"])
    started = time.monotonic()
    call.join("again", server.ws_url, x["token"])
    assert call.wait_for(lambda: gone(call, "again"), 15)
    with capsys.disabled():
        print(
            f"\nrejoin beyond max_rooms ended after {time.monotonic() - started:.1f} s; "
            f"its notices: {notices(call, 'again')}"
        )
    rooms = service_state(app).issuer.rooms
    assert call.wait_for(lambda: rooms.find_room("x") is None, 10)
    assert rooms.find_room("y") is not None and not gone(call, "host")
    status, body = token(client, tenants, "z", "host")
    assert (status, body["code"], body["quota"]) == (403, "quota_exceeded", "max_rooms")


def test_a_suspension_ends_a_live_room_within_2_s(served, tenants, call, capsys):
    """acme's participant in a live room; the operator suspends acme: the participant is told
    {"code": "tenant_suspended"} and disconnected within 2 s, LiveKit no longer lists the room,
    and the next token is 403 tenant_suspended; resumed, a token is issued again."""
    app, client, server = served
    status, body = token(client, tenants, "suspended-call", "ann")
    assert status == 200, body
    call.join("ann", server.ws_url, body["token"])
    time.sleep(1.0)  # ann is active (data reaches active participants only)
    started = time.monotonic()
    answer = client.post(
        "/admin/tenants/acme/suspend",
        json={"reason": "abuse report 17"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert answer.status_code == 200, answer.json
    assert call.wait_for(lambda: gone(call, "ann"), 2.0)
    took = time.monotonic() - started
    with capsys.disabled():
        print(f"\nsuspended: the participant was disconnected after {took:.2f} s")
    assert took <= 2.0
    assert notices(call, "ann") == [{"code": "tenant_suspended"}]
    assert service_state(app).issuer.rooms.find_room("suspended-call") is None
    status, body = token(client, tenants, "suspended-call", "ann")
    assert (status, body["code"]) == (403, "tenant_suspended")
    resumed = app.test_cli_runner().invoke(args=["tenants", "resume", "acme"])
    assert resumed.exit_code == 0, resumed.output
    assert token(client, tenants, "suspended-call", "ann")[0] == 200
