"""Usage and quotas per tenant, on the emulator with LiveKit's events signed as LiveKit signs them,
on both backends, with the storage's clock moved instead of waiting: totals and peaks, duplicated
and reordered events that change nothing, open sessions counted to now, tenants that never see
each other's rooms, the operator's export, and quotas at mint (nothing written when refused; two
instances racing under `max_rooms` 1) and at join."""

import csv
import io
import json
import threading
import time
from datetime import UTC, datetime

import pytest

from support.storage import records
from support.tokens import BODY, signed_webhook
from tokensvc.context import service_state
from tokensvc.tenants import CLI_OPERATOR

ACME = json.dumps({"auth_id": "acme"})
GLOBEX = json.dumps({"auth_id": "globex"})
#: The events' times: a whole second some minutes ago (events are fresh for 5 minutes).
#: The start of each test's call, two minutes ago: set anew for every test (fresh_start),
#: since events more than 5 minutes old change nothing and a whole run takes longer than that.
T0 = int(time.time()) - 120


@pytest.fixture(autouse=True)
def fresh_start():
    """T0 two minutes before this test."""
    global T0
    T0 = int(time.time()) - 120


@pytest.fixture
def app(make_app, backend):
    """The service on this test's backend, with metrics on."""
    return make_app(STORAGE_URL=backend, METRICS_ENABLED="true")


def rfc3339(seconds: float) -> str:
    """Epoch seconds as RFC 3339 UTC."""
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def event(
    client,
    kind,
    room,
    at,
    owner=ACME,
    sid=None,
    identity=None,
    joined=None,
    tenant=None,
    event_id=None,
):
    """Deliver one signed event for `room` created at `at` (epoch seconds); a participant event
    names participant `sid`/`identity`, who joined at `joined`. Return the response."""
    participant = None
    if sid is not None:
        participant = {
            "sid": sid,
            "identity": identity or sid,
            "attributes": {"tokensvc.tenant": tenant} if tenant else {},
        }
        if joined is not None:
            participant["joinedAt"] = str(joined)
    body, headers = signed_webhook(
        kind, room, metadata=owner, participant=participant, created_at=at, event_id=event_id
    )
    response = client.post("/livekit/webhook", data=body, headers=headers)
    assert response.status_code == 200, response.json
    return response


def a_call(room="standup", owner=ACME, tenant="acme", start=None):
    """The events of one call: the room starts at `start`; alice is in from +0 to +20 s, bob
    from +10 to +30 s; the room finishes at +35 s (`start`: T0). As (kind, room, at, keyword
    arguments)."""
    start = T0 if start is None else start
    people = dict(owner=owner, tenant=tenant)
    return [
        ("room_started", room, start, dict(owner=owner)),
        (
            "participant_joined",
            room,
            start,
            dict(sid="PA_alice" + room, identity="alice", joined=start, **people),
        ),
        (
            "participant_joined",
            room,
            start + 10,
            dict(sid="PA_bob" + room, identity="bob", joined=start + 10, **people),
        ),
        (
            "participant_left",
            room,
            start + 20,
            dict(sid="PA_alice" + room, identity="alice", joined=start, **people),
        ),
        (
            "participant_left",
            room,
            start + 30,
            dict(sid="PA_bob" + room, identity="bob", joined=start + 10, **people),
        ),
        ("room_finished", room, start + 35, dict(owner=owner)),
    ]


def deliver(client, events, ids=None):
    """Deliver events in the order given (with the event ids given, else fresh ones)."""
    for number, (kind, room, at, extra) in enumerate(events):
        event(client, kind, room, at, event_id=ids[number] if ids else None, **extra)


def usage(client, tenants, tenant="acme", start=None, end=None, **claims):
    """GET /livekit/usage for `tenant` over [start, end) (epoch seconds; start: a minute before
    T0; end: now)."""
    query = {"from": rfc3339(T0 - 60 if start is None else start)}
    if end is not None:
        query["to"] = rfc3339(end)
    response = client.get(
        "/livekit/usage", query_string=query, headers=tenants.headers(tenant, **claims)
    )
    assert response.status_code == 200, response.json
    return response.json


