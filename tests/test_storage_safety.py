"""A storage that forgets and clocks that disagree cannot hand a held name to another tenant:
a store that lost its data quarantines shared names for one grace, and an instance whose clock
is off decides every deadline on the storage's clock and says it is not ready."""

import json
import logging
import re
import shutil
import time

import pytest
from livekit import rtc

from support.participants import join, stay
from support.processes import GunicornProcess, gunicorn_env
from tokensvc.context import service_state
from tokensvc.testing.processes import find_free_port

ROOM = "quarantined"
FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def record(app):
    """The app's ownership rule."""
    return service_state(app).issuer.ownership


def losses_counted(client) -> float:
    """tokensvc_storage_losses_total as /metrics shows it."""
    text = client.get("/metrics").get_data(as_text=True)
    return float(re.search(r"^tokensvc_storage_losses_total ([0-9.]+)$", text, re.M).group(1))


@pytest.mark.parametrize("loss", ["flushall", "restart-without-persistence"])
def test_a_lost_redis_quarantines_shared_names_for_a_grace(
    make_app, tenants, livekit, redis_server, caplog, loss
):
    """Two instances on one Redis; the store loses everything while they run. For one grace a
    shared name without a record goes to nobody (503 storage_recovering, Retry-After) unless
    LiveKit lists the caller's live room (200 for its owner, 403 for another); per-tenant names
    are not affected; a warning and the metric say so; after the grace, names are free."""
    first = make_app(STORAGE_URL=redis_server.url, METRICS_ENABLED="true")
    second = make_app(STORAGE_URL=redis_server.url, METRICS_ENABLED="true")
    one, two = first.test_client(), second.test_client()
    assert tenants.ask(one, "acme", room=ROOM).status_code == 200
    assert tenants.ask(two, "acme", room="live-room").status_code == 200
    livekit.close_room(ROOM)
    losses = losses_counted(two)
    if loss == "flushall":
        import redis

        redis.Redis.from_url(redis_server.url).flushall()
    else:
        redis_server.restart()
    caplog.clear()
    refused = tenants.ask(two, "globex", room=ROOM)
    assert (refused.status_code, refused.json["code"]) == (503, "storage_recovering")
    grace_s = record(second).grace_ms // 1000
    assert grace_s - 2 <= int(refused.headers["Retry-After"]) <= grace_s
    assert tenants.ask(one, "acme", room=ROOM).status_code == 503  # no live room to prove it
    assert tenants.ask(one, "globex", room="live-room").status_code == 403
    assert tenants.ask(one, "acme", room="live-room").status_code == 200
    lost = [r for r in caplog.records if "lost its data" in r.getMessage()]
    assert lost and all(r.levelno == logging.WARNING for r in lost)
    assert losses_counted(two) > losses
    for app in (first, second):
        record(app).holds.clock.advance(record(app).grace_ms + 1000)
    assert tenants.ask(two, "globex", room=ROOM).status_code == 200


def test_per_tenant_names_are_immune_to_a_lost_store(make_app, tenants, livekit, redis_server):
    """ROOM_NAMES=per-tenant: no tenant can produce another's LiveKit name, so a lost store
    quarantines nothing."""
    app = make_app(STORAGE_URL=redis_server.url, ROOM_NAMES="per-tenant")
    client = app.test_client()
    assert tenants.ask(client, "acme", room=ROOM).status_code == 200
    redis_server.restart()
    assert tenants.ask(client, "acme", room=ROOM).status_code == 200
    assert tenants.ask(client, "globex", room=ROOM).status_code == 200


