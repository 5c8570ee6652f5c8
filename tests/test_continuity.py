"""The storage proves its own continuity: a loss is found from what the storage itself holds, by
any process, including one that never saw the data before it was lost (a new instance, a
respawned worker), and a new deployment says it is new once (`storage init`).

Each test is a fault the service once missed: tenant A's hold was lost, nothing was said, and
tenant B got A's name while A's tokens could still join. Here B never gets 200 for it."""

import os
import shutil
import signal
import time

import pytest

from support.processes import GunicornProcess, RedisServer, gunicorn_env, unavailable
from support.storage import initialise
from support.tokens import LIVEKIT_KEY
from tokensvc.context import service_state
from tokensvc.extension import check_storage_at_start
from tokensvc.storage import sqlite_path
from tokensvc.testing.processes import find_free_port

ROOM = "held-by-acme"


def record(app):
    """The app's ownership rule."""
    return service_state(app).issuer.ownership


def redis_binary() -> str:
    """The redis-server binary (`make test` installs it)."""
    return shutil.which("redis-server") or unavailable("redis-server is not installed")


def start_redis(*options: str, init: bool = True) -> RedisServer:
    """A fresh redis-server with extra `options`, initialised as a new deployment's unless not
    `init`."""
    server = RedisServer(redis_binary(), find_free_port(), *options).start()
    if init:
        initialise(server.url)
    return server


def held_then_closed(tenants, client, livekit) -> None:
    """A gets the name (its hold recorded) and its room closes: from now on only the record
    keeps the name A's."""
    assert tenants.ask(client, "acme", room=ROOM).status_code == 200
    livekit.close_room(ROOM)


def refused_with(answer, status: int, code: str) -> None:
    """The answer is the refusal named."""
    assert (answer.status_code, answer.json["code"]) == (status, code), answer.json


def pass_the_grace(*apps) -> None:
    """Move the storage's clock of every app past one grace."""
    for app in apps:
        ownership = record(app)
        ownership.holds.clock.advance(ownership.grace_ms + 1000)


# (a) A Redis switched to an evicting policy at run time, its memory filled by another client.


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-lru"])
def test_a_redis_that_starts_evicting_at_run_time_never_hands_the_name_over(
    make_app, tenants, livekit, redis_server, policy
):
    """CONFIG SET maxmemory-policy at run time and memory filled until A's hold is evicted:
    while the policy evicts, the token route is 503 storage_unavailable naming noeviction; once
    it is set back, the eviction is a loss found from Redis's own evicted_keys: B's request is
    503 storage_recovering for one grace, then the name is free. (The first instance re-reads
    the policy at its next full check: every claim here, not every 5 s.)"""
    import redis

    app = make_app(STORAGE_URL=redis_server.url, STORAGE_CHECK_INTERVAL="0.001")
    client = app.test_client()
    held_then_closed(tenants, client, livekit)
    other = redis.Redis.from_url(redis_server.url)
    other.config_set("maxmemory-policy", policy)
    other.config_set("maxmemory", int(other.info("memory")["used_memory"]) + 2_000_000)
    filler = b"x" * 4096
    for index in range(20_000):
        other.set(f"filler:{index}", filler, ex=3600)
        if index % 100 == 0 and not other.exists(f"tokensvc:hold:{ROOM}"):
            break
    assert not other.exists(f"tokensvc:hold:{ROOM}"), "the hold was not evicted"
    refused = tenants.ask(client, "globex", room=ROOM)
    refused_with(refused, 503, "storage_unavailable")
    assert "noeviction" in refused.json["error"]
    refused_with(tenants.ask(client, "globex", room="a-new-name"), 503, "storage_unavailable")
    other.config_set("maxmemory-policy", "noeviction")
    other.config_set("maxmemory", 0)
    other.delete(*other.keys("filler:*"))
    later = make_app(STORAGE_URL=redis_server.url)
    refused_with(tenants.ask(later.test_client(), "globex", room=ROOM), 503, "storage_recovering")
    refused_with(tenants.ask(client, "globex", room=ROOM), 503, "storage_recovering")
    pass_the_grace(later)
    assert tenants.ask(later.test_client(), "globex", room=ROOM).status_code == 200


