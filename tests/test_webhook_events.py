"""LiveKit's webhook events feed the ownership record: a live room keeps its name's hold,
room_finished starts the grace at the event, duplicates and stale events change nothing, and a
participant of another tenant is removed. Signed as LiveKit signs them, on both backends, with
the storage's clock moved instead of waiting."""

import json

import pytest

from support.tokens import signed_webhook
from tokensvc.context import service_state

ROOM = "events-room"
ACME = json.dumps({"auth_id": "acme"})


@pytest.fixture
def app(make_app, backend):
    """The service on this test's backend, with metrics on."""
    return make_app(STORAGE_URL=backend, METRICS_ENABLED="true")


def record(app):
    """The app's ownership rule."""
    return service_state(app).issuer.ownership


def send(client, kind, room=ROOM, **event):
    """Deliver one signed LiveKit event; return the response."""
    body, headers = signed_webhook(kind, room, **event)
    return client.post("/livekit/webhook", data=body, headers=headers)


def age_past_the_hold(app, room=ROOM):
    """Move the storage's clock just past the hold's `until`."""
    hold = record(app).holds.get(room)
    record(app).holds.clock.advance(hold.until - hold.now + 1)


def test_a_live_room_keeps_its_hold_and_room_finished_starts_the_grace(app, tenants, livekit):
    """room_started for a held name whose hold ran out makes it live for a grace (another tenant
    403 with no LiveKit call); room_finished marks it gone with a grace from the event; the name
    passes on only once that grace is over."""
    client = app.test_client()
    assert tenants.ask(client, "acme", room=ROOM).status_code == 200
    age_past_the_hold(app)
    assert send(client, "room_started", metadata=ACME).json == {"status": "received"}
    hold = record(app).holds.get(ROOM)
    assert hold.running and not hold.gone
    assert hold.until - hold.now >= record(app).grace_ms - 1000
    livekit.calls.clear()
    assert tenants.ask(client, "globex", room=ROOM).status_code == 403
    assert livekit.calls == {}
    livekit.close_room(ROOM)
    assert send(client, "room_finished", metadata=ACME).status_code == 200
    finished = record(app).holds.get(ROOM)
    assert finished.gone and finished.until - finished.now >= record(app).grace_ms - 1000
    record(app).holds.clock.advance(record(app).grace_ms - 5000)
    assert tenants.ask(client, "globex", room=ROOM).status_code == 403
    age_past_the_hold(app)
    assert tenants.ask(client, "globex", room=ROOM).status_code == 200
    assert record(app).holds.get(ROOM).holder == "globex"


def test_an_unseen_rejoin_during_the_grace_starts_it_over(app, tenants, livekit):
    """The holder's participant rejoins after another tenant's request started the grace (the
    room re-created by its kept token): participant_joined clears the gone mark, so when the
    first grace would have ended the name is not passed on."""
    client = app.test_client()
    assert tenants.ask(client, "acme", room=ROOM).status_code == 200
    livekit.close_room(ROOM)
    age_past_the_hold(app)
    assert tenants.ask(client, "globex", room=ROOM).status_code == 403  # the grace starts
    assert record(app).holds.get(ROOM).gone
    record(app).holds.clock.advance(60_000)
    send(client, "room_started", metadata=ACME)
    send(
        client,
        "participant_joined",
        metadata=ACME,
        participant={"identity": "alice", "attributes": {"tokensvc.tenant": "acme"}},
    )
    rejoined = record(app).holds.get(ROOM)
    assert not rejoined.gone
    record(app).holds.clock.advance(record(app).grace_ms - 60_000 + 1000)
    assert tenants.ask(client, "globex", room=ROOM).status_code == 403
    assert record(app).holds.get(ROOM).holder == "acme"


@pytest.mark.parametrize("replay", ["same-id", "older-than-5-minutes"])
def test_a_duplicate_or_stale_event_changes_nothing(app, tenants, replay):
    """An event id seen before, or an event created more than 5 minutes ago: 200, and the record
    is exactly as it was."""
    client = app.test_client()
    assert tenants.ask(client, "acme", room=ROOM).status_code == 200
    if replay == "same-id":
        assert send(client, "room_finished", metadata=ACME, event_id="EV_once").status_code == 200
        assert tenants.ask(client, "acme", room=ROOM).status_code == 200  # clears gone
        before = record(app).holds.get(ROOM)
        assert not before.gone
        response = send(client, "room_finished", metadata=ACME, event_id="EV_once")
    else:
        before = record(app).holds.get(ROOM)
        response = send(client, "room_finished", metadata=ACME, age=301)
    assert response.status_code == 200
    assert record(app).holds.get(ROOM) == before
    outcome = "duplicate" if replay == "same-id" else "stale"
    metrics = client.get("/metrics").get_data(as_text=True)
    assert f'tokensvc_livekit_events_total{{outcome="{outcome}",type="room_finished"}}' in metrics


def test_a_participant_of_another_tenant_is_removed(app, tenants, livekit, caplog):
    """participant_joined in a room acme holds, by a participant whose tokensvc.tenant names
    globex: RemoveParticipant at once, a warning, the metric. One without the attribute (an agent)
    and acme's own are left alone."""
    client = app.test_client()
    assert tenants.ask(client, "acme", room=ROOM).status_code == 200
    livekit.calls.clear()
    for identity, attributes in (("agent", {}), ("alice", {"tokensvc.tenant": "acme"})):
        send(
            client,
            "participant_joined",
            metadata=ACME,
            participant={"identity": identity, "attributes": attributes},
        )
    assert livekit.calls == {}
    send(
        client,
        "participant_joined",
        metadata=ACME,
        participant={"identity": "intruder", "attributes": {"tokensvc.tenant": "globex"}},
    )
    assert livekit.calls == {"RemoveParticipant": 1}
    assert any(
        "another tenant" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records
    )
    metrics = client.get("/metrics").get_data(as_text=True)
    assert (
        'tokensvc_livekit_events_total{outcome="foreign_removed",type="participant_joined"}'
        in metrics
    )


def test_a_room_the_record_does_not_know_is_recorded_from_its_metadata(app, tenants, livekit):
    """room_started for a name with no record and an owner in its metadata (made before the
    service, or while the record was lost): recorded for that owner, so another tenant is refused
    with no LiveKit call. An event without an owner records nothing."""
    client = app.test_client()
    send(client, "room_started", room="made-elsewhere", metadata=ACME)
    assert record(app).holds.get("made-elsewhere").holder == "acme"
    livekit.calls.clear()
    assert tenants.ask(client, "globex", room="made-elsewhere").status_code == 403
    assert livekit.calls == {}
    send(client, "room_started", room="no-owner", metadata="")
    assert record(app).holds.get("no-owner") is None
