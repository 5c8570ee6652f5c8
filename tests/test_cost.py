"""The cost tables of `tokensvc/ownership.py`, measured: LiveKit calls (counted by the emulator)
and storage calls (counted by the service's own metrics) per case, on both backends: the token
route (with and without a quota), the management routes and LiveKit's webhook."""

import json
import re

import pytest

from support.tokens import signed_webhook
from tokensvc.context import service_state

ROOM = "cost-room"
ACME = json.dumps({"auth_id": "acme"})


def storage_calls(client) -> int:
    """The storage calls the service counted so far (every operation, every outcome)."""
    text = client.get("/metrics").get_data(as_text=True)
    return int(
        sum(
            float(value)
            for value in re.findall(
                r"^tokensvc_storage_calls_total\{[^}]*\} ([0-9.e+]+)$", text, re.MULTILINE
            )
        )
    )


#: Each tenant's record is read once and then kept (TENANT_RECORD_CACHE) for the whole test: a
#: tenant's first request costs one storage call more (`get` of its record), the others none.
CACHED = {"TENANT_RECORD_CACHE": "60"}


@pytest.fixture
def measure(make_app, backend, livekit, tenants):
    """measure(tenant, room) -> (LiveKit calls, storage calls) of one token request (200 or 403
    alike), on an app with this test's backend."""
    app = make_app(STORAGE_URL=backend, METRICS_ENABLED="true", **CACHED)
    client = app.test_client()

    def one(tenant, room=ROOM, status=200):
        livekit.calls.clear()
        before = storage_calls(client)
        response = tenants.ask(client, tenant, room=room)
        assert response.status_code == status, response.json
        return sum(livekit.calls.values()), storage_calls(client) - before

    one.app = app
    return one


def cost(client, livekit, request, status=200) -> tuple[int, int]:
    """(LiveKit calls, storage calls) of `request()`, a request through `client` answered
    `status`."""
    livekit.calls.clear()
    before = storage_calls(client)
    response = request()
    assert response.status_code == status, response.json
    return sum(livekit.calls.values()), storage_calls(client) - before


def test_each_case_costs_what_the_table_says(measure, livekit):
    """A new name: 2 LiveKit calls and 2 storage calls; the holder's own name: 0 and 1; a name
    another holds: 0 and 1; a name whose hold ran out, its room listed: 1 and 2 (refused); a name
    whose grace is over, passed on: 2 and 5 (the name goes under watch). Each tenant's first
    request: 1 more (its record)."""
    assert measure("acme") == (2, 2 + 1)
    assert measure("acme") == (0, 1)
    assert measure("globex", status=403) == (0, 1 + 1)
    holds = service_state(measure.app).issuer.ownership.holds
    hold = holds.get(ROOM)
    holds.clock.advance(hold.until - hold.now + 1)
    assert measure("globex", status=403) == (1, 2)  # ListRooms lists it: kept for a grace
    hold = holds.get(ROOM)
    holds.clock.advance(hold.until - hold.now + 1)
    livekit.close_room(ROOM)
    hold = holds.get(ROOM)
    holds.clock.advance(hold.until - hold.now + 1)
    assert measure("globex", status=403) == (1, 2)  # ListRooms, then the grace starts
    hold = holds.get(ROOM)
    holds.clock.advance(hold.until - hold.now + 1)
    assert measure("globex") == (2, 5)


def test_unauthenticated_costs_nothing(make_app, livekit, tenants):
    """No tenant key at all: no LiveKit call, no storage (there is none)."""
    app = make_app(AUTH_JWT_SECRET=None, AUTH_REQUIRED=None, METRICS_ENABLED="true")
    client = app.test_client()
    before = storage_calls(client)
    assert tenants.ask(client, None, room=ROOM).status_code == 200
    assert livekit.calls == {} and storage_calls(client) == before


def test_a_new_name_livekit_gives_another_owner_asks_once_and_refuses(measure, livekit):
    """A name the record does not know whose room LiveKit's store gives globex: one ListRooms,
    nothing written to LiveKit; 4 storage calls (claim and lock, read, record globex's, unlock)."""
    livekit.add_room(ROOM, json.dumps({"auth_id": "globex"}))
    assert measure("acme", status=403) == (1, 4 + 1)  # (and acme's record, read first)
    assert service_state(measure.app).issuer.ownership.holds.get(ROOM).holder == "globex"


