"""Tenants' own webhooks, on the emulator with LiveKit's events signed as LiveKit signs them, on
both backends: each tenant gets only its own rooms' events, in its own names, signed by the
Standard Webhooks scheme (verified with the `standardwebhooks` package by real HTTP receivers);
delivery survives a receiver that is down, failing or hanging, and a worker that is SIGKILLed;
two instances and two worker processes on one Redis share endpoints and deliver every event; no
URL reaches a private address; a hanging endpoint delays neither the token route nor the
tenant's other endpoints."""

import json
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from support.processes import WorkerProcess, livekit_settings
from support.tokens import BODY, TENANT_SECRET, signed_webhook
from tokensvc.context import service_state
from tokensvc.webhooks import EVENT_TYPES

#: Short timeouts and back-off, so that retries take fractions of a second.
FAST = {
    "TENANT_WEBHOOKS_ALLOW_PRIVATE": "true",
    "TENANT_WEBHOOK_TIMEOUT": "0.5",
    "TENANT_WEBHOOK_RETRY_DELAY": "0.05",
    "METRICS_ENABLED": "true",
}


@pytest.fixture
def app(make_app, backend):
    """The service on this test's backend, with fast webhook settings."""
    return make_app(STORAGE_URL=backend, **FAST)


def subscribe(client, tenants, tenant, url, **fields):
    """Subscribe `url` for `tenant`; return the answer's JSON (201 asserted)."""
    response = client.post(
        "/livekit/webhook-endpoints", json={"url": url, **fields}, headers=tenants.headers(tenant)
    )
    assert response.status_code == 201, response.json
    return response.json


def send(client, kind, room, **event):
    """Deliver one signed LiveKit event to the service; 200 asserted."""
    body, headers = signed_webhook(kind, room, **event)
    assert client.post("/livekit/webhook", data=body, headers=headers).status_code == 200


def deliveries(client, tenants, tenant="acme", **query):
    """The tenant's deliveries, as the route lists them."""
    response = client.get(
        "/livekit/webhook-deliveries", query_string=query, headers=tenants.headers(tenant)
    )
    assert response.status_code == 200, response.json
    return response.json["deliveries"]


def wait_for(condition, seconds=10.0):
    """Poll until `condition()` holds; whether it did."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


def member(tenant, role="speaker", **attributes):
    """A participant of `tenant`'s token, as LiveKit reports it in an event."""
    return {
        "identity": f"{tenant}-user",
        "name": "User",
        "sid": "PA_1",
        "attributes": {"tokensvc.tenant": tenant, "tokensvc.role": role, **attributes},
    }


@pytest.mark.parametrize("room_names", ["shared", "per-tenant"])
def test_each_tenant_gets_only_its_own_rooms_events(
    make_app, backend, tenants, make_receiver, make_worker, room_names
):
    """acme and globex each subscribe a receiver. Every event of acme's room reaches acme's
    receiver once, signed, with acme's own room name and none of the service's attributes; an
    intruder of globex's in acme's room, a duplicate and an event of a room nobody holds are
    not sent; globex's receiver gets nothing of acme's."""
    app = make_app(STORAGE_URL=backend, ROOM_NAMES=room_names, **FAST)
    client = app.test_client()
    acme, globex = make_receiver(), make_receiver()
    acme.secret = subscribe(client, tenants, "acme", acme.url)["secret"]
    globex.secret = subscribe(client, tenants, "globex", globex.url)["secret"]
    minted = client.post(
        "/livekit/token", json={**BODY, "room_name": "standup"}, headers=tenants.headers("acme")
    ).json
    room = minted.get("livekit_room_name", "standup")
    assert (room != "standup") == (room_names == "per-tenant")
    make_worker(app)
    owner = json.dumps({"auth_id": "acme"})
    track = {"sid": "TR_1", "type": "AUDIO", "source": "MICROPHONE", "name": "mic"}
    send(client, "room_started", room, metadata=owner, event_id="EV_started")
    send(client, "room_started", room, metadata=owner, event_id="EV_started")  # a duplicate
    send(
        client, "participant_joined", room, metadata=owner, participant=member("acme", team="blue")
    )
    send(client, "participant_joined", room, metadata=owner, participant=member("globex"))
    send(client, "track_published", room, metadata=owner, participant=member("acme"), track=track)
    send(client, "participant_left", room, metadata=owner, participant=member("acme"))
    send(client, "room_finished", room, metadata=owner)
    send(client, "room_started", "nobody-holds-this")
    # At least once: an attempt slower than the 0.5 s timeout (a loaded machine) is sent again,
    # under the same webhook-id; five deliveries, whatever their attempts.
    assert wait_for(lambda: len({item.id for item in acme.received}) >= 5)
    received = list(acme.received)
    assert all(item.event is not None for item in received), "a signature did not verify"
    by_type = {item.event["type"]: item for item in received}  # delivered in any order
    assert len({item.id for item in received}) == 5 and set(by_type) == {
        "room_started",
        "participant_joined",
        "track_published",
        "participant_left",
        "room_finished",
    }
    for item in received:
        assert item.event["data"]["room"]["name"] == "standup"
        assert "tokensvc." not in item.body.decode()
        assert "auth_id" not in item.body.decode()
    joined = by_type["participant_joined"].event["data"]["participant"]
    assert joined["identity"] == "acme-user" and joined["attributes"] == {"team": "blue"}
    assert by_type["track_published"].event["data"]["track"]["source"] == "microphone"
    assert wait_for(lambda: {d["status"] for d in deliveries(client, tenants)} == {"delivered"})
    time.sleep(0.3)
    assert globex.received == [] and globex.tried == 0
    assert len({item.id for item in acme.received}) == 5
    assert len(deliveries(client, tenants)) == 5
    assert deliveries(client, tenants, "globex") == []


