"""The reconciliation with LiveKit, its decisions on the emulator (participants seated without
any event, signal-only ones, a killed node), on both backends, with the storage's clock moved
instead of waiting: a dead node stops billing and frees its seats, its room re-hosted by a live
node meters and seats its new participants, a participant no event reported is metered, a
participant of another tenant or a removed identity is removed in any state, watched rooms are
listed at each watch sweep, a name is rebuilt only during a quarantine, and one sweeper of two
sweeps."""

import json
import time

import pytest

from support.tokens import signed_webhook
from tokensvc.context import service_state
from tokensvc.processes.worker import reconciler_of
from tokensvc.reconcile import LEASE_NAME, ReconcileLoop
from tokensvc.roles import TENANT_ATTRIBUTE

MINUTE = 60_000


@pytest.fixture
def app(make_app, backend):
    """The service on this test's backend, with metrics on."""
    return make_app(STORAGE_URL=backend, METRICS_ENABLED="true")


@pytest.fixture
def state(app):
    """The app's service state."""
    return service_state(app)


@pytest.fixture
def reconciler(state):
    """The worker's reconciler for the app."""
    return reconciler_of(state)


def own(state, name, tenant="acme"):
    """Make `name` the tenant's room, as its first token does (the room created in LiveKit)."""
    state.issuer.ownership.for_token(name, tenant)


def seat(livekit, room, identity, tenant="acme", state="ACTIVE"):
    """A participant of `tenant` in `room`, joined without any event reaching the service."""
    return livekit.add_participant(room, identity, state, {TENANT_ATTRIBUTE: tenant})


def usage_of(state, tenant="acme"):
    """The tenant's usage up to the storage's now, per room name."""
    usage = state.issuer.usage
    now = usage.store.time_ms()
    return {room["room_name"]: room for room in usage.report(tenant, 0, now + 1)["rooms"]}


def test_a_participant_no_event_reported_is_metered_until_it_is_gone(state, reconciler, livekit):
    """A listed active participant the events never reported gets a session at its join (one
    ListParticipants, since the count disagrees); once LiveKit no longer lists it, the session
    ends when the room was last seen and usage stops growing."""
    own(state, "room")
    seat(livekit, "room", "alice")
    done = reconciler.sweep()
    assert done.repairs == {"session_opened": 1}
    assert done.calls == {"ListRooms": 1, "ListParticipants": 1}
    assert usage_of(state)["room"]["participants"] == 1
    quiet = reconciler.sweep()  # the counts agree now: no ListParticipants
    assert quiet.calls == {"ListRooms": 1, "SendData": 1} and quiet.repairs == {}
    livekit.drop_participant("room", "alice")
    state.issuer.usage.store.clock.advance(MINUTE)
    assert reconciler.sweep().repairs == {"session_closed": 1}
    billed = usage_of(state)["room"]["participant_seconds"]
    assert billed < 5  # ended when last seen, not a minute later
    state.issuer.usage.store.clock.advance(10 * MINUTE)
    assert usage_of(state)["room"]["participant_seconds"] == billed
    assert state.reconcile_store.counts() == {"session_opened": 1, "session_closed": 1}


def test_a_dead_node_stops_billing_and_frees_its_seats(make_app, backend, livekit):
    """A killed node leaves its room and participants listed with their count: the probe of its
    node fails, the life ends when last seen (usage stops, seats free, the hold's grace starts),
    and later sweeps leave it alone (no new session for its stale participants)."""
    app = make_app(STORAGE_URL=backend, QUOTA_MAX_PARTICIPANTS="2")
    state = service_state(app)
    reconciler = reconciler_of(state)
    own(state, "room")
    seat(livekit, "room", "alice")
    seat(livekit, "room", "bob")
    assert reconciler.sweep().repairs == {"session_opened": 2}
    usage = state.issuer.usage
    with pytest.raises(Exception) as full:
        usage.check_mint("acme", "room", "carol", {})
    assert full.value.error_code == "quota_exceeded"
    livekit.kill_node("room")
    usage.store.clock.advance(MINUTE)
    done = reconciler.sweep()
    assert done.repairs == {"life_ended": 1, "grace_started": 1}
    assert done.calls == {"ListRooms": 1, "SendData": 1}
    billed = usage_of(state)["room"]["participant_seconds"]
    assert billed < 10
    usage.store.clock.advance(10 * MINUTE)
    assert usage_of(state)["room"]["participant_seconds"] == billed
    assert usage.check_mint("acme", "room", "carol", {}) is False  # a seat is free
    assert state.issuer.ownership.holds.get("room").gone
    again = reconciler.sweep()
    assert again.repairs == {} and again.calls == {"ListRooms": 1}


