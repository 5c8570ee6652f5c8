"""Tenants' webhooks under load and attack, on both backends, with real receivers verifying with
the `standardwebhooks` package: noisy neighbours (hanging, failing and refusing endpoints with a
backlog) do not delay another tenant; a suspended tenant's deliveries wait; an endpoint failing
for TENANT_WEBHOOK_DISABLE_AFTER is disabled (the storage clock moved), its tenant's other
endpoints told, and enabled again it gets what waited in order; URLs the service cannot keep or
must not reach are 400 with nothing written, and no delivery is left without its attempt;
secrets are sealed in the storage and `flask webhooks rekey` seals them with a new key."""

import sqlite3
import time

import pytest
import redis
from test_tenant_webhooks import FAST, deliveries, member, send, subscribe, wait_for

from support.tokens import BODY, WEBHOOK_SECRETS_KEY
from tokensvc.context import service_state
from tokensvc.sealing import SEALED_PREFIX, new_key
from tokensvc.storage import sqlite_path


def own_room(client, tenants, tenant: str) -> str:
    """Mint a token for `<tenant>-room` so that the tenant holds it; the room's name."""
    room = f"{tenant}-room"
    answer = client.post(
        "/livekit/token", json={**BODY, "room_name": room}, headers=tenants.headers(tenant)
    )
    assert answer.status_code == 200, answer.json
    return room


def event(client, tenant: str, room: str) -> None:
    """One participant_joined event of the tenant's room."""
    send(client, "participant_joined", room, participant=member(tenant))


@pytest.mark.waits
def test_noisy_neighbours_do_not_delay_another_tenant(
    make_app, backend, tenants, make_receiver, make_worker
):
    """Two noisy tenants, each with 4 hanging endpoints, one answering 500 and one refusing, and
    a backlog of 30 events each; bravo's one healthy endpoint gets each of its events within a
    second, and every hanging endpoint sees at most its concurrency of attempts at once."""
    app = make_app(STORAGE_URL=backend, **{**FAST, "TENANT_WEBHOOK_TIMEOUT": "3"})
    client = app.test_client()
    hanging, failing = make_receiver(mode="hang", hang_s=5), make_receiver(mode="fail")
    refusing = make_receiver()
    refusing.stop()
    rooms = {}
    for tenant in ("noisy1", "noisy2"):
        for _ in range(4):
            subscribe(client, tenants, tenant, hanging.url)
        subscribe(client, tenants, tenant, failing.url)
        subscribe(client, tenants, tenant, refusing.url)
        rooms[tenant] = own_room(client, tenants, tenant)
        for _ in range(30):
            event(client, tenant, rooms[tenant])
    healthy = make_receiver()
    healthy.secret = subscribe(client, tenants, "bravo", healthy.url)["secret"]
    rooms["bravo"] = own_room(client, tenants, "bravo")
    make_worker(app)
    assert hanging.wait_for_tries(16, 10) >= 16  # the noisy ones are under way, and hang
    sent = []
    for _ in range(10):
        sent.append(time.monotonic())
        event(client, "bravo", rooms["bravo"])
        time.sleep(0.1)
    received = healthy.wait_for(10, 10)
    assert len(received) == 10 and all(item.event is not None for item in received)
    lags = sorted(item.at - at for item, at in zip(received, sent, strict=True))
    assert lags[-1] < 1.0, lags
    # 8 hanging endpoints, at most 2 attempts each at once: no more than 16 in the first round.
    assert hanging.tried <= 16 + 16
    noisy = deliveries(client, tenants, "noisy1")
    assert {d["status"] for d in noisy} == {"pending"}


def test_a_paused_tenants_deliveries_wait_and_go_once_it_is_not(
    make_app, backend, tenants, make_receiver, make_worker
):
    """While `paused(tenant)` holds, that tenant's deliveries wait untried (another tenant's
    go); once it no longer does, they are delivered."""
    app = make_app(STORAGE_URL=backend, **FAST)
    client = app.test_client()
    held = {"acme"}
    acme, bravo = make_receiver(), make_receiver()
    acme.secret = subscribe(client, tenants, "acme", acme.url)["secret"]
    bravo.secret = subscribe(client, tenants, "bravo", bravo.url)["secret"]
    rooms = {tenant: own_room(client, tenants, tenant) for tenant in ("acme", "bravo")}
    make_worker(app, paused=lambda tenant: tenant in held)
    event(client, "acme", rooms["acme"])
    event(client, "bravo", rooms["bravo"])
    assert len(bravo.wait_for(1)) == 1
    time.sleep(0.5)
    assert acme.tried == 0
    (waiting,) = deliveries(client, tenants, "acme")
    assert (waiting["status"], waiting["attempts"]) == ("pending", 0)
    held.clear()
    assert len(acme.wait_for(1)) == 1 and acme.received[0].event is not None