def test_routes_keep_each_tenant_to_its_own(app, tenants, make_receiver):
    """Subscribe (defaults: every event), list without secrets, another tenant's id is 404 like a
    missing one, delete; the 11th endpoint is 409; bad bodies are 400 naming the field."""
    client = app.test_client()
    receiver = make_receiver()
    created = subscribe(client, tenants, "acme", receiver.url, description="billing")
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 40
    assert created["events"] == list(EVENT_TYPES) and created["description"] == "billing"
    listed = client.get("/livekit/webhook-endpoints", headers=tenants.headers("acme")).json
    assert listed == {"endpoints": [{k: v for k, v in created.items() if k != "secret"}]}
    for path in (
        f"/livekit/webhook-endpoints/{created['id']}/rotate-secret",
        f"/livekit/webhook-endpoints/{created['id']}/test",
    ):
        answer = client.post(path, headers=tenants.headers("globex"))
        assert (answer.status_code, answer.json["code"]) == (404, "webhook_endpoint_not_found")
    assert (
        client.delete(
            f"/livekit/webhook-endpoints/{created['id']}", headers=tenants.headers("globex")
        ).status_code
        == 404
    )
    for bad in (
        {},
        {"url": "ftp://x.example/"},
        {"url": receiver.url, "events": ["nope"]},
        {"url": receiver.url, "events": []},
        {"url": "http://user:pw@127.0.0.1/"},
    ):
        answer = client.post(
            "/livekit/webhook-endpoints", json=bad, headers=tenants.headers("acme")
        )
        assert answer.status_code == 400 and answer.json["code"] == "invalid_request", bad
    for _ in range(9):
        subscribe(client, tenants, "acme", receiver.url, events=["room_finished"])
    answer = client.post(
        "/livekit/webhook-endpoints", json={"url": receiver.url}, headers=tenants.headers("acme")
    )
    assert (answer.status_code, answer.json["code"]) == (409, "webhook_endpoints_limit")
    subscribe(client, tenants, "globex", receiver.url)  # another tenant's limit is its own
    deleted = client.delete(
        f"/livekit/webhook-endpoints/{created['id']}", headers=tenants.headers("acme")
    )
    assert deleted.json == {"status": "deleted", "id": created["id"]}
    assert (
        client.delete(
            f"/livekit/webhook-endpoints/{created['id']}", headers=tenants.headers("acme")
        ).status_code
        == 404
    )
    assert (
        client.get(
            "/livekit/webhook-deliveries?status=bogus", headers=tenants.headers("acme")
        ).status_code
        == 400
    )