def counter(client, series: str) -> float:
    """The value of one series on /metrics (0 when absent); counters are per process, so tests
    compare before and after."""
    for line in client.get("/metrics").get_data(as_text=True).splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def mint(client, tenants, tenant="acme", room="standup", identity="alice", **claims):
    """Ask for a token; return the response."""
    return client.post(
        "/livekit/token",
        json={**BODY, "room_name": room, "participant_identity": identity},
        headers=tenants.headers(tenant, **claims),
    )


def test_a_call_adds_up(app, tenants):
    """alice 20 s and bob 20 s in a room open 35 s: 40 participant-seconds, 35 room-seconds,
    peak 2, 2 participants; a period that cuts the call counts only its part."""
    client = app.test_client()
    assert mint(client, tenants).status_code == 200
    deliver(client, a_call())
    found = usage(client, tenants)
    assert found["participant_seconds"] == 40.0 and found["room_seconds"] == 35.0
    assert found["rooms"] == [
        {
            "room_name": "standup",
            "participant_seconds": 40.0,
            "room_seconds": 35.0,
            "peak_participants": 2,
            "participants": 2,
        }
    ]
    part = usage(client, tenants, start=T0 + 15, end=T0 + 25)  # alice 5.5 s, bob 10 s
    assert part["participant_seconds"] == pytest.approx(15.5, abs=0.001)
    assert part["rooms"][0]["peak_participants"] == 2
    later = usage(client, tenants, start=T0 + 20.5, end=T0 + 60)  # bob alone
    assert later["rooms"][0]["peak_participants"] == 1
    assert later["rooms"][0]["participants"] == 1


def test_duplicated_and_reordered_events_change_nothing(app, tenants):
    """The same call delivered in order, then again with the same ids, then again with new ids
    (a redelivery LiveKit numbered anew), then in reverse order into another room: the totals
    of each room are the first delivery's."""
    client = app.test_client()
    assert mint(client, tenants, room="in-order").status_code == 200
    assert mint(client, tenants, room="reversed").status_code == 200
    ordered = a_call("in-order")
    ids = [f"EV_{number}" for number in range(len(ordered))]
    deliver(client, ordered, ids)
    first = usage(client, tenants)
    deliver(client, ordered, ids)
    deliver(client, ordered)
    deliver(client, list(reversed(a_call("reversed"))))
    again = usage(client, tenants)
    rooms = {room["room_name"]: room for room in again["rooms"]}
    assert rooms["in-order"] == first["rooms"][0]
    assert {**rooms["reversed"], "room_name": "in-order"} == first["rooms"][0]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'tokensvc_livekit_events_total{outcome="duplicate",type="participant_joined"}' in metrics


def test_a_leave_before_its_join_settles_the_session(app, tenants):
    """participant_left (carrying its join time, as LiveKit's does) before participant_joined:
    the session is closed at once, and the late join neither reopens it nor takes a seat."""
    client = app.test_client()
    assert mint(client, tenants).status_code == 200
    event(
        client,
        "participant_left",
        "standup",
        T0 + 12,
        sid="PA_x",
        identity="x",
        joined=T0,
        tenant="acme",
    )
    event(
        client,
        "participant_joined",
        "standup",
        T0,
        sid="PA_x",
        identity="x",
        joined=T0,
        tenant="acme",
    )
    found = usage(client, tenants)
    assert found["participant_seconds"] == 12.0
    holds = service_state(app).issuer.ownership.holds
    holds.clock.advance(600_000)
    assert usage(client, tenants, end=time.time() + 600)["participant_seconds"] == 12.0


def test_open_sessions_count_to_now(app, tenants):
    """A participant that joined and has not left: counted to the storage's now, which a
    moved clock moves on; the room too."""
    client = app.test_client()
    assert mint(client, tenants).status_code == 200
    now = int(time.time())
    event(client, "room_started", "standup", now)
    event(
        client,
        "participant_joined",
        "standup",
        now,
        sid="PA_a",
        identity="alice",
        joined=now,
        tenant="acme",
    )
    service_state(app).issuer.ownership.holds.clock.advance(60_000)
    found = usage(client, tenants, start=now - 10)
    assert 58.5 <= found["participant_seconds"] <= 61.5
    assert 58.5 <= found["room_seconds"] <= 61.5
    assert found["rooms"][0]["peak_participants"] == 1