def test_an_evicting_policy_is_refused_while_the_service_runs(make_app, tenants, redis_server):
    """The policy is re-checked while running, not only at start: the full check (every
    STORAGE_CHECK_INTERVAL) makes every token request 503 storage_unavailable, the holder's own
    name included, and /readyz says what to set."""
    import redis

    app = make_app(STORAGE_URL=redis_server.url, STORAGE_CHECK_INTERVAL="0.001")
    client = app.test_client()
    assert tenants.ask(client, "acme", room=ROOM).status_code == 200
    redis.Redis.from_url(redis_server.url).config_set("maxmemory-policy", "allkeys-lru")
    refused_with(tenants.ask(client, "acme", room=ROOM), 503, "storage_unavailable")
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "noeviction" in ready.json["error"]


# (b) Redis down at start, then up with allkeys-lru.


def test_a_redis_down_at_start_and_up_evicting_mints_nothing_until_noeviction(
    make_app, tenants, caplog
):
    """The service starts with no Redis (a warning), which then comes up with allkeys-lru: no
    token is minted (503 storage_unavailable naming noeviction) until the policy is set."""
    port = find_free_port()
    app = make_app(STORAGE_URL=f"redis://127.0.0.1:{port}/0", STORAGE_CHECK_INTERVAL="0.001")
    assert "did not answer" in caplog.text
    client = app.test_client()
    server = RedisServer(redis_binary(), port, "--maxmemory-policy", "allkeys-lru").start()
    try:
        initialise(server.url)
        for room in (ROOM, "another"):
            refused = tenants.ask(client, "acme", room=room)
            refused_with(refused, 503, "storage_unavailable")
            assert "maxmemory-policy noeviction" in refused.json["error"]
        import redis

        redis.Redis.from_url(server.url).config_set("maxmemory-policy", "noeviction")
        assert tenants.ask(client, "acme", room=ROOM).status_code == 200
    finally:
        server.stop()


# (c) and (d): a process that never saw the lost data.


def test_a_new_instance_started_after_flushall_quarantines(
    make_app, tenants, livekit, redis_server, caplog
):
    """FLUSHALL, then a new instance is the first to be asked: it finds the continuity record
    missing and quarantines (B 503 storage_recovering), saying what to run if the deployment is
    new; the instance that saw the data sees the same quarantine."""
    import redis

    first = make_app(STORAGE_URL=redis_server.url)
    held_then_closed(tenants, first.test_client(), livekit)
    redis.Redis.from_url(redis_server.url).flushall()
    caplog.clear()
    fresh = make_app(STORAGE_URL=redis_server.url)
    refused = tenants.ask(fresh.test_client(), "globex", room=ROOM)
    refused_with(refused, 503, "storage_recovering")
    grace_s = record(fresh).grace_ms // 1000
    assert grace_s - 2 <= int(refused.headers["Retry-After"]) <= grace_s
    assert "storage init" in caplog.text and "continuity record is missing" in caplog.text
    refused_with(tenants.ask(first.test_client(), "globex", room=ROOM), 503, "storage_recovering")


def delete_sqlite_file(url: str) -> None:
    """Delete the embedded record's file as an operator would (`rm tokensvc.sqlite3*`)."""
    path = sqlite_path(url)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


def test_a_fresh_process_after_the_loss_quarantines(make_app, tenants, livekit, backend):
    """The storage loses everything (Redis flushed; the SQLite file deleted) and a process with
    no memory of it (a new app) is asked first: B gets 503 storage_recovering, on both
    backends; so does the process that saw the data (its SQLite connection was to the deleted
    file); after one grace the name is free."""
    first = make_app(STORAGE_URL=backend)
    held_then_closed(tenants, first.test_client(), livekit)
    if backend.startswith("sqlite"):
        delete_sqlite_file(backend)
    else:
        import redis

        redis.Redis.from_url(backend).flushall()
    fresh = make_app(STORAGE_URL=backend)
    refused_with(tenants.ask(fresh.test_client(), "globex", room=ROOM), 503, "storage_recovering")
    refused_with(tenants.ask(first.test_client(), "globex", room=ROOM), 503, "storage_recovering")
    assert tenants.ask(fresh.test_client(), "globex", room="unheld", identity="g").status_code == (
        503
    )
    pass_the_grace(fresh, first)
    assert tenants.ask(fresh.test_client(), "globex", room=ROOM).status_code == 200