def test_a_suspended_tenants_deliveries_wait_until_it_is_resumed(
    make_app, backend, tenants, make_receiver, make_worker
):
    """The worker holds the deliveries of a tenant the operator suspended (kept, untried) and
    sends them once it is resumed; another tenant's go on meanwhile."""
    admin = {"Authorization": "Bearer " + "operator-" + "0123456789abcdef" * 2}
    app = make_app(
        STORAGE_URL=backend, ADMIN_TOKEN=admin["Authorization"][7:], TENANT_RECORD_CACHE="0", **FAST
    )
    client = app.test_client()
    acme, bravo = make_receiver(), make_receiver()
    acme.secret = subscribe(client, tenants, "acme", acme.url)["secret"]
    bravo.secret = subscribe(client, tenants, "bravo", bravo.url)["secret"]
    rooms = {tenant: own_room(client, tenants, tenant) for tenant in ("acme", "bravo")}
    suspended = client.post(
        "/admin/tenants/acme/suspend", json={"reason": "unpaid invoice"}, headers=admin
    )
    assert suspended.status_code == 200, suspended.json
    make_worker(app)
    event(client, "acme", rooms["acme"])
    event(client, "bravo", rooms["bravo"])
    assert len(bravo.wait_for(1)) == 1
    time.sleep(0.5)
    assert acme.tried == 0
    store = service_state(app).tenant_webhooks.store
    waiting = store.deliveries("acme", None, None, 10)
    assert {(d.status, d.attempts) for d in waiting} == {("pending", 0)}
    # the event, and the room the suspension ended (told once resumed)
    assert {d.type for d in waiting} == {"participant_joined", "room.ended"}
    resumed = client.post("/admin/tenants/acme/resume", headers=admin)
    assert resumed.status_code == 200, resumed.json
    got = acme.wait_for(len(waiting))
    assert len(got) == len(waiting) and all(item.event is not None for item in got)
    ended = [item.event for item in got if item.event["type"] == "room.ended"]
    assert {event["data"]["reason"] for event in ended} == {"tenant_suspended"}


def test_an_endpoint_failing_for_the_period_is_disabled_and_enabled_again(
    make_app, backend, tenants, make_receiver, make_worker
):
    """An endpoint whose every attempt failed for TENANT_WEBHOOK_DISABLE_AFTER (the storage
    clock moved past it) is disabled: listed with its reason and time, its deliveries kept and
    untried, the tenant's other endpoint told with `endpoint.disabled`. PATCH enabled: it gets
    what waited, in the order it was made."""
    app = make_app(
        STORAGE_URL=backend,
        **{
            **FAST,
            "TENANT_WEBHOOK_DISABLE_AFTER": "3600",
            "TENANT_WEBHOOK_ENDPOINT_CONCURRENCY": "1",
        },
    )
    client = app.test_client()
    store = service_state(app).tenant_webhooks.store
    broken, other = make_receiver(mode="fail"), make_receiver()
    created = subscribe(client, tenants, "acme", broken.url)
    broken.secret, endpoint_id = created["secret"], created["id"]
    other.secret = subscribe(client, tenants, "acme", other.url, events=["room_finished"])["secret"]
    room = own_room(client, tenants, "acme")
    make_worker(app)
    event(client, "acme", room)
    assert wait_for(lambda: deliveries(client, tenants)[0]["attempts"] >= 1)  # failing now
    store.clock.advance(3600 * 1000 + 1)  # failing for the period: the next failure disables
    assert wait_for(lambda: other.received, 10)
    notice = other.received[0].event
    assert notice["type"] == "endpoint.disabled"
    assert notice["data"]["endpoint_id"] == endpoint_id
    assert "every attempt failed for 1 hour" in notice["data"]["reason"]
    (listed, _) = client.get("/livekit/webhook-endpoints", headers=tenants.headers("acme")).json[
        "endpoints"
    ]
    assert listed["status"] == "disabled" and listed["disabled_at"] is not None
    assert "answered 500" in listed["disabled_reason"]
    tried = broken.tried
    for _ in range(3):
        event(client, "acme", room)
        time.sleep(0.02)
    time.sleep(0.5)
    assert broken.tried == tried  # disabled: nothing is tried
    waiting = deliveries(client, tenants, endpoint_id=endpoint_id)
    assert len(waiting) == 4 and {d["status"] for d in waiting} == {"pending"}
    broken.mode = "ok"
    answer = client.patch(
        f"/livekit/webhook-endpoints/{endpoint_id}",
        json={"enabled": True},
        headers=tenants.headers("acme"),
    )
    assert answer.status_code == 200 and answer.json["status"] == "enabled"
    assert len(broken.wait_for(4)) == 4
    in_creation_order = [d["id"] for d in reversed(waiting)]
    assert [item.id for item in broken.received] == in_creation_order
    assert all(item.event is not None for item in broken.received)