def test_tenants_see_only_their_own_rooms(app, tenants):
    """acme's call and globex's call: each tenant's usage has its own room and numbers only;
    a tenant with no rooms gets zeros."""
    client = app.test_client()
    assert mint(client, tenants, "acme", room="acme-room").status_code == 200
    assert mint(client, tenants, "globex", room="globex-room").status_code == 200
    deliver(client, a_call("acme-room"))
    globex_call = a_call("globex-room", owner=GLOBEX, tenant="globex")
    deliver(client, [e for e in globex_call if "bob" not in str(e[3].get("identity"))])
    acme, globex = usage(client, tenants, "acme"), usage(client, tenants, "globex")
    assert [room["room_name"] for room in acme["rooms"]] == ["acme-room"]
    assert [room["room_name"] for room in globex["rooms"]] == ["globex-room"]
    assert (acme["participant_seconds"], globex["participant_seconds"]) == (40.0, 20.0)
    nobody = usage(client, tenants, "initech")
    assert (nobody["participant_seconds"], nobody["room_seconds"], nobody["rooms"]) == (0, 0, [])


def test_per_tenant_names_are_the_tenants_own(make_app, backend, tenants):
    """ROOM_NAMES=per-tenant: two tenants' rooms called "standup" are two LiveKit rooms; each
    tenant's usage names its own "standup" with its own numbers."""
    app = make_app(STORAGE_URL=backend, ROOM_NAMES="per-tenant")
    client = app.test_client()
    names = {}
    for tenant in ("acme", "globex"):
        response = mint(client, tenants, tenant)
        assert response.status_code == 200
        names[tenant] = response.json["livekit_room_name"]
    deliver(client, a_call(names["acme"]))
    deliver(client, a_call(names["globex"], owner=GLOBEX, tenant="globex")[:2])
    acme, globex = usage(client, tenants, "acme"), usage(client, tenants, "globex")
    assert [room["room_name"] for room in acme["rooms"]] == ["standup"]
    assert [room["room_name"] for room in globex["rooms"]] == ["standup"]
    assert acme["participant_seconds"] == 40.0
    assert globex["rooms"][0]["participants"] == 1


@pytest.mark.parametrize(
    "query, field",
    [
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-01-01T00:00:00"}, "from"),  # no offset
        ({"from": rfc3339(T0), "to": "2026-13-01T00:00:00Z"}, "to"),
        ({"from": rfc3339(T0), "to": rfc3339(T0 - 1)}, "from"),
    ],
)
def test_a_bad_period_is_400(app, tenants, query, field):
    """A time that is not RFC 3339 with an offset, or `from` not before `to`: 400
    invalid_request naming the field."""
    response = app.test_client().get(
        "/livekit/usage", query_string=query, headers=tenants.headers("acme")
    )
    assert (response.status_code, response.json["code"]) == (400, "invalid_request")
    assert field in response.json["fields"]


def test_usage_needs_its_scope_and_a_tenant(app, tenants, livekit):
    """`usage:read` reads; a bearer with other scopes gets 403 scope_forbidden naming it; no
    bearer: 401."""
    client = app.test_client()
    ok = client.get("/livekit/usage", headers=tenants.headers("acme", scope="usage:read"))
    assert ok.status_code == 200 and ok.json["rooms"] == []
    refused = client.get(
        "/livekit/usage", headers=tenants.headers("acme", scope="rooms:read tokens:create")
    )
    assert (refused.status_code, refused.json["code"], refused.json["scope"]) == (
        403,
        "scope_forbidden",
        "usage:read",
    )
    assert client.get("/livekit/usage").status_code == 401