@pytest.mark.slow
def test_a_respawned_gunicorn_worker_after_a_deleted_file_quarantines(
    livekit, tenants, storage_url
):
    """gunicorn with one worker on the embedded file: A's name is held, the file deleted, the
    worker killed; the worker gunicorn respawns never saw the old file, and B gets 503
    storage_recovering, not 200."""
    server = GunicornProcess(
        gunicorn_env(livekit, STORAGE_URL=storage_url, WEB_CONCURRENCY="1"), find_free_port()
    )
    body = {"room_name": ROOM, "participant_name": "A", "participant_identity": "a"}
    try:
        assert server.post("/livekit/token", body, tenants.headers("acme"))[0] == 200
        livekit.close_room(ROOM)
        delete_sqlite_file(storage_url)
        (worker,) = server.workers()
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while server.workers() in ([], [worker]):
            assert time.monotonic() < deadline, "gunicorn did not respawn its worker"
            time.sleep(0.1)
        status, answer = 0, {}
        while time.monotonic() < deadline:
            try:
                status, answer, _ = server.post("/livekit/token", body, tenants.headers("globex"))
                break
            except OSError:
                time.sleep(0.1)
        assert (status, answer.get("code")) == (503, "storage_recovering")
    finally:
        server.close()


# (e) A Redis with RDB snapshots, SIGKILLed and restarted from its snapshot.


def test_a_redis_restarted_from_its_snapshot_quarantines(make_app, tenants, livekit):
    """RDB persistence (`--save`): a snapshot holds the record, A's hold is written after it,
    Redis is SIGKILLed and restarted from the snapshot: the epoch is the same, the hold gone.
    The new run_id without appendfsync always is a loss: B gets 503 storage_recovering."""
    server = start_redis("--save", "3600 1")
    try:
        app = make_app(STORAGE_URL=server.url)
        client = app.test_client()
        assert tenants.ask(client, "acme", room="before-the-snapshot").status_code == 200
        import redis

        redis.Redis.from_url(server.url).save()
        held_then_closed(tenants, client, livekit)
        server.kill()
        server.start()
        assert redis.Redis.from_url(server.url).exists("tokensvc:continuity")
        refused_with(tenants.ask(client, "globex", room=ROOM), 503, "storage_recovering")
        fresh = make_app(STORAGE_URL=server.url).test_client()
        refused_with(tenants.ask(fresh, "globex", room=ROOM), 503, "storage_recovering")
    finally:
        server.stop()


# What is not a loss.


def test_restarting_every_instance_while_the_storage_runs_is_no_loss(
    make_app, tenants, livekit, backend, caplog
):
    """A deploy: every instance replaced, the storage kept running. Nothing is quarantined: the
    held name is still refused to B (403), a new name is B's at once."""
    old = make_app(STORAGE_URL=backend)
    held_then_closed(tenants, old.test_client(), livekit)
    service_state(old).close()
    caplog.clear()
    new = make_app(STORAGE_URL=backend).test_client()
    refused_with(tenants.ask(new, "globex", room=ROOM), 403, "room_forbidden")
    assert tenants.ask(new, "globex", room="new-name").status_code == 200
    assert "lost its data" not in caplog.text


def test_a_redis_restart_with_appendfsync_always_is_no_loss(make_app, tenants, livekit, caplog):
    """appendonly yes + appendfsync always: a SIGKILLed Redis restarts with every acknowledged
    write, so its new run_id quarantines nothing: B is refused the held name (403) and gets a
    new one."""
    server = start_redis("--appendonly", "yes", "--appendfsync", "always")
    try:
        app = make_app(STORAGE_URL=server.url)
        client = app.test_client()
        held_then_closed(tenants, client, livekit)
        server.kill()
        server.start()
        caplog.clear()
        refused_with(tenants.ask(client, "globex", room=ROOM), 403, "room_forbidden")
        assert tenants.ask(client, "globex", room="new-name").status_code == 200
        assert "lost its data" not in caplog.text
    finally:
        server.stop()