def test_the_quota_check_at_mint_costs_two_storage_calls(make_app, backend, livekit, tenants):
    """With max_rooms set (QUOTA_MAX_ROOMS=1): each case costs its row plus two storage calls
    (names_of, check_mint) once the name is the tenant's; a new name the quota refuses costs its
    claim, LiveKit's word (ListRooms, nothing written), those two and the claim's drop; with
    max_participants alone, one (check_mint)."""
    app = make_app(STORAGE_URL=backend, METRICS_ENABLED="true", QUOTA_MAX_ROOMS="1", **CACHED)
    client = app.test_client()

    def ask(room=ROOM, status=200, tenant="acme"):
        return cost(client, livekit, lambda: tenants.ask(client, tenant, room=room), status)

    assert ask() == (2, 1 + 2 + 2)  # acme's record, then a new name's 2, then the quota's 2
    assert ask() == (0, 1 + 2)
    assert ask(room="a-second-room", status=403) == (1, 2 + 2)
    assert ask(tenant="globex", status=403) == (0, 1 + 1)  # another's name: no quota asked
    capped = make_app(STORAGE_URL=backend, METRICS_ENABLED="true", **CACHED)
    service_state(capped).tenants.store.change("initech", {"max_participants": 3})
    client = capped.test_client()
    assert ask(room="initech-room", tenant="initech") == (2, 1 + 2 + 1)


def test_without_the_cache_every_request_reads_the_record(make_app, backend, livekit, tenants):
    """TENANT_RECORD_CACHE=0: the holder's own name costs 2 storage calls (its record, read once
    for the request, and the claim), every time."""
    app = make_app(STORAGE_URL=backend, METRICS_ENABLED="true", TENANT_RECORD_CACHE="0")
    client = app.test_client()
    assert tenants.ask(client, "acme", room=ROOM).status_code == 200
    for _ in range(2):
        assert cost(client, livekit, lambda: tenants.ask(client, "acme", room=ROOM)) == (0, 2)


def test_the_management_routes_cost_what_the_table_says(make_app, backend, livekit, tenants):
    """On a name whose hold is checked: list 1 LiveKit call and 1 storage call (none and 1 for a
    tenant without names, plus its record); get 2 and 1; a participant that is not there 1 and
    1, and its audit entry (404); end 2 and 2, and its audit entry."""
    app = make_app(STORAGE_URL=backend, METRICS_ENABLED="true", **CACHED)
    client = app.test_client()
    acme, initech = tenants.headers("acme"), tenants.headers("initech")
    assert tenants.ask(client, "acme", room=ROOM).status_code == 200
    routes = {
        "list": lambda: client.get("/livekit/rooms", headers=acme),
        "list none": lambda: client.get("/livekit/rooms", headers=initech),
        "get": lambda: client.get(f"/livekit/rooms/{ROOM}", headers=acme),
        "remove": lambda: client.delete(
            "/livekit/participant",
            json={"room_name": ROOM, "participant_identity": "nobody"},
            headers=acme,
        ),
        "end": lambda: client.delete(f"/livekit/rooms/{ROOM}", headers=acme),
    }
    assert cost(client, livekit, routes["list"]) == (1, 1)
    assert cost(client, livekit, routes["list none"]) == (0, 1 + 1)
    assert cost(client, livekit, routes["get"]) == (2, 1)
    assert cost(client, livekit, routes["remove"], status=404) == (1, 1 + 1)
    assert cost(client, livekit, routes["end"]) == (2, 2 + 1)


def test_a_livekit_event_of_a_held_room_costs_what_the_table_says(
    make_app, backend, livekit, tenants
):
    """An event of acme's room, its participant's, with one endpoint of acme's subscribed: no
    LiveKit call; room_started 6 storage calls, participant_joined 7, track_published 5. A join
    of globex's participant: RemoveParticipant, and 5 storage calls (the room put under watch;
    nothing fanned out)."""
    app = make_app(
        STORAGE_URL=backend, METRICS_ENABLED="true", TENANT_WEBHOOKS_ALLOW_PRIVATE="true", **CACHED
    )
    client = app.test_client()
    acme = tenants.headers("acme")
    hook = {"url": "http://127.0.0.1:9/hooks"}
    assert client.post("/livekit/webhook-endpoints", json=hook, headers=acme).status_code == 201
    assert tenants.ask(client, "acme", room=ROOM).status_code == 200
    alice = {"identity": "alice", "sid": "PA_1", "attributes": {"tokensvc.tenant": "acme"}}
    track = {"sid": "TR_1", "type": "AUDIO", "source": "MICROPHONE", "name": "mic"}

    def event(kind, **fields):
        body, headers = signed_webhook(kind, ROOM, metadata=ACME, **fields)
        return lambda: client.post("/livekit/webhook", data=body, headers=headers)

    assert cost(client, livekit, event("room_started")) == (0, 6)
    assert cost(client, livekit, event("participant_joined", participant=alice)) == (0, 7)
    published = event("track_published", participant=alice, track=track)
    assert cost(client, livekit, published) == (0, 5)
    mallory = {"identity": "mallory", "sid": "PA_2", "attributes": {"tokensvc.tenant": "globex"}}
    assert cost(client, livekit, event("participant_joined", participant=mallory)) == (1, 5)
    deliveries = client.get("/livekit/webhook-deliveries", headers=acme).json["deliveries"]
    assert len(deliveries) == 3
