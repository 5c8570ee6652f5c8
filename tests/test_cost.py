"""The cost table of `tokensvc/ownership.py`, measured: LiveKit calls (counted by the emulator)
and storage calls (counted by the service's own metrics) per case, on both backends."""

import re

import pytest

from tokensvc.context import service_state

ROOM = "cost-room"


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


@pytest.fixture
def measure(make_app, backend, livekit, tenants):
    """measure(tenant, room) -> (LiveKit calls, storage calls) of one token request (200 or 403
    alike), on an app with this test's backend."""
    app = make_app(STORAGE_URL=backend, METRICS_ENABLED="true")
    client = app.test_client()

    def one(tenant, room=ROOM, status=200):
        livekit.calls.clear()
        before = storage_calls(client)
        response = tenants.ask(client, tenant, room=room)
        assert response.status_code == status, response.json
        return sum(livekit.calls.values()), storage_calls(client) - before

    one.app = app
    return one


def test_each_case_costs_what_the_table_says(measure, livekit):
    """A new name: 2 LiveKit calls and 2 storage calls; the holder's own name: 0 and 1; a name
    another holds: 0 and 1; a name whose grace is over, passed on: 2 and 4."""
    assert measure("acme") == (2, 2)
    assert measure("acme") == (0, 1)
    assert measure("globex", status=403) == (0, 1)
    holds = service_state(measure.app).issuer.ownership.holds
    livekit.close_room(ROOM)
    hold = holds.get(ROOM)
    holds.clock.advance(hold.until - hold.now + 1)
    assert measure("globex", status=403) == (1, 2)  # ListRooms, then the grace starts
    hold = holds.get(ROOM)
    holds.clock.advance(hold.until - hold.now + 1)
    assert measure("globex") == (2, 4)


def test_unauthenticated_costs_nothing(make_app, livekit, tenants):
    """No tenant key at all: no LiveKit call, no storage (there is none)."""
    app = make_app(AUTH_JWT_SECRET=None, AUTH_REQUIRED=None, METRICS_ENABLED="true")
    client = app.test_client()
    before = storage_calls(client)
    assert tenants.ask(client, None, room=ROOM).status_code == 200
    assert livekit.calls == {} and storage_calls(client) == before