def test_a_room_re_hosted_after_its_node_died_meters_and_seats_its_new_participants(
    make_app, backend, livekit
):
    """A killed node's room ended by the sweeper, then hosted again by a live node (the same
    sid, its dead participants still listed): a new participant no event reported reopens the
    life and is metered from its join and seated (quota 2: a third beyond it is removed); the
    dead node's participants are not opened again, the gap is not billed, and later sweeps
    probe the room again instead of ending it."""
    app = make_app(STORAGE_URL=backend, QUOTA_MAX_PARTICIPANTS="2")
    state = service_state(app)
    reconciler = reconciler_of(state)
    own(state, "room")
    seat(livekit, "room", "alice")
    seat(livekit, "room", "bob")
    assert reconciler.sweep().repairs == {"session_opened": 2}
    usage = state.issuer.usage
    livekit.kill_node("room")
    usage.store.clock.advance(MINUTE)
    assert reconciler.sweep().repairs == {"life_ended": 1, "grace_started": 1}
    usage.store.clock.advance(10 * MINUTE)
    before = usage_of(state)["room"]
    livekit.rehost("room")
    seat(livekit, "room", "carol")
    done = reconciler.sweep()
    assert done.repairs == {"session_opened": 1}
    assert [s.identity for life in usage.live_lives() for s in life.sessions] == ["carol"]
    metered = usage_of(state)["room"]
    usage.store.clock.advance(MINUTE)
    after = usage_of(state)["room"]
    grown = after["participant_seconds"] - metered["participant_seconds"]
    assert 60 <= grown < 61  # carol's minute, she alone
    assert after["room_seconds"] - before["room_seconds"] < 70  # not the ten minutes lost
    seat(livekit, "room", "dave")
    assert reconciler.sweep().repairs == {"session_opened": 1}
    with pytest.raises(Exception) as full:
        usage.check_mint("acme", "room", "erin", {})
    assert full.value.error_code == "quota_exceeded"
    seat(livekit, "room", "erin")
    done = reconciler.sweep()
    assert done.repairs == {"session_opened": 1, "quota_removed": 1}
    assert done.calls["SendData"] == 1  # probed: its node answers again
    assert livekit.participants_of("room") == ["alice", "bob", "carol", "dave"]
    livekit.drop_participant("room", "alice")  # the count is back to what the dead node left
    livekit.drop_participant("room", "bob")
    for repairs in ({"session_closed": 1}, {}):  # erin's session, removed, ends first
        quiet = reconciler.sweep()
        assert quiet.repairs == repairs and quiet.calls["SendData"] == 1
    assert [len(life.sessions) for life in usage.live_lives()] == [2]


def test_a_re_hosted_room_reopened_by_its_join_event_is_probed_again_not_ended(
    make_app, backend, livekit
):
    """A killed node's room re-hosted with the count its dead node left (its two participants
    gone, two new ones in): the sweeper takes it for still dead, carol's participant_joined
    reopens its life, and the next sweep probes it again (its node answers) and opens dave's
    session instead of ending the life again."""
    app = make_app(STORAGE_URL=backend)
    state = service_state(app)
    reconciler = reconciler_of(state)
    own(state, "room")
    seat(livekit, "room", "alice")
    seat(livekit, "room", "bob")
    reconciler.sweep()
    livekit.kill_node("room")
    assert reconciler.sweep().repairs == {"life_ended": 1, "grace_started": 1}
    room = livekit.rehost("room")
    livekit.drop_participant("room", "alice")
    livekit.drop_participant("room", "bob")
    carol = seat(livekit, "room", "carol")
    seat(livekit, "room", "dave")
    assert reconciler.sweep().repairs == {}  # the same count as at the death: still dead
    body, headers = signed_webhook(
        "participant_joined",
        "room",
        metadata=room.metadata,
        room_sid=room.sid,
        participant={"sid": carol.sid, "identity": "carol", "state": "ACTIVE"},
        created_at=int(time.time()) + 2,  # after the end, which was when it was last seen
    )
    assert app.test_client().post("/livekit/webhook", data=body, headers=headers).status_code == 200
    assert [s.identity for life in state.issuer.usage.live_lives() for s in life.sessions] == [
        "carol"
    ]
    done = reconciler.sweep()
    assert done.repairs == {"session_opened": 1} and done.calls["SendData"] == 1
    (life,) = state.issuer.usage.live_lives()
    assert sorted(session.identity for session in life.sessions) == ["carol", "dave"]