# A new deployment: `storage init`.


def init(app, *args: str):
    """Run `flask storage init` on `app`; the click result."""
    return app.test_cli_runner().invoke(args=["storage", "init", *args])


def test_an_empty_redis_without_init_is_a_loss_and_init_ends_it(make_app, tenants, caplog):
    """A Redis nobody initialised: the start-up check says what to run and quarantines shared
    names; `storage init` (nothing in the record, no room of the service in LiveKit) marks it
    new and ends the quarantine; run again, it changes nothing."""
    server = start_redis(init=False)
    try:
        app = make_app(STORAGE_URL=server.url)
        check_storage_at_start(service_state(app))
        assert "tokensvc storage init" in caplog.text
        refused_with(tenants.ask(app.test_client(), "acme", room=ROOM), 503, "storage_recovering")
        done = init(app)
        assert done.exit_code == 0 and "new deployment" in done.output, done.output
        assert tenants.ask(app.test_client(), "acme", room=ROOM).status_code == 200
        again = init(app)
        assert again.exit_code == 0 and "nothing changed" in again.output
    finally:
        server.stop()


def test_init_refuses_a_record_that_is_not_empty_unless_forced(make_app, tenants, backend):
    """A record that holds names but lost its continuity record (an earlier life): init
    refuses, naming why, and changes nothing; --force initialises it."""
    app = make_app(STORAGE_URL=backend)
    assert tenants.ask(app.test_client(), "acme", room=ROOM).status_code == 200
    if backend.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(sqlite_path(backend)) as db:
            db.execute("DELETE FROM meta")
    else:
        import redis

        redis.Redis.from_url(backend).delete("tokensvc:continuity")
    refused = init(app)
    assert refused.exit_code != 0 and "record is not empty" in refused.output, refused.output
    forced = init(app, "--force")
    assert forced.exit_code == 0, forced.output
    assert tenants.ask(app.test_client(), "globex", room="other").status_code == 200


def test_init_refuses_when_livekit_lists_rooms_the_service_made(make_app, tenants, livekit):
    """An empty Redis, but LiveKit lists a room with an owner in its metadata: the deployment
    lived before; init refuses, naming the room; --force initialises. A room without an owner
    (not the service's) does not count."""
    server = start_redis(init=False)
    try:
        livekit.add_room("someone-elses")
        livekit.add_room("made-here", metadata='{"auth_id":"acme"}')
        app = make_app(STORAGE_URL=server.url)
        refused = init(app)
        assert refused.exit_code != 0 and "'made-here'" in refused.output, refused.output
        assert "someone-elses" not in refused.output
        assert init(app, "--force").exit_code == 0
        assert tenants.ask(app.test_client(), "globex", room="fresh").status_code == 200
    finally:
        server.stop()


def test_a_new_sqlite_file_is_a_new_deployment_and_a_deleted_one_is_not(
    make_app, tenants, livekit, storage_url
):
    """The embedded default needs no init: a file that never existed on this host is new; its
    witness beside it (a dot file) tells a file deleted later from a new one; a wiped folder
    (file and witness) is new again."""
    app = make_app(STORAGE_URL=storage_url)
    assert tenants.ask(app.test_client(), "acme", room=ROOM).status_code == 200
    witness = os.path.join(os.path.dirname(sqlite_path(storage_url)), ".holds.sqlite3.born")
    assert os.path.exists(witness)
    livekit.close_room(ROOM)
    delete_sqlite_file(storage_url)
    second = make_app(STORAGE_URL=storage_url)
    refused_with(tenants.ask(second.test_client(), "globex", room=ROOM), 503, "storage_recovering")
    delete_sqlite_file(storage_url)
    os.remove(witness)
    third = make_app(STORAGE_URL=storage_url)
    assert tenants.ask(third.test_client(), "globex", room=ROOM).status_code == 200


# 4. A LiveKit 401 that the instance's clock explains.

FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


