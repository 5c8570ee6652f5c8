"""Usage and quotas on the real livekit-server, its webhooks pointed at the service, with real
participants, on both backends: two of acme's participants in one room for about 10 s and one of
globex's for about 5 s add up to about 20 and 5 participant-seconds; LiveKit's own events
delivered again twice, reversed, change nothing; `max_participants` 2 in acme's record refuses a
third token, and of three tokens minted before the operator lowered it, joining at once (on one
node, and through two nodes sharing one Redis), two stay."""

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask import request

from support.cluster import Cluster
from support.livekit import find_livekit_server
from support.processes import unavailable
from support.tokens import BODY, webhook_headers
from tokensvc.context import service_state
from tokensvc.storage import open_holds, open_tenants
from tokensvc.tenants import CLI_OPERATOR

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("media_network")]


@pytest.fixture
def metered(make_webhooked, backend):
    """A real livekit-server whose webhooks go to the service (on this test's backend), rooms
    closing a second after they empty; every webhook body the service received is kept.
    (app, test client, server, bodies)."""
    app, server = make_webhooked(
        STORAGE_URL=backend, ROOM_EMPTY_TIMEOUT="1", ROOM_DEPARTURE_TIMEOUT="1"
    )
    bodies = []

    @app.before_request
    def keep_the_body():
        """Keep each webhook body as LiveKit sent it."""
        if request.path == "/livekit/webhook":
            bodies.append(request.get_data(as_text=True))

    return app, app.test_client(), server, bodies


def token(client, tenants, tenant, room, identity, **claims):
    """Ask for a token: (status, body)."""
    response = client.post(
        "/livekit/token",
        headers=tenants.headers(tenant, **claims),
        json={**BODY, "room_name": room, "participant_identity": identity},
    )
    return response.status_code, response.json


def usage(client, tenants, tenant):
    """The tenant's usage this month so far."""
    response = client.get("/livekit/usage", headers=tenants.headers(tenant))
    assert response.status_code == 200, response.json
    return response.json