@pytest.mark.parametrize("participant_state", ["JOINING", "ACTIVE"])
def test_another_tenants_participant_is_removed_in_any_state(
    state, reconciler, livekit, participant_state
):
    """A participant whose tenant attribute names another tenant is removed, signal-only ones
    included (no event ever names them), and the room goes under watch; the holder's own and
    attribute-less participants stay."""
    own(state, "room")
    seat(livekit, "room", "alice")
    seat(livekit, "room", "mallory", tenant="globex", state=participant_state)
    livekit.add_participant("room", "agent", "ACTIVE", {})
    done = reconciler.sweep()
    assert done.repairs.get("foreign_removed") == 1
    assert livekit.participants_of("room") == ["agent", "alice"]
    assert state.reconcile_store.watched() == ["room"]
    assert "mallory" not in {s["room_name"] for s in usage_of(state, "globex").values()}


def test_a_removed_identity_back_over_signal_is_out_at_the_next_watch_sweep(
    state, reconciler, livekit
):
    """An identity removed durably watches the room: the watch sweep (every WATCH_INTERVAL)
    lists it and removes the identity when it is back in any state; a room's watch runs out
    after the refreshed tokens' life."""
    own(state, "room")
    seat(livekit, "room", "alice")
    state.issuer.ownership.remove("room", "bob")
    assert state.reconcile_store.watched() == ["room"]
    assert reconciler.watch_sweep().repairs == {}
    seat(livekit, "room", "bob", state="JOINING")
    done = reconciler.watch_sweep()
    assert done.repairs == {"removed_removed": 1}
    assert done.calls == {"ListParticipants": 1, "RemoveParticipant": 1}
    assert livekit.participants_of("room") == ["alice"]
    state.reconcile_store.clock.advance(11 * MINUTE + 1)
    assert state.reconcile_store.watched() == []
    assert reconciler.watch_sweep().calls == {}


def test_rooms_that_agree_with_the_record_cost_one_list(state, reconciler, livekit):
    """Rooms whose counts agree, unwatched and under their quota: one ListRooms for all, and a
    probe only of those that bill."""
    for index in range(5):
        own(state, f"room-{index}")
    seat(livekit, "room-0", "alice")
    reconciler.sweep()
    done = reconciler.sweep()
    assert done.calls == {"ListRooms": 1, "SendData": 1}
    assert done.repairs == {}


def test_a_room_with_participants_and_no_record_costs_no_listing(state, reconciler, livekit):
    """A room LiveKit lists with participants that the record neither holds nor meters (another
    client's room on the same LiveKit, or the anonymous namespace): its count disagrees at
    every sweep, but there is nobody to meter or protect, so it is not listed."""
    livekit.add_room("theirs", "")
    seat(livekit, "theirs", "alice", tenant="")
    own(state, "ours")
    for _ in range(2):
        done = reconciler.sweep()
        assert done.calls == {"ListRooms": 1}
        assert done.repairs == {}
    assert usage_of(state) == {}


def test_a_held_room_no_longer_listed_starts_its_grace_once(state, reconciler, livekit):
    """A life the record counts live but LiveKit no longer lists (room_finished was lost) ends,
    and the hold's grace starts; the next sweep repairs nothing more."""
    own(state, "room")
    seat(livekit, "room", "alice")
    reconciler.sweep()
    livekit.close_room("room")
    assert reconciler.sweep().repairs == {"life_ended": 1, "grace_started": 1}
    assert state.issuer.ownership.holds.get("room").gone
    assert reconciler.sweep().repairs == {}


