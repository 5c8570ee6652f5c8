"""The benchmark's own apps (bench/): each answers the token request its row sends, so that
`make bench` measures what its table says (a broken row shows only as failed requests there);
the webhook rows' receiver counts only what it verified."""

import importlib
import json
import sys
import time

import jwt
import pytest

from support.processes import livekit_settings
from support.tokens import BODY, LIVEKIT_KEY, LIVEKIT_SECRET, TENANT_SECRET, Tenants
from tokensvc.context import service_state


@pytest.fixture
def bench_module(livekit, monkeypatch):
    """Import a bench module afresh (forgotten again after the test), configured from the
    environment as `make bench` configures it."""
    for name, value in {**livekit_settings(livekit), "AUTH_JWT_SECRET": TENANT_SECRET}.items():
        monkeypatch.setenv(name, value)
    loaded = []

    def load(name: str):
        sys.modules.pop(name, None)
        module = importlib.import_module(name)
        sys.modules.pop(name)
        loaded.append(module)
        return module

    yield load
    for module in loaded:
        if "tokensvc" in module.app.extensions:
            service_state(module.app).close()


def test_the_naive_row_makes_its_two_livekit_calls_and_creates_the_room(
    bench_module, livekit, storage_url, monkeypatch, access_log
):
    """Row 4: ListRooms and CreateRoom, each through its own `asyncio.run()` and `LiveKitAPI`,
    counted by the client (the access line's `livekit_calls`) and seen by LiveKit."""
    monkeypatch.setenv("STORAGE_URL", storage_url)
    naive = bench_module("bench.naive_app")
    assert type(service_state(naive.app).issuer.rooms) is naive.NaiveRoomServiceClient
    response = naive.app.test_client().post(
        "/livekit/token", json=BODY, headers=Tenants().headers("acme")
    )
    assert response.status_code == 200, response.json
    assert json.loads(livekit.get_room(BODY["room_name"]).metadata) == {"auth_id": "acme"}
    assert access_log.fields()[-1]["livekit_calls"] == 2


def test_the_floor_answers_a_token_request(bench_module):
    """Row 5 answers the same request with a JSON body holding a token."""
    client = bench_module("bench.floor_app").app.test_client()
    response = client.post("/livekit/token", json=BODY, headers=Tenants().headers("acme"))
    assert response.status_code == 200
    assert isinstance(response.json["token"], str) and response.json["token"]


def test_the_work_floor_signs_a_token_livekit_accepts(bench_module):
    """Row 6 does the work it claims: it verifies the bearer (a wrong one is refused) and signs
    a token with the LiveKit secret."""
    client = bench_module("bench.work_floor_app").app.test_client()
    response = client.post("/livekit/token", json=BODY, headers=Tenants().headers("acme"))
    assert response.status_code == 200
    claims = jwt.decode(response.json["token"], LIVEKIT_SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["video"]) == (BODY["participant_identity"], {"room": "room-1"})
    wrong = Tenants().headers("acme", secret=LIVEKIT_SECRET)
    assert client.post("/livekit/token", json=BODY, headers=wrong).status_code >= 400


def test_the_sweep_rows_hold_rooms_whose_record_agrees_with_livekit(make_app, backend, livekit):
    """bench/reconcile.py's setup (tokens and LiveKit-signed joins through the service) leaves a
    record that agrees with LiveKit: at 5 rooms a steady sweep is one ListRooms and a probe per
    room, no ListParticipants and no repair, as the emulator counts too; its other cases list
    the one room that disagrees or is watched."""
    from bench import reconcile

    app = make_app(
        STORAGE_URL=backend, AUTH_JWT_SECRET=reconcile.TENANT_SECRET, METRICS_ENABLED="true"
    )
    state = service_state(app)
    held = reconcile.hold_rooms(
        reconcile.test_client_post(app),
        livekit,
        [f"room-{n}" for n in range(5)],
        LIVEKIT_KEY,
        LIVEKIT_SECRET,
    )
    assert {tenant for _, tenant in held} == {f"tenant-{n}" for n in range(5)}
    assert len(state.issuer.usage.live_lives()) == 5
    found = dict(
        reconcile.sweep_cases(app, livekit, [f"room-{n}" for n in range(5)], 2, lambda *_: None)
    )
    steady = found["steady state: the record agrees"]
    assert steady["calls"] == {"ListRooms": 1, "SendData": 5}
    assert steady["agree"] and steady["repairs"] == {}
    unreported = found["1 room(s) with a participant never reported"]
    assert unreported["calls"]["ListParticipants"] == 1
    assert unreported["repairs"] == {"session_opened": 2}
    assert found["1 room(s) under watch"]["calls"]["ListParticipants"] == 1
    assert found["watch sweep, 1 room(s) under watch"]["calls"] == {"ListParticipants": 1}
    assert all(result["agree"] for result in found.values())


