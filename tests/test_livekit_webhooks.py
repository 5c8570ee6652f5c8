"""LiveKit's webhooks pointed at the service, on the real livekit-server with real participants:
a participant of another tenant is removed from a held room at once, and a holder's participant
that rejoins with its kept refreshed token after another tenant's request started the grace keeps
the name its tenant's; and a tenant's own webhooks get its room's events."""

import time

import pytest
from livekit import api

from support.tokens import BODY, LIVEKIT_KEY, LIVEKIT_SECRET
from tokensvc.context import service_state

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("media_network")]

ROOM = "webhooked-room"


@pytest.fixture
def webhooked(make_webhooked):
    """A real livekit-server whose webhooks go to the service, rooms closing a second after they
    empty; (app, test client, server)."""
    app, server = make_webhooked(ROOM_EMPTY_TIMEOUT="1", ROOM_DEPARTURE_TIMEOUT="1")
    return app, app.test_client(), server


def ask(client, tenants, tenant, identity):
    """A token for `identity` in ROOM as `tenant`: (status, body)."""
    response = client.post(
        "/livekit/token",
        headers=tenants.headers(tenant),
        json={**BODY, "room_name": ROOM, "participant_identity": identity},
    )
    return response.status_code, response.json


def wait_for(condition, seconds=20.0):
    """Poll until `condition()` holds; whether it did."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_a_participant_of_another_tenant_is_removed_within_a_second(
    webhooked, tenants, call, capsys
):
    """acme's room; a participant joins with a token minted with LiveKit's keys whose
    tokensvc.tenant names globex: participant_joined reaches the service, which removes it. One
    without the attribute (an agent, say) stays."""
    app, client, server = webhooked
    status, body = ask(client, tenants, "acme", "alice")
    assert status == 200
    call.join("alice", server.ws_url, body["token"])
    grants = api.VideoGrants(room_join=True, room=ROOM, can_subscribe=True)

    def minted(identity, attributes):
        return (
            api.AccessToken(LIVEKIT_KEY, LIVEKIT_SECRET)
            .with_identity(identity)
            .with_grants(grants)
            .with_attributes(attributes)
            .to_jwt()
        )

    call.join("agent", server.ws_url, minted("agent", {}))
    joined = time.monotonic()
    call.join("intruder", server.ws_url, minted("intruder", {"tokensvc.tenant": "globex"}))
    assert call.wait_for(lambda: ("disconnected",) in call.events["intruder"], 10)
    stayed = time.monotonic() - joined
    with capsys.disabled():
        print(f"\nanother tenant's participant was removed {stayed:.2f} s after it joined")
    assert stayed < 1.0
    time.sleep(1.0)
    assert ("disconnected",) not in call.events["agent"]
    assert ("disconnected",) not in call.events["alice"]


def test_an_unseen_rejoin_keeps_the_name_its_holders(webhooked, tenants, call):
    """alice (acme) joins, keeps the refreshed token LiveKit sends, leaves; the room closes and
    room_finished starts the grace. Half-way through it alice rejoins with the kept token
    (LiveKit re-creates the room): the webhooks make acme's hold live again, so when the first
    grace would have ended globex is still refused; after alice leaves, room_finished starts a
    new grace."""
    app, client, server = webhooked
    holds = service_state(app).issuer.ownership.holds
    grace_ms = service_state(app).issuer.ownership.grace_ms
    status, body = ask(client, tenants, "acme", "alice")
    assert status == 200
    call.join("alice", server.ws_url, body["token"])
    assert call.wait_for(lambda: any(e[0] == "token" for e in call.events["alice"]))
    kept = [e[1] for e in call.events["alice"] if e[0] == "token"][-1]
    call.run(call.rooms["alice"].disconnect())
    assert wait_for(lambda: holds.get(ROOM).gone)  # room_finished: the grace starts
    first_grace_ends = holds.get(ROOM).until
    holds.clock.advance(grace_ms // 2)
    assert ask(client, tenants, "globex", "gina")[0] == 403
    call.join("alice-again", server.ws_url, kept)
    assert wait_for(lambda: not holds.get(ROOM).gone)  # room_started, participant_joined
    hold = holds.get(ROOM)
    assert hold.holder == "acme" and hold.until >= hold.now + grace_ms - 2000
    holds.clock.advance(first_grace_ends - hold.now + 1000)
    assert ask(client, tenants, "globex", "gina")[0] == 403
    call.run(call.rooms["alice-again"].disconnect())
    assert wait_for(lambda: holds.get(ROOM).gone)
    hold = holds.get(ROOM)
    assert hold.holder == "acme" and hold.until >= hold.now + grace_ms - 2000
    assert ask(client, tenants, "globex", "gina")[0] == 403


def test_a_tenants_webhooks_get_its_rooms_events_from_a_real_server(
    make_webhooked, tenants, call, make_receiver, make_worker
):
    """acme and globex subscribe receivers; a real participant of acme's joins and leaves and
    the room closes: acme's receiver gets room_started, participant_joined, participant_left
    and room_finished for its room, each signed (standardwebhooks verifies); globex's gets
    nothing."""
    app, server = make_webhooked(
        ROOM_EMPTY_TIMEOUT="1", ROOM_DEPARTURE_TIMEOUT="1", TENANT_WEBHOOKS_ALLOW_PRIVATE="true"
    )
    client = app.test_client()
    acme, globex = make_receiver(), make_receiver()
    for tenant, receiver in (("acme", acme), ("globex", globex)):
        answer = client.post(
            "/livekit/webhook-endpoints",
            json={"url": receiver.url},
            headers=tenants.headers(tenant),
        )
        receiver.secret = answer.json["secret"]
    make_worker(app)
    status, body = ask(client, tenants, "acme", "alice")
    assert status == 200
    call.join("alice", server.ws_url, body["token"])
    wanted = {"room_started", "participant_joined"}
    assert wait_for(lambda: wanted <= {event["type"] for event in acme.events()}, 15)
    leave(call, "alice")
    wanted |= {"participant_left", "room_finished"}
    assert wait_for(lambda: wanted <= {event["type"] for event in acme.events()}, 20), [
        event["type"] for event in acme.events()
    ]
    assert all(item.event is not None for item in acme.received)
    for event in acme.events():
        assert event["data"]["room"]["name"] == ROOM
        if "participant" in event["data"]:
            assert event["data"]["participant"]["identity"] == "alice"
            assert not any(
                key.startswith("tokensvc.") for key in event["data"]["participant"]["attributes"]
            )
    assert globex.tried == 0


def leave(call, name):
    """Participant `name` of `call` leaves its room."""
    call.run(call.rooms.pop(name).disconnect())