@pytest.mark.slow
def test_a_401_from_a_skewed_instance_names_its_clock(livekit, redis_server, tenants, caplog):
    """An instance 15 minutes fast (libfaketime) on a Redis shared with a right one: LiveKit
    refuses its API token (nbf in the future), and the 502 says the cause is this instance's
    clock, measured against the storage's, not the key pair."""
    if shutil.which("faketime") is None:
        pytest.fail("libfaketime is not installed (make test installs Debian's faketime)")
    env = gunicorn_env(livekit, STORAGE_URL=redis_server.url, WEB_CONCURRENCY="1")
    skewed = GunicornProcess(
        {
            **env,
            "LD_PRELOAD": FAKETIME,
            "FAKETIME": "+15m",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "FAKETIME_NO_CACHE": "1",
        },
        find_free_port(),
    )
    try:
        status, body, _ = skewed.post(
            "/livekit/token",
            {"room_name": ROOM, "participant_name": "A", "participant_identity": "a"},
            tenants.headers("acme", ttl=7200),
        )
        assert (status, body["code"]) == (502, "livekit_error")
        assert "clock is 900 s ahead of the storage's" in body["error"]
        assert "NTP" in body["error"] and LIVEKIT_KEY not in body["error"]
    finally:
        output = skewed.close()
    assert "clock is 900 s ahead" in output


def test_a_401_without_skew_still_names_the_key_pair(make_app, tenants, livekit):
    """Wrong LiveKit keys and clocks that agree: the 502 says to check the key pair."""
    app = make_app(LIVEKIT_API_SECRET="another-secret-of-at-least-32-bytes!!")
    answer = tenants.ask(app.test_client(), "acme", room=ROOM)
    refused_with(answer, 502, "livekit_error")
    assert "LIVEKIT_API_KEY/LIVEKIT_API_SECRET" in answer.json["error"]


def test_the_worker_watches_the_storage_between_requests(make_app, tenants, redis_server):
    """The worker process makes no claims, yet checks every STORAGE_CHECK_INTERVAL: a flush is
    found and the quarantine started with no request at all."""
    import redis

    from tokensvc.processes.worker import ContinuityWatch

    app = make_app(STORAGE_URL=redis_server.url)
    assert tenants.ask(app.test_client(), "acme", room=ROOM).status_code == 200
    other = redis.Redis.from_url(redis_server.url)
    other.flushall()
    watch = ContinuityWatch(record(app).holds, 0.05).start()
    try:
        deadline = time.monotonic() + 10
        while not other.exists("tokensvc:recovering"):
            assert time.monotonic() < deadline, "the watch found no loss"
            time.sleep(0.05)
    finally:
        watch.stop()
    assert other.hget("tokensvc:continuity", "lost") == b"missing"


@pytest.mark.waits
@pytest.mark.livekit_server("livekit-server")
@pytest.mark.usefixtures("media_network")
def test_b_never_gets_the_name_while_a_refreshed_token_of_a_joins(
    make_app, tenants, livekit, redis_server
):
    """The real livekit-server: A joins, keeps LiveKit's refreshed token and leaves; the room
    closes; Redis is flushed and a new instance is asked first. B is refused (503
    storage_recovering) while A's refreshed token still joins, landing in A's own room."""
    import json

    import redis

    from support.participants import join, stay

    first = make_app(STORAGE_URL=redis_server.url, ROOM_EMPTY_TIMEOUT="1")
    minted = tenants.ask(first.test_client(), "acme", room=ROOM).json
    name, _, refreshed = stay(livekit.ws_url, minted["token"], seconds=1, refreshes=1)
    assert name == ROOM and refreshed
    deadline = time.monotonic() + 30
    while livekit.stored_room(ROOM) is not None:
        assert time.monotonic() < deadline, "the room did not close"
        time.sleep(0.5)
    redis.Redis.from_url(redis_server.url).flushall()
    fresh = make_app(STORAGE_URL=redis_server.url).test_client()
    refused_with(tenants.ask(fresh, "globex", room=ROOM), 503, "storage_recovering")
    name, metadata = join(livekit.ws_url, refreshed[-1])
    assert (name, json.loads(metadata)["auth_id"]) == (ROOM, "acme")
    assert tenants.ask(fresh, "globex", room=ROOM).status_code in (403, 503)