def test_enabling_needs_a_boolean_and_an_endpoint_of_ones_own(app_fast, tenants):
    """PATCH with anything but a boolean `enabled` is 400 naming it; another tenant's id 404."""
    client = app_fast.test_client()
    endpoint_id = subscribe(client, tenants, "acme", "http://127.0.0.1:9/hooks")["id"]
    path = f"/livekit/webhook-endpoints/{endpoint_id}"
    bad = client.patch(path, json={"enabled": "yes"}, headers=tenants.headers("acme"))
    assert bad.status_code == 400 and "enabled" in bad.json["fields"]
    other = client.patch(path, json={"enabled": True}, headers=tenants.headers("globex"))
    assert other.status_code == 404 and other.json["code"] == "webhook_endpoint_not_found"


@pytest.fixture
def app_fast(make_app, backend):
    """The service on this test's backend, private addresses allowed, fast retries."""
    return make_app(STORAGE_URL=backend, **FAST)


@pytest.mark.parametrize(
    "url, field_text",
    [
        ('"https://example.com/\\ud800"', "cannot be encoded"),
        ('"https://example.com:0/"', "port"),
        ('"https://example.com:65536/"', "port"),
        ('"https://[2002:7f00:1::1]:9443/"', "non-public"),
        ('"https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/"', "non-public"),
        ('"https://[64:ff9b::7f00:1]/"', "non-public"),
        ('"https://[64:ff9b:1:7f00:0:100::]/"', "non-public"),
        ('"https://[::ffff:127.0.0.1]/"', "non-public"),
        ('"https://[::127.0.0.1]/"', "non-public"),
        ('"https://exa\\u202emple.com/"', "host name"),
    ],
)
def test_a_url_the_service_cannot_keep_or_must_not_reach_is_400_with_nothing_written(
    make_app, backend, tenants, url, field_text
):
    """Refused at subscription with 400 invalid_request naming `url`; nothing is written."""
    app = make_app(STORAGE_URL=backend)  # the guard on: private addresses refused
    client = app.test_client()
    answer = client.post(
        "/livekit/webhook-endpoints",
        data=f'{{"url": {url}}}',
        content_type="application/json",
        headers=tenants.headers("acme"),
    )
    assert answer.status_code == 400, answer.json
    assert answer.json["code"] == "invalid_request" and "url" in answer.json["fields"]
    assert field_text in answer.json["error"]
    listed = client.get("/livekit/webhook-endpoints", headers=tenants.headers("acme"))
    assert listed.json["endpoints"] == []


def test_a_description_the_storage_cannot_encode_is_400_with_nothing_written(app_fast, tenants):
    """A lone surrogate in the description: 400 naming `description`, nothing written."""
    client = app_fast.test_client()
    answer = client.post(
        "/livekit/webhook-endpoints",
        data='{"url": "http://127.0.0.1:9/hooks", "description": "x\\udfff"}',
        content_type="application/json",
        headers=tenants.headers("acme"),
    )
    assert answer.status_code == 400 and "description" in answer.json["fields"]
    assert (
        client.get("/livekit/webhook-endpoints", headers=tenants.headers("acme")).json["endpoints"]
        == []
    )


def test_a_non_ascii_path_is_kept_encoded_and_delivered(
    app_fast, tenants, make_receiver, make_worker
):
    """A path with non-ASCII characters and U+202E is kept percent-encoded (UTF-8), and the
    receiver gets the event at that path."""
    client = app_fast.test_client()
    receiver = make_receiver()
    created = subscribe(client, tenants, "acme", receiver.url + "/päth/☃\u202e?q=é")
    assert created["url"] == receiver.url + "/p%C3%A4th/%E2%98%83%E2%80%AE?q=%C3%A9"
    receiver.secret = created["secret"]
    room = own_room(client, tenants, "acme")
    make_worker(app_fast)
    event(client, "acme", room)
    (item,) = receiver.wait_for(1)
    assert item.event is not None