def test_the_events_rows_events_are_metered_and_fanned_out(make_app, livekit, tmp_path):
    """The events bench/reconcile.py posts (its file of pre-signed lines) verify as LiveKit's,
    are fresh (none a duplicate), and each queues one delivery to its tenant's endpoint."""
    from bench import reconcile

    app = make_app(
        AUTH_JWT_SECRET=reconcile.TENANT_SECRET,
        METRICS_ENABLED="true",
        TENANT_WEBHOOKS_ALLOW_PRIVATE="true",
    )
    client = app.test_client()
    post = reconcile.test_client_post(app)
    headers = reconcile.tenant_headers("tenant-0")
    answer = client.post(
        "/livekit/webhook-endpoints", json={"url": "http://127.0.0.1:9/hooks"}, headers=headers
    )
    assert answer.status_code == 201, answer.json
    held = reconcile.hold_rooms(post, livekit, ["room-0"], LIVEKIT_KEY, LIVEKIT_SECRET)
    path = tmp_path / "events.txt"
    reconcile.Events(held).write(str(path), 6, LIVEKIT_KEY, LIVEKIT_SECRET)
    lines = path.read_text().splitlines()
    assert len(lines) == 6
    for line in lines:
        auth, body = line.split("\t")
        headers = {"Authorization": auth, "Content-Type": "application/webhook+json"}
        assert post("/livekit/webhook", body.encode(), headers) == 200
    pending = [
        line
        for line in client.get("/metrics").get_data(as_text=True).splitlines()
        if line.startswith("tokensvc_webhook_deliveries_pending ")
    ]
    assert pending == ["tokensvc_webhook_deliveries_pending 7.0"]  # the member's join and 6
    outcomes = [
        line
        for line in client.get("/metrics").get_data(as_text=True).splitlines()
        if line.startswith("tokensvc_livekit_events_total{") and "duplicate" in line
    ]
    assert outcomes == []


def test_the_webhook_receiver_keeps_only_deliveries_it_verified():
    """bench/receiver.py, which the webhook rows count arrivals with, keeps a delivery signed
    with its endpoint's secret (the worker's own signing) and refuses one signed with another
    or for an endpoint it has no secret for."""
    from bench.receiver import Receiver
    from tokensvc.webhooks import new_secret, sign

    receiver = Receiver()
    secret = new_secret()
    assert receiver.answer("PUT", "/secrets/a", {}, secret.encode())[0] == 204
    body = json.dumps({"type": "participant_joined", "data": {"participant": {"identity": "x"}}})
    now = int(time.time())
    headers = sign("msg_1", now, body, (secret,))
    assert receiver.answer("POST", "/hooks/a", headers, body.encode())[0] == 200
    for path, signed in (("/hooks/a", new_secret()), ("/hooks/b", secret)):
        headers = sign("msg_2", now, body, (signed,))
        assert receiver.answer("POST", path, headers, body.encode())[0] == 400
    counts = json.loads(receiver.answer("GET", "/arrivals", {}, b"")[1])
    assert (list(counts["arrived"]), counts["verified"], counts["refused"]) == (["a/x"], 1, 2)