def test_a_rotated_secret_signs_beside_the_old_one_for_a_day(
    app, tenants, make_receiver, make_worker
):
    """After a rotation each delivery carries two signatures: the old secret and the new one
    both verify; 24 h later (the storage's clock moved) only the new one does."""
    client = app.test_client()
    receiver = make_receiver()
    endpoint = subscribe(client, tenants, "acme", receiver.url)
    old = endpoint["secret"]
    rotated = client.post(
        f"/livekit/webhook-endpoints/{endpoint['id']}/rotate-secret",
        headers=tenants.headers("acme"),
    )
    new = rotated.json["secret"]
    assert new != old and new.startswith("whsec_")
    receiver.secret = new
    make_worker(app)
    client.post(
        f"/livekit/webhook-endpoints/{endpoint['id']}/test", headers=tenants.headers("acme")
    )
    (first,) = receiver.wait_for(1)
    assert len(first.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(first.body, first.headers)
    Webhook(new).verify(first.body, first.headers)
    assert first.event["type"] == "webhook.test"
    service_state(app).issuer.ownership.holds.clock.advance(24 * 3600 * 1000 + 1000)
    test = client.post(
        f"/livekit/webhook-endpoints/{endpoint['id']}/test", headers=tenants.headers("acme")
    )
    assert test.status_code == 202
    second = receiver.wait_for(2)[1]
    assert second.id == test.json["delivery_id"]
    assert len(second.headers["webhook-signature"].split(" ")) == 1
    Webhook(new).verify(second.body, second.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(second.body, second.headers)


def with_receiver_down(app, tenants, receiver, make_worker):
    """acme subscribes `receiver` and holds BODY's room; the receiver then stops (connections
    refused) and a worker starts. Returns the app's test client and the receiver."""
    client = app.test_client()
    receiver.secret = subscribe(client, tenants, "acme", receiver.url)["secret"]
    assert (
        client.post("/livekit/token", json=BODY, headers=tenants.headers("acme")).status_code == 200
    )
    receiver.stop()
    make_worker(app)
    return client, receiver


def test_a_receiver_down_failing_then_hanging_gets_it_once_up(
    app, tenants, make_receiver, make_worker
):
    """The receiver refuses connections, then answers 500, then hangs past the timeout, then
    answers 200: the event is delivered, with the same webhook-id on every attempt, and the
    delivery record shows the attempts and the last answer."""
    client, receiver = with_receiver_down(app, tenants, make_receiver(hang_s=1.5), make_worker)
    send(client, "room_started", BODY["room_name"])
    assert wait_for(lambda: deliveries(client, tenants)[0]["attempts"] >= 2)
    (refused,) = deliveries(client, tenants)
    assert refused["status"] == "pending" and refused["last_error"] == "connection refused"
    assert refused["last_status_code"] is None and refused["next_attempt_at"]
    receiver.mode = "fail"
    receiver.start()
    receiver.wait_for_tries(1)
    assert wait_for(lambda: deliveries(client, tenants)[0]["last_status_code"] == 500)
    receiver.mode = "hang"
    tries = receiver.tried
    receiver.wait_for_tries(tries + 1)
    assert wait_for(lambda: "timed out" in (deliveries(client, tenants)[0]["last_error"] or ""))
    receiver.mode = "ok"
    (item,) = receiver.wait_for(1, 10)
    assert item.event["type"] == "room_started"
    assert wait_for(lambda: deliveries(client, tenants)[0]["status"] == "delivered")
    (done,) = deliveries(client, tenants)
    assert done["status"] == "delivered" and done["last_status_code"] == 200
    assert done["attempts"] >= 4 and done["last_error"] is None
    assert set(receiver.tried_ids) == {done["id"]} == {item.id}
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'tokensvc_webhook_deliveries_total{outcome="delivered"} 1.0' in metrics
    assert "acme" not in metrics


@pytest.mark.waits
def test_a_receiver_down_for_a_minute_gets_every_event_once_up(
    make_app, tenants, make_receiver, make_worker
):
    """In real time: the receiver refuses connections for 20 s, answers 500 for 20 s, hangs past
    the timeout for 20 s, then answers 200; each phase sees at least one attempt. Both events
    are delivered, each under one webhook-id on every attempt, and the records show it."""
    app = make_app(**{**FAST, "TENANT_WEBHOOK_TIMEOUT": "2", "TENANT_WEBHOOK_RETRY_DELAY": "0.5"})
    client, receiver = with_receiver_down(app, tenants, make_receiver(hang_s=3), make_worker)
    send(client, "room_started", BODY["room_name"])
    send(client, "participant_joined", BODY["room_name"], participant=member("acme"))

    def attempts() -> int:
        return sum(item["attempts"] for item in deliveries(client, tenants))

    def last_seen(mode: str) -> bool:
        """Whether some delivery's record shows this phase's answer as its last."""
        for item in deliveries(client, tenants):
            error = item["last_error"] or ""
            if (
                (mode == "refused" and error == "connection refused")
                or (mode == "fail" and item["last_status_code"] == 500)
                or (mode == "hang" and "timed out" in error)
            ):
                return True
        return False

    for mode in ("refused", "fail", "hang"):
        before = attempts()
        if mode != "refused":
            receiver.mode = mode
            if mode == "fail":
                receiver.start()
        time.sleep(20)
        assert wait_for(lambda: attempts() > before and last_seen(mode), 120), mode  # noqa: B023
    receiver.mode = "ok"
    assert wait_for(
        lambda: all(d["status"] == "delivered" for d in deliveries(client, tenants)), 180
    )
    done = deliveries(client, tenants)
    assert len(done) == 2 and all(d["attempts"] >= 4 for d in done)
    assert {item.event["type"] for item in receiver.received} == {
        "room_started",
        "participant_joined",
    }
    assert set(receiver.tried_ids) == {d["id"] for d in done}  # one webhook-id per event
    assert len(receiver.tried_ids) > len(done)  # 500s and hangs reached it under those ids


def test_a_delivery_fails_after_its_period_and_can_be_retried(
    make_app, backend, tenants, make_receiver, make_worker
):
    """With a retry period of 0 the first failed attempt fails the delivery for good (a 307 is
    not followed); retried once the receiver answers, it is delivered."""
    app = make_app(STORAGE_URL=backend, **{**FAST, "TENANT_WEBHOOK_RETRY_PERIOD": "0"})
    client = app.test_client()
    receiver = make_receiver(mode="redirect")
    endpoint = subscribe(client, tenants, "acme", receiver.url)
    receiver.secret = endpoint["secret"]
    make_worker(app)
    client.post(
        f"/livekit/webhook-endpoints/{endpoint['id']}/test", headers=tenants.headers("acme")
    )
    assert wait_for(lambda: deliveries(client, tenants)[0]["status"] == "failed")
    (failed,) = deliveries(client, tenants, status="failed")
    assert failed["last_status_code"] == 307 and "redirects" in failed["last_error"]
    assert receiver.tried == 1
    receiver.mode = "ok"
    retried = client.post(
        f"/livekit/webhook-deliveries/{failed['id']}/retry", headers=tenants.headers("acme")
    )
    assert retried.status_code == 202
    assert (
        client.post(
            f"/livekit/webhook-deliveries/{failed['id']}/retry", headers=tenants.headers("globex")
        ).status_code
        == 404
    )
    (item,) = receiver.wait_for(1)
    assert item.id == failed["id"]
    assert wait_for(lambda: deliveries(client, tenants)[0]["status"] == "delivered")


PRIVATE_URLS = [
    "https://127.0.0.1/hooks",
    "https://10.0.0.1/hooks",
    "https://[::1]/hooks",
    "https://169.254.169.254/latest/meta-data",
    "https://localhost/hooks",
    "https://[::ffff:127.0.0.1]/hooks",
    "https://0.0.0.0/hooks",
    "https://224.0.0.1/hooks",
    "http://127.0.0.1/hooks",
    "http://10.0.0.1/",
    "http://[::1]/",
    "http://169.254.169.254/",
    "http://localhost/",
]


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_subscribing_a_private_address_is_refused(make_app, tenants, storage_url, url):
    """Without TENANT_WEBHOOKS_ALLOW_PRIVATE: loopback, private, link-local, multicast and a
    name that resolves to loopback are 400 naming `url`, and nothing is stored."""
    app = make_app()
    client = app.test_client()
    answer = client.post(
        "/livekit/webhook-endpoints", json={"url": url}, headers=tenants.headers("acme")
    )
    assert (answer.status_code, answer.json["code"]) == (400, "invalid_request")
    assert "url" in answer.json["fields"]
    assert client.get("/livekit/webhook-endpoints", headers=tenants.headers("acme")).json == {
        "endpoints": []
    }


def test_a_name_rebound_to_loopback_after_subscription_gets_nothing(
    make_app, tenants, make_receiver, make_worker
):
    """A name that resolves to a public address when subscribed and to loopback (where a
    receiver listens) at delivery: refused at the attempt, never connected to. (The resolver is
    the one dependency replaced: DNS cannot be steered here; no traffic leaves loopback.)"""
    app = make_app(TENANT_WEBHOOK_RETRY_DELAY="0.05")
    client = app.test_client()
    receiver = make_receiver()
    sender = service_state(app).tenant_webhooks.sender
    answers = {"address": "93.184.216.34"}
    sender.resolver = lambda host, port: [answers["address"]]
    endpoint = subscribe(client, tenants, "acme", f"https://hooks.tenant.example:{receiver.port}/")
    answers["address"] = "127.0.0.1"
    make_worker(app)
    client.post(
        f"/livekit/webhook-endpoints/{endpoint['id']}/test", headers=tenants.headers("acme")
    )
    assert wait_for(lambda: deliveries(client, tenants)[0]["attempts"] >= 2)
    (refused,) = deliveries(client, tenants)
    assert refused["status"] == "pending"
    assert "non-public address (127.0.0.1)" in refused["last_error"]
    assert receiver.tried == 0


def test_hanging_endpoints_delay_neither_the_token_route_nor_the_others(
    make_app, tenants, make_receiver, make_worker
):
    """acme has 10 endpoints, 9 of them hanging past the timeout: the 10th gets each event at
    once, and the token route answers as fast as with none."""
    app = make_app(**{**FAST, "TENANT_WEBHOOK_TIMEOUT": "2"})
    client = app.test_client()
    hanging, healthy = make_receiver(mode="hang", hang_s=3), make_receiver()
    for _ in range(9):
        subscribe(client, tenants, "acme", hanging.url)
    healthy.secret = subscribe(client, tenants, "acme", healthy.url)["secret"]
    assert (
        client.post("/livekit/token", json=BODY, headers=tenants.headers("acme")).status_code == 200
    )
    make_worker(app)
    sent = []
    for _ in range(5):
        sent.append(time.monotonic())
        send(client, "participant_joined", BODY["room_name"], participant=member("acme"))
    received = healthy.wait_for(5, 5)
    assert len(received) == 5
    lags = [item.at - at for item, at in zip(received, sent, strict=True)]
    assert max(lags) < 1.0, lags
    assert hanging.wait_for_tries(9) >= 9
    started = time.monotonic()
    for _ in range(20):
        assert (
            client.post("/livekit/token", json=BODY, headers=tenants.headers("acme")).status_code
            == 200
        )
    assert (time.monotonic() - started) / 20 < 0.1


@pytest.mark.slow
def test_a_sigkilled_worker_loses_nothing(
    make_app, backend, livekit, tenants, make_receiver, tmp_path
):
    """The worker process is SIGKILLed while attempts hang and others wait; restarted, with the
    receiver healthy, every delivery is delivered (at least once)."""
    settings = {**FAST, "TENANT_WEBHOOK_TIMEOUT": "1", "STORAGE_URL": backend}
    app = make_app(**settings)
    client = app.test_client()
    receiver = make_receiver(mode="hang", hang_s=5)
    receiver.secret = subscribe(client, tenants, "acme", receiver.url)["secret"]
    assert (
        client.post("/livekit/token", json=BODY, headers=tenants.headers("acme")).status_code == 200
    )
    for _ in range(20):
        send(client, "participant_joined", BODY["room_name"], participant=member("acme"))
    env = {
        **livekit_settings(livekit),
        **settings,
        "AUTH_JWT_SECRET": TENANT_SECRET,
        "LOG_LEVEL": "WARNING",
    }
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        assert receiver.wait_for_tries(2, 15) >= 2, worker.output()
        worker.kill()
        assert {d["status"] for d in deliveries(client, tenants)} == {"pending"}
        receiver.mode = "ok"
        worker = WorkerProcess(env, tmp_path / "worker.log")
        assert wait_for(
            lambda: {d["status"] for d in deliveries(client, tenants)} == {"delivered"}, 20
        ), deliveries(client, tenants)
    finally:
        assert worker.stop() == 0, worker.output()
    ids = {d["id"] for d in deliveries(client, tenants)}
    assert len(ids) == 20 and {item.id for item in receiver.received} == ids


@pytest.mark.slow
def test_two_instances_and_two_workers_on_redis(
    make_app, redis_server, livekit, serve, tenants, make_receiver, tmp_path
):
    """Two instances on real sockets and two worker processes share one Redis. An endpoint
    subscribed through instance 1 is listed through instance 2. LiveKit sends each of 20 events
    to both instances at once: each is queued once. Worker 1 delivers alone, then beside worker
    2, then is SIGKILLed; worker 2 finishes. The receiver answers too late at first, so early
    attempts arrive twice or more: every event arrives, verified, under one webhook-id, its
    delivery's. Deleted through instance 2, the endpoint is gone for instance 1 too."""
    settings = {**FAST, "STORAGE_URL": redis_server.url}
    one, two = (serve(make_app(**settings)) for _ in range(2))
    acme = tenants.headers("acme")
    receiver = make_receiver(mode="late", hang_s=1.0)
    status, endpoint, _ = one.post("/livekit/webhook-endpoints", {"url": receiver.url}, acme)
    assert status == 201, endpoint
    receiver.secret = endpoint["secret"]
    public = {k: v for k, v in endpoint.items() if k != "secret"}
    assert two.get("/livekit/webhook-endpoints", headers=acme)[1] == {"endpoints": [public]}
    assert two.post("/livekit/token", BODY, acme)[0] == 200

    def to_both(number: int) -> str:
        """Post one signed participant_joined to both instances at once; its event id."""
        participant = {**member("acme"), "identity": f"acme-{number}", "sid": f"PA_{number}"}
        body, headers = signed_webhook(
            "participant_joined", BODY["room_name"], participant=participant
        )
        with ThreadPoolExecutor(2) as pool:
            statuses = pool.map(
                lambda instance: instance.request(
                    "POST", "/livekit/webhook", headers=headers, data=body.encode()
                )[0],
                (one, two),
            )
            assert list(statuses) == [200, 200]
        return json.loads(body)["id"]

    def listed() -> list:
        """acme's deliveries, as instance 2 lists them."""
        return two.get("/livekit/webhook-deliveries", headers=acme)[1]["deliveries"]

    env = {
        **livekit_settings(livekit),
        **settings,
        "AUTH_JWT_SECRET": TENANT_SECRET,
        "LOG_LEVEL": "INFO",
    }
    with ExitStack() as stack:
        first = WorkerProcess(env, tmp_path / "worker-1.log")
        stack.callback(first.stop)
        first.wait_started()
        sent = {to_both(number): f"acme-{number}" for number in range(20)}
        assert receiver.wait_for_tries(4, 15) >= 4, first.output()  # worker 1 alone
        second = WorkerProcess(env, tmp_path / "worker-2.log")
        stack.callback(second.stop)
        second.wait_started()
        tried = receiver.tried
        assert receiver.wait_for_tries(tried + 4, 15) >= tried + 4  # both workers
        first.kill()
        receiver.mode = "ok"
        assert wait_for(lambda: {d["status"] for d in listed()} == {"delivered"}, 60), (
            listed(),
            second.output(),
        )
        assert len(receiver.wait_for(len(sent), 5)) >= len(sent)
        deleted = two.delete(f"/livekit/webhook-endpoints/{endpoint['id']}", headers=acme)
        assert deleted[1] == {"status": "deleted", "id": endpoint["id"]}
        assert one.get("/livekit/webhook-endpoints", headers=acme)[1] == {"endpoints": []}
        arrived = len(receiver.received)
        to_both(20)
        time.sleep(1.0)
        assert len(receiver.received) == arrived and len(listed()) == len(sent)
        assert second.stop() == 0, second.output()
    deliveries_of = {d["event_id"]: d for d in listed()}
    assert set(deliveries_of) == set(sent)  # one delivery per event, whichever instance won
    assert all(item.event is not None for item in receiver.received), "a signature failed"
    ids_by_identity = defaultdict(set)
    for item in receiver.received:
        ids_by_identity[item.event["data"]["participant"]["identity"]].add(item.id)
    assert ids_by_identity == {sent[event]: {deliveries_of[event]["id"]} for event in sent}
    assert len(receiver.received) > len(sent)  # the late answers made duplicates
    assert max(d["attempts"] for d in deliveries_of.values()) >= 2


def metered(client) -> float:
    """How many LiveKit events this process handed to metering so far (every outcome)."""
    lines = client.get("/metrics").get_data(as_text=True).splitlines()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith("tokensvc_usage_events_total{")
    )


def test_a_fresh_event_is_metered_and_forwarded_a_repeat_or_an_intruder_not(app, tenants, livekit):
    """Usage (issue 29) and tenants' webhooks (issue 28) on one event: a fresh join in acme's
    room is metered and queued for acme's endpoint; its duplicate and a stale event are
    neither; another tenant's participant is removed and never queued."""
    client = app.test_client()
    subscribe(client, tenants, "acme", "http://127.0.0.1:9/hooks")
    assert client.post("/livekit/token", json=BODY, headers=tenants.headers("acme")).status_code
    room, now = BODY["room_name"], int(time.time())
    before = metered(client)
    send(client, "participant_joined", room, participant=member("acme"), event_id="EV_join")
    assert metered(client) == before + 1
    assert [d["event_id"] for d in deliveries(client, tenants)] == ["EV_join"]
    send(client, "participant_joined", room, participant=member("acme"), event_id="EV_join")
    stale = {**member("acme"), "sid": "PA_stale"}
    send(client, "participant_joined", room, participant=stale, created_at=now - 600)
    assert metered(client) == before + 1
    assert len(deliveries(client, tenants)) == 1
    livekit.calls.clear()
    intruder = {**member("globex"), "sid": "PA_2"}
    send(client, "participant_joined", room, participant=intruder, event_id="EV_intruder")
    assert livekit.calls == {"RemoveParticipant": 1}
    assert [d["event_id"] for d in deliveries(client, tenants)] == ["EV_join"]
    assert deliveries(client, tenants, "globex") == []


def test_no_event_of_another_tenants_participant_reaches_the_holder(app, tenants, livekit):
    """Every forwarded event passes the ownership rule's intruder check: in acme's room, the
    track and leave events of a participant whose tokensvc.tenant names globex are never queued
    for acme (nor for globex); those of acme's own participant and of an agent without the
    attribute are."""
    client = app.test_client()
    subscribe(client, tenants, "acme", "http://127.0.0.1:9/hooks")
    subscribe(client, tenants, "globex", "http://127.0.0.1:9/hooks")
    assert client.post("/livekit/token", json=BODY, headers=tenants.headers("acme")).status_code
    room = BODY["room_name"]
    track = {"sid": "TR_1", "type": "AUDIO", "source": "MICROPHONE", "name": "mic"}
    intruder = {**member("globex"), "sid": "PA_2"}
    agent = {"identity": "agent", "sid": "PA_3", "attributes": {}}
    livekit.calls.clear()
    for kind in ("track_published", "track_unpublished"):
        send(client, kind, room, participant=intruder, track=track, event_id=f"EV_{kind}_globex")
    send(client, "participant_left", room, participant=intruder, event_id="EV_left_globex")
    assert deliveries(client, tenants) == [] and deliveries(client, tenants, "globex") == []
    assert livekit.calls == {}
    send(client, "track_published", room, participant=member("acme"), track=track, event_id="EV_a")
    send(client, "track_published", room, participant=agent, track=track, event_id="EV_agent")
    assert {d["event_id"] for d in deliveries(client, tenants)} == {"EV_a", "EV_agent"}
    assert deliveries(client, tenants, "globex") == []


def test_a_participant_removed_over_a_quota_is_told_to_its_tenants_webhooks(
    make_app, backend, tenants, make_receiver, make_worker
):
    """A join beyond the room's participants quota is removed by the service, and the holder's
    endpoints get `participant.removed` with the reason, the quota and its limit, under the
    holder's room name; LiveKit's own events go on as before."""
    app = make_app(STORAGE_URL=backend, QUOTA_MAX_PARTICIPANTS="1", **FAST)
    client = app.test_client()
    receiver = make_receiver()
    receiver.secret = subscribe(client, tenants, "acme", receiver.url)["secret"]
    body = {**BODY, "room_name": "standup"}
    minted = client.post("/livekit/token", json=body, headers=tenants.headers("acme"))
    assert minted.status_code == 200, minted.json
    make_worker(app)
    send(client, "participant_joined", "standup", participant=member("acme"))
    second = {**member("acme"), "identity": "acme-second", "sid": "PA_2"}
    send(client, "participant_joined", "standup", participant=second)
    assert wait_for(lambda: len(receiver.events()) == 3)
    removed = [event for event in receiver.events() if event["type"] == "participant.removed"]
    assert [event["data"] for event in removed] == [
        {
            "room": {"name": "standup"},
            "reason": "quota_exceeded",
            "quota": "max_participants",
            "limit": 1,
            "participant": {"identity": "acme-second", "sid": "PA_2"},
        }
    ]
    assert sorted(event["type"] for event in receiver.events()) == [
        "participant.removed",
        "participant_joined",
        "participant_joined",
    ]