def wait_for(condition, seconds=20.0):
    """Poll until `condition()` holds; whether it did."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def join_at_once(call, server, tokens: dict) -> None:
    """Join every (label -> token) at the same moment."""
    with ThreadPoolExecutor(len(tokens)) as pool:
        list(pool.map(lambda item: call.join(item[0], server.ws_url, item[1]), tokens.items()))


def leave(call, *labels) -> None:
    """The labelled participants leave."""
    for label in labels:
        call.run(call.rooms[label].disconnect())


def test_a_call_is_metered_per_tenant_and_replays_change_nothing(metered, tenants, call, capsys):
    """acme: a1 and a2 in acme-room for about 10 s; globex: b1 in globex-room for about 5 s.
    acme's usage is about 20 participant-seconds with a peak of 2, globex's about 5; neither sees
    the other's room; the operator's CSV has both. Every event LiveKit sent, delivered again
    twice in reverse order (once with its own ids, once with new ones), changes nothing."""
    app, client, server, bodies = metered
    holds = service_state(app).issuer.ownership.holds
    tokens = {}
    for tenant, room, label in (
        ("acme", "acme-room", "a1"),
        ("acme", "acme-room", "a2"),
        ("globex", "globex-room", "b1"),
    ):
        status, body = token(client, tenants, tenant, room, label)
        assert status == 200, body
        tokens[label] = body["token"]
    join_at_once(call, server, {"a1": tokens["a1"], "a2": tokens["a2"]})
    started = time.monotonic()
    call.join("b1", server.ws_url, tokens["b1"])
    time.sleep(5.0)
    leave(call, "b1")
    time.sleep(max(0.0, 10.0 - (time.monotonic() - started)))
    leave(call, "a1", "a2")
    assert wait_for(lambda: holds.get("acme-room").gone and holds.get("globex-room").gone)
    time.sleep(1.0)  # the room_finished events' metering, just after the record's
    acme, globex = usage(client, tenants, "acme"), usage(client, tenants, "globex")
    with capsys.disabled():
        print(
            f"\nreal livekit-server: acme {acme['participant_seconds']} participant-s, peak "
            f"{acme['rooms'][0]['peak_participants']}, room {acme['room_seconds']} s; globex "
            f"{globex['participant_seconds']} participant-s"
        )
    assert [room["room_name"] for room in acme["rooms"]] == ["acme-room"]
    assert [room["room_name"] for room in globex["rooms"]] == ["globex-room"]
    assert abs(acme["participant_seconds"] - 20) <= 2
    assert acme["rooms"][0]["peak_participants"] == 2 and acme["rooms"][0]["participants"] == 2
    assert abs(globex["participant_seconds"] - 5) <= 2
    result = app.test_cli_runner().invoke(args=["usage", "--format", "csv"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "tenant,participant_seconds,room_seconds,rooms"
    assert [line.split(",")[0] for line in lines[1:]] == ["acme", "globex"]

    kinds = {json.loads(body)["event"] for body in bodies}
    assert {"room_started", "participant_joined", "participant_left", "room_finished"} <= kinds
    for replay in (list(reversed(bodies)), [renumbered(body) for body in reversed(bodies)]):
        for body in replay:
            response = client.post("/livekit/webhook", data=body, headers=webhook_headers(body))
            assert response.status_code == 200
    assert usage(client, tenants, "acme")["rooms"] == acme["rooms"]
    assert usage(client, tenants, "globex")["rooms"] == globex["rooms"]


def renumbered(body: str) -> str:
    """A webhook body with a new event id (a redelivery the dedup cannot recognise)."""
    event = json.loads(body)
    event["id"] = "EV_replayed_" + event["id"]
    return json.dumps(event)


def test_max_participants_at_mint_and_at_join(metered, tenants, call, capsys):
    """Three tokens minted under a cap of 5; the operator lowers acme's to 2 (its record); the
    three join at once: two stay, one is removed. A token for another identity is then 403
    quota_exceeded naming the quota, also with a JWT that claims 10."""
    app, client, server, _ = metered
    tenant_records = service_state(app).tenants
    tenant_records.set_limits("acme", {"max_participants": 5}, CLI_OPERATOR)
    tokens = {}
    for identity in ("p1", "p2", "p3"):
        status, body = token(client, tenants, "acme", "capped", identity)
        assert status == 200, body
        tokens[identity] = body["token"]
    tenant_records.set_limits("acme", {"max_participants": 2}, CLI_OPERATOR)
    join_at_once(call, server, tokens)
    assert call.wait_for(lambda: any(("disconnected",) in call.events[p] for p in tokens), 10)
    time.sleep(2.0)
    stayed = [p for p in tokens if ("disconnected",) not in call.events[p]]
    with capsys.disabled():
        print(f"\nthree joins at once under max_participants 2: {len(stayed)} stayed")
    assert len(stayed) == 2
    status, body = token(client, tenants, "acme", "capped", "p4", max_participants=10)
    assert (status, body["code"], body["quota"]) == (403, "quota_exceeded", "max_participants")
    status, body = token(client, tenants, "acme", "capped", stayed[0])
    assert status == 200


def test_joins_at_once_through_two_nodes_take_at_most_the_cap(tenants, call, capsys):
    """Two livekit-server nodes on one Redis, one service instance per node on the same
    storage, each node's webhooks sent to both instances. Three tokens minted through instance
    1 under a cap of 5 (acme's record), the operator lowers it to 2, the three join at once
    through both nodes: two stay."""
    binary, reason = find_livekit_server()
    redis_binary = shutil.which("redis-server")
    if binary is None or redis_binary is None:
        unavailable(f"two real nodes need livekit-server and redis-server: {reason}")
    cluster = Cluster(binary, redis_binary)
    try:
        first, _ = cluster.services
        holds = open_holds(cluster.redis.url, 2.0)
        records = open_tenants(holds.store)
        records.change("acme", {"max_participants": 5})
        tokens = {}
        for identity in ("p1", "p2", "p3"):
            body = {**BODY, "room_name": "capped-across", "participant_identity": identity}
            status, answer, _ = first.post("/livekit/token", body, tenants.headers("acme"))
            assert status == 200, answer
            tokens[identity] = answer["token"]
        records.change("acme", {"max_participants": 2})
        holds.close()
        time.sleep(1.5)  # past TENANT_RECORD_CACHE (1 s): every instance reads the new limit
        urls = {
            "p1": cluster.nodes[0].ws_url,
            "p2": cluster.nodes[1].ws_url,
            "p3": cluster.nodes[1].ws_url,
        }
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda p: call.join(p, urls[p], tokens[p]), tokens))
        assert call.wait_for(lambda: any(("disconnected",) in call.events[p] for p in tokens), 10)
        time.sleep(2.0)
        stayed = [p for p in tokens if ("disconnected",) not in call.events[p]]
        with capsys.disabled():
            print(
                f"\nthree joins at once through two nodes under max_participants 2: "
                f"{len(stayed)} stayed"
            )
        assert len(stayed) == 2
    finally:
        cluster.close()