def test_the_operator_exports_every_tenant(app, tenants):
    """`flask usage --format csv|json`: one row per tenant with its totals."""
    client = app.test_client()
    for tenant, owner in (("acme", ACME), ("globex", GLOBEX)):
        assert mint(client, tenants, tenant, room=f"{tenant}-room").status_code == 200
        deliver(client, a_call(f"{tenant}-room", owner=owner, tenant=tenant))
    runner = app.test_cli_runner()
    period = ["--from", rfc3339(T0 - 60), "--to", rfc3339(T0 + 60)]
    result = runner.invoke(args=["usage", *period, "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert rows == [
        {"tenant": tenant, "participant_seconds": "40.0", "room_seconds": "35.0", "rooms": "1"}
        for tenant in ("acme", "globex")
    ]
    result = runner.invoke(args=["usage", *period, "--format", "json"])
    document = json.loads(result.output)
    assert [t["tenant"] for t in document["tenants"]] == ["acme", "globex"]
    assert document["tenants"][0]["participant_seconds"] == 40.0
    bad = runner.invoke(args=["usage", "--from", "soon"])
    assert bad.exit_code != 0 and "--from" in bad.output


# Quotas.


def storage_snapshot(app, storage_url):
    """Everything the storage holds: the SQLite rows, or every Redis key's value."""
    store = service_state(app).issuer.ownership.holds.store
    if not hasattr(store, "client"):
        return records(storage_url)
    return {key: store.client.dump(key) for key in sorted(store.client.keys("*"))}


def test_max_rooms_refuses_a_new_room_and_writes_nothing(make_app, backend, tenants, livekit):
    """QUOTA_MAX_ROOMS=1: acme's first room is issued; a second new room is 403 quota_exceeded
    naming the quota, with nothing written (LiveKit is only asked whose the name is: ListRooms);
    tokens for the room it has go on; a claim never raises the quota."""
    app = make_app(STORAGE_URL=backend, QUOTA_MAX_ROOMS="1", METRICS_ENABLED="true")
    client = app.test_client()
    refusals = 'tokensvc_quota_refusals_total{quota="max_rooms"}'
    counted = counter(client, refusals)
    assert mint(client, tenants, room="first").status_code == 200
    livekit.calls.clear()
    before = storage_snapshot(app, backend)
    refused = mint(client, tenants, room="second")
    assert (
        refused.status_code,
        refused.json["code"],
        refused.json["quota"],
        refused.json["limit"],
    ) == (403, "quota_exceeded", "max_rooms", 1)
    assert livekit.calls == {"ListRooms": 1}
    assert storage_snapshot(app, backend) == before
    assert mint(client, tenants, room="first", identity="bob").status_code == 200
    raised = mint(client, tenants, room="second", max_rooms=2)
    assert (raised.json["code"], raised.json["limit"]) == ("quota_exceeded", 1)
    assert counter(client, refusals) == counted + 2


def test_a_finished_room_frees_its_place_and_a_refused_claim_keeps_none(
    make_app, backend, tenants, livekit
):
    """max_rooms 1: room_finished of acme's room lets it start another; a token refused for a
    name another tenant holds releases the place it had reserved."""
    app = make_app(STORAGE_URL=backend, QUOTA_MAX_ROOMS="1")
    client = app.test_client()
    assert mint(client, tenants, "globex", room="globex-room").status_code == 200
    assert mint(client, tenants, room="globex-room").json["code"] == "room_forbidden"
    assert mint(client, tenants, room="first").status_code == 200
    event(client, "room_started", "first", int(time.time()))
    assert mint(client, tenants, room="second").json["code"] == "quota_exceeded"
    event(client, "room_finished", "first", int(time.time()))
    assert mint(client, tenants, room="second").status_code == 200


def test_two_instances_racing_for_two_new_rooms_under_max_rooms_1(make_app, backend, tenants):
    """Two app instances on one storage; a tenant with max_rooms 1 asks both at the same moment,
    each for another new room: exactly one token, the other 403 quota_exceeded (20 tenants)."""
    apps = [make_app(STORAGE_URL=backend, QUOTA_MAX_ROOMS="1") for _ in range(2)]
    for round_no in range(20):
        tenant = f"racer-{round_no}"
        barrier, answers = threading.Barrier(2), []

        def ask(app, room, tenant=tenant, barrier=barrier, answers=answers):
            client, headers = app.test_client(), tenants.headers(tenant)
            body = {**BODY, "room_name": room}
            barrier.wait()
            answers.append(client.post("/livekit/token", json=body, headers=headers))

        threads = [
            threading.Thread(target=ask, args=(app, f"{tenant}-{n}")) for n, app in enumerate(apps)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        codes = sorted((r.status_code, (r.json or {}).get("code")) for r in answers)
        assert codes == [(200, None), (403, "quota_exceeded")], [r.json for r in answers]


def test_max_participants_at_mint_and_at_join(make_app, backend, tenants, livekit):
    """max_participants 2 in acme's record: two joins take the seats; a third join (a token
    minted earlier) is told why (a data message on topic tokensvc) and removed at once, and
    counted; a token for a third identity is 403, one for a seated identity (a reconnect) is
    not; when one leaves, the next token is issued."""
    app = make_app(STORAGE_URL=backend, METRICS_ENABLED="true")
    service_state(app).tenants.store.change("acme", {"max_participants": 2})
    client = app.test_client()
    series = (
        "tokensvc_quota_removals_total",
        'tokensvc_quota_refusals_total{quota="max_participants"}',
        'tokensvc_usage_events_total{outcome="over_quota",type="participant_joined"}',
    )
    counted = [counter(client, name) for name in series]
    for identity in ("alice", "bob", "carol"):
        assert mint(client, tenants, identity=identity).status_code == 200
    now = int(time.time())
    livekit.calls.clear()
    for identity in ("alice", "bob"):
        event(
            client,
            "participant_joined",
            "standup",
            now,
            sid=f"PA_{identity}",
            identity=identity,
            joined=now,
            tenant="acme",
        )
    assert livekit.calls == {}
    livekit.sent_data.clear()
    event(
        client,
        "participant_joined",
        "standup",
        now,
        sid="PA_carol",
        identity="carol",
        joined=now,
        tenant="acme",
    )
    assert livekit.calls == {"SendData": 1, "RemoveParticipant": 1}
    (told,) = livekit.sent_data
    assert (told.room, list(told.destination_identities), told.topic) == (
        "standup",
        ["carol"],
        "tokensvc",
    )
    assert json.loads(told.data) == {
        "code": "quota_exceeded",
        "quota": "max_participants",
        "limit": 2,
    }
    refused = mint(client, tenants, identity="dave")
    assert (refused.status_code, refused.json["quota"]) == (403, "max_participants")
    assert mint(client, tenants, identity="alice").status_code == 200
    event(
        client,
        "participant_left",
        "standup",
        now + 1,
        sid="PA_bob",
        identity="bob",
        joined=now,
        tenant="acme",
    )
    assert mint(client, tenants, identity="dave").status_code == 200
    assert [counter(client, name) for name in series] == [n + 1 for n in counted]


def test_a_claim_lowers_its_own_request_only(make_app, backend, tenants, livekit):
    """QUOTA_MAX_PARTICIPANTS=5: a token request whose JWT says max_participants 1 is judged by
    1 and nothing is kept: the joins of three earlier tokens all stay; a JWT saying 10 raises
    nothing. The operator's record lowering it to 1 applies to every later join."""
    app = make_app(STORAGE_URL=backend, QUOTA_MAX_PARTICIPANTS="5")
    client = app.test_client()
    for identity in ("a", "b", "c"):
        assert mint(client, tenants, identity=identity).status_code == 200
    assert mint(client, tenants, identity="d", max_participants=1).status_code == 200
    livekit.calls.clear()
    now = int(time.time())

    def join(identity):
        event(
            client,
            "participant_joined",
            "standup",
            now,
            sid=f"PA_{identity}",
            identity=identity,
            joined=now,
            tenant="acme",
        )

    for identity in ("a", "b", "c"):
        join(identity)
    assert livekit.calls == {}
    lowered = mint(client, tenants, identity="e", max_participants=1)
    assert (lowered.json["code"], lowered.json["limit"]) == ("quota_exceeded", 1)
    assert mint(client, tenants, identity="e", max_participants=10).status_code == 200
    service_state(app).tenants.set_limits("acme", {"max_participants": 1}, CLI_OPERATOR)
    join("d")
    assert livekit.calls == {"SendData": 1, "RemoveParticipant": 1}


@pytest.mark.parametrize("claim", ["2", -1, 1.5, True])
def test_a_quota_claim_that_is_no_whole_number_is_401(app, tenants, claim):
    """A max_rooms claim that is not a whole number from 0: 401 naming the claim."""
    response = app.test_client().post(
        "/livekit/token", json=BODY, headers=tenants.headers("acme", max_rooms=claim)
    )
    assert response.status_code == 401
    assert "'max_rooms'" in response.json["error"]