def test_an_attempt_that_cannot_be_made_is_recorded_never_left_pending(
    make_app, backend, tenants, make_receiver, make_worker
):
    """A secret no key given opens (the key was replaced without a rekey): the attempt is
    recorded with its error and retried, not left pending with no attempt."""
    client = make_app(STORAGE_URL=backend, **FAST).test_client()
    receiver = make_receiver()
    subscribe(client, tenants, "acme", receiver.url)
    room = own_room(client, tenants, "acme")
    other = make_app(STORAGE_URL=backend, TENANT_WEBHOOK_SECRETS_KEY=new_key(), **FAST)
    make_worker(other)
    event(client, "acme", room)
    assert wait_for(lambda: deliveries(client, tenants)[0]["attempts"] >= 1)
    (found,) = deliveries(client, tenants)
    assert found["status"] == "pending" and found["last_error"] == "failed (SealingError)"
    assert receiver.tried == 0


def raw_values(backend: str) -> bytes:
    """Everything the storage holds, as bytes: the SQLite file (and its WAL), or every Redis
    value."""
    if backend.startswith("sqlite"):
        path = sqlite_path(backend)
        db = sqlite3.connect(path)
        rows = db.execute("SELECT * FROM webhook_endpoints").fetchall()
        db.close()
        found = repr(rows).encode()
        for suffix in ("", "-wal"):
            try:
                with open(path + suffix, "rb") as file:
                    found += file.read()
            except FileNotFoundError:
                pass
        return found
    client = redis.Redis.from_url(backend)
    found = b""
    for key in client.scan_iter(count=1000):
        if client.type(key) == b"hash":
            found += repr(client.hgetall(key)).encode()
    return found


def test_secrets_are_sealed_in_the_storage_and_rekeyed(
    make_app, backend, tenants, make_receiver, make_worker
):
    """Neither a secret nor a rotated one is in the storage in clear; `flask webhooks rekey`
    with a new key first seals them with it, after which the new key alone opens them and the
    receiver verifies what it gets."""
    app = make_app(STORAGE_URL=backend, **FAST)
    client = app.test_client()
    receiver = make_receiver()
    created = subscribe(client, tenants, "acme", receiver.url)
    rotated = client.post(
        f"/livekit/webhook-endpoints/{created['id']}/rotate-secret",
        headers=tenants.headers("acme"),
    ).json["secret"]
    stored = raw_values(backend)
    for secret in (created["secret"], rotated):
        assert secret.encode() not in stored
        assert secret.removeprefix("whsec_").encode() not in stored
    assert SEALED_PREFIX.encode() in stored
    key = new_key()
    both = make_app(STORAGE_URL=backend, TENANT_WEBHOOK_SECRETS_KEY=f"{key},{WEBHOOK_SECRETS_KEY}")
    result = both.test_cli_runner().invoke(args=["webhooks", "rekey"])
    assert result.exit_code == 0, result.output
    assert "sealed again with the first key: 1 endpoints" in result.output
    again = both.test_cli_runner().invoke(args=["webhooks", "rekey"])
    assert "sealed again with the first key: 0 endpoints; already sealed with it: 1" in again.output
    new_only = make_app(STORAGE_URL=backend, TENANT_WEBHOOK_SECRETS_KEY=key, **FAST)
    receiver.secret = rotated
    room = own_room(client, tenants, "acme")
    make_worker(new_only)
    event(client, "acme", room)
    (item,) = receiver.wait_for(1)
    assert item.event is not None  # signed with the rotated secret, opened by the new key
    assert rotated.encode() not in raw_values(backend)


def test_outside_dev_mode_webhooks_without_a_key_refuse_to_start(make_app):
    """No TENANT_WEBHOOK_SECRETS_KEY beside a tenant key: the start stops, saying what to set;
    DEV_MODE starts (secrets in clear)."""
    from tokensvc.config import ConfigError

    with pytest.raises(ConfigError, match="TENANT_WEBHOOK_SECRETS_KEY"):
        make_app(TENANT_WEBHOOK_SECRETS_KEY="")
    assert make_app(TENANT_WEBHOOK_SECRETS_KEY="", DEV_MODE="true") is not None