def test_a_listed_room_with_no_record_is_rebuilt_only_during_a_quarantine(
    state, reconciler, livekit
):
    """Outside a quarantine a room LiveKit lists with an owner and no record stays unrecorded
    (the record decides); during one it becomes that owner's hold and is watched."""
    livekit.add_room("orphan", json.dumps({"auth_id": "acme"}))
    assert reconciler.sweep().repairs == {}
    assert state.issuer.ownership.holder("orphan") is None
    holds = state.issuer.ownership.holds.store
    if holds.backend == "sqlite":
        with holds._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value, expires) VALUES ('recovering', 'x', ?)",
                (holds._now() + MINUTE,),
            )
    else:
        holds.client.set("tokensvc:recovering", holds.connection.time_ms() + MINUTE)
    assert reconciler.sweep().repairs == {"name_rebuilt": 1}
    assert state.issuer.ownership.holder("orphan") == "acme"
    assert "orphan" in state.reconcile_store.watched()


def test_one_sweeper_sweeps_at_a_time(state, reconciler):
    """Two sweepers on one storage: the lease lets one sweep; the other takes over once the
    first gives it up."""
    first, second = ReconcileLoop(reconciler), ReconcileLoop(reconciler_of(state))
    assert first.holds_lease()
    assert not second.holds_lease()
    state.reconcile_store.release(LEASE_NAME, first.owner)
    assert second.holds_lease()
    first.leased_until = 0.0
    assert not first.holds_lease()


def test_a_sweeper_whose_sweeps_fail_gives_its_lease_to_another(state, reconciler, livekit):
    """A sweeper that cannot reach LiveKit (every full sweep fails) keeps the lease for one
    failure, gives it up at the second and stays back for one lease: another sweeper takes it
    and sweeps."""
    first, second = ReconcileLoop(reconciler), ReconcileLoop(reconciler_of(state))
    livekit.faults.error = "unavailable"
    first.tick()
    assert (first.sweeps, first.failed) == (0, 1)
    assert not second.holds_lease()
    first.next_full = 0.0
    first.tick()
    assert (first.failed, first.holds_lease()) == (0, False)
    livekit.faults.error = None
    assert second.holds_lease()
    second.tick()
    assert second.sweeps == 1
    first.next_full = 0.0
    first.tick()
    assert first.sweeps == 0  # standing back: it did not take the lease again


def test_a_join_no_event_reported_beyond_the_tenants_own_quota_is_removed(
    make_app, backend, livekit
):
    """The operator caps acme at 1 participant in its record (no deployment default): of two
    participants no event reported, the first is metered, the second is removed, told the
    record's limit (its session ends at the next sweep, as LiveKit no longer lists it); the
    room, at its quota, is listed at each sweep after."""
    admin = "operator-token-" + "0123456789abcdef" * 2
    app = make_app(STORAGE_URL=backend, ADMIN_TOKEN=admin, TENANT_RECORD_CACHE="0")
    capped = app.test_client().patch(
        "/admin/tenants/acme",
        json={"max_participants": 1},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert capped.status_code == 200, capped.json
    state = service_state(app)
    reconciler = reconciler_of(state)
    own(state, "room")
    seat(livekit, "room", "alice")
    seat(livekit, "room", "bob")
    livekit.sent_data.clear()
    done = reconciler.sweep()
    assert done.repairs == {"session_opened": 2, "quota_removed": 1}
    assert livekit.participants_of("room") == ["alice"]
    (told,) = livekit.sent_data
    assert list(told.destination_identities) == ["bob"]
    assert json.loads(told.data) == {
        "code": "quota_exceeded",
        "quota": "max_participants",
        "limit": 1,
    }
    usage = state.issuer.usage
    with pytest.raises(Exception) as full:  # alice holds the one seat, bob none
        usage.check_mint("acme", "room", "carol", {})
    assert (full.value.error_code, full.value.extra["limit"]) == ("quota_exceeded", 1)
    assert usage.check_mint("acme", "room", "alice", {}) is False
    # bob, removed, is no longer listed: his session ends when the room was last seen
    assert reconciler.sweep().repairs == {"session_closed": 1}
    again = reconciler.sweep()
    assert again.repairs == {}
    assert again.calls.get("ListParticipants") == 1  # the counts agree, but at its quota: listed