@pytest.mark.slow
@pytest.mark.parametrize("offset", ["+30s", "+12m", "-12m"])
def test_a_skewed_instance_decides_on_the_storages_clock_and_is_not_ready(
    livekit, redis_server, tenants, offset
):
    """Two instances on one Redis, the second's clock moved by libfaketime. A hold made through
    the first is still running for the second (globex 403, no LiveKit call, the hold unchanged);
    the second's /readyz is 503 clock_skew while the first's is ready."""
    if shutil.which("faketime") is None:
        pytest.fail("libfaketime is not installed (make test installs Debian's faketime)")
    env = gunicorn_env(livekit, STORAGE_URL=redis_server.url, WEB_CONCURRENCY="1")
    right = GunicornProcess(env, find_free_port())
    skewed = GunicornProcess(
        {
            **env,
            "LD_PRELOAD": FAKETIME,
            "FAKETIME": offset,
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "FAKETIME_NO_CACHE": "1",
        },
        find_free_port(),
    )
    try:
        status, _, _ = right.post(
            "/livekit/token",
            {"room_name": ROOM, "participant_name": "A", "participant_identity": "a"},
            tenants.headers("acme"),
        )
        assert status == 200
        livekit.close_room(ROOM)
        livekit.calls.clear()
        status, body, _ = skewed.post(
            "/livekit/token",
            {"room_name": ROOM, "participant_name": "B", "participant_identity": "b"},
            tenants.headers("globex", ttl=7200, iat=int(time.time()) - 3600),
        )
        assert (status, body["code"]) == (403, "room_forbidden")
        assert livekit.calls == {}
        import redis

        hold = redis.Redis.from_url(redis_server.url).hgetall(f"tokensvc:hold:{ROOM}")
        assert (hold[b"holder"], hold[b"gone"]) == (b"acme", b"0")
        ready, body, _ = skewed.get("/readyz")
        assert (ready, body["code"]) == (503, "clock_skew")
        assert right.get("/readyz")[0] == 200
    finally:
        right.close()
        skewed.close()


@pytest.mark.waits
@pytest.mark.livekit_server("livekit-server")
@pytest.mark.usefixtures("media_network")
def test_a_grace_started_on_a_fast_instance_ends_on_the_storages_clock(
    livekit, redis_server, tenants, capsys
):
    """Two instances on one Redis and the real livekit-server, the second 30 s fast
    (libfaketime). A's participant joins through the right one, keeps LiveKit's refreshed token
    and leaves; B's request through the right one starts the grace, and B asks through the fast
    one until the name is B's. The grace starts and ends on the storage's clock: the fast
    instance passes the name on no sooner than one grace after it started (with deadlines on
    the instances' clocks it did 30 s early), and by then A's newest refreshed token no longer
    joins, while B's token lands in B's own room.
    (TOKEN_TTL=30 and HOLD_MARGIN=0 keep the wait near 13 minutes; the margin only adds.)"""
    env = gunicorn_env(
        livekit,
        STORAGE_URL=redis_server.url,
        WEB_CONCURRENCY="1",
        TOKEN_TTL="30",
        HOLD_MARGIN="0",
        ROOM_EMPTY_TIMEOUT="1",
        ROOM_DEPARTURE_TIMEOUT="1",
    )
    right = GunicornProcess(env, find_free_port())
    fast = GunicornProcess(
        {
            **env,
            "LD_PRELOAD": FAKETIME,
            "FAKETIME": "+30s",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "FAKETIME_NO_CACHE": "1",
        },
        find_free_port(),
    )
    body = {"room_name": ROOM, "participant_name": "A", "participant_identity": "a"}
    try:
        status, minted, _ = right.post("/livekit/token", body, tenants.headers("acme"))
        assert status == 200
        name, _, refreshed = stay(livekit.ws_url, minted["token"], seconds=1, refreshes=1)
        assert name == ROOM and refreshed
        kept = refreshed[-1]
        deadline = time.monotonic() + 30
        while livekit.stored_room(ROOM) is not None:
            assert time.monotonic() < deadline, "the room did not close"
            time.sleep(0.5)
        livekit.calls.clear()
        asked = {**body, "participant_name": "B", "participant_identity": "b"}
        grace_started = None
        while True:  # the grace starts on the right instance (its first ListRooms) ...
            headers = tenants.headers("globex", ttl=7200, iat=int(time.time()) - 3600)
            server = right if grace_started is None else fast  # ... and is read on the fast one
            sent = time.monotonic()  # the grace starts inside this request, if it does
            status, answer, _ = server.post("/livekit/token", asked, headers)
            if status == 200:
                break
            assert (status, answer["code"]) == (403, "room_forbidden")
            if grace_started is None and livekit.calls["ListRooms"] > 0:
                grace_started = sent  # not when the answer came: a loaded host answers late
            assert time.monotonic() < (grace_started or time.monotonic()) + 900
            time.sleep(2)
        waited = time.monotonic() - grace_started
        with capsys.disabled():
            print(
                f"\nthe grace started on the right instance; the fast one passed the name on "
                f"{waited:.0f} s later (the grace is 660 s)"
            )
        assert waited >= 660 - 3
        with pytest.raises(rtc.ConnectError):
            join(livekit.ws_url, kept)
        name, metadata = join(answer["livekit_url"], answer["token"])
        assert (name, json.loads(metadata)["auth_id"]) == (ROOM, "globex")
    finally:
        right.close()
        fast.close()
