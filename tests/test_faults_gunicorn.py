"""LiveKit faults and a killed worker, with the service under gunicorn: answers within bounds."""

import os
import signal
import threading
import time
import urllib.error

import pytest

from support.tokens import BODY

pytestmark = pytest.mark.slow


def ask(server, tenants, room):
    """Ask for a token for `room` as tenant acme; return (status, body, seconds)."""
    started = time.monotonic()
    status, body, _ = server.post(
        "/livekit/token", {**BODY, "room_name": room}, tenants.headers("acme")
    )
    return status, body, time.monotonic() - started


def workers(server):
    """The gunicorn master's worker pids, as a set."""
    return set(server.workers())


def test_faults_map_to_codes_and_recovery_is_immediate(make_gunicorn, tenants, livekit):
    """Slow -> 504 within the timeout; 5xx -> 502; garbage -> 502; down -> 503; back -> 200."""
    server = make_gunicorn(LIVEKIT_TIMEOUT="0.5")
    rooms = iter(f"fault-room-{n}" for n in range(1000))
    assert ask(server, tenants, next(rooms))[0] == 200

    livekit.faults.latency = 3.0
    status, body, seconds = ask(server, tenants, next(rooms))
    assert (status, body["code"]) == (504, "livekit_timeout")
    assert seconds < 0.5 + 0.5
    livekit.faults.latency = 0

    for switch, value, expected in (("error", "internal", 502), ("malformed", True, 502)):
        setattr(livekit.faults, switch, value)
        status, body, _ = ask(server, tenants, next(rooms))
        assert (status, body["code"]) == (expected, "livekit_error")
        setattr(livekit.faults, switch, type(livekit.faults)().__dict__[switch])

    livekit.refuse_connections()
    status, body, _ = ask(server, tenants, next(rooms))
    assert (status, body["code"]) == (503, "livekit_unavailable")
    livekit.accept_connections()
    # Both workers, each with its own loop and pool, answer at once: nothing stayed poisoned.
    assert [ask(server, tenants, next(rooms))[0] for _ in range(8)] == [200] * 8


def test_worker_killed_mid_request(make_gunicorn, tenants, livekit):
    """Killing a worker during requests: the other keeps serving and the master replaces it."""
    server = make_gunicorn()
    assert ask(server, tenants, "warm")[0] == 200
    before = workers(server)
    livekit.faults.latency = 1.0
    outcomes = []

    def slow_request(number):
        try:
            outcomes.append(ask(server, tenants, f"kill-{number}")[0])
        except (urllib.error.URLError, ConnectionError, OSError):
            outcomes.append("dropped")

    threads = [threading.Thread(target=slow_request, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    livekit.faults.latency = 0
    # Right after the kill, before any replacement is ready, the other worker serves.
    assert [ask(server, tenants, f"during-{n}")[0] for n in range(4)] == [200] * 4
    for thread in threads:
        thread.join(30)
    # In-flight requests on the killed worker are dropped; none turns into a 5xx.
    assert len(outcomes) == 6 and set(outcomes) <= {200, "dropped"}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (len(workers(server)) < 2 or victim in workers(server)):
        time.sleep(0.1)
    after = workers(server)
    assert len(after) == 2 and victim not in after
    assert [ask(server, tenants, f"after-{n}")[0] for n in range(6)] == [200] * 6


def test_a_worker_killed_during_create_room_leaves_room_busy_then_200(
    make_gunicorn, tenants, livekit
):
    """The only worker is SIGKILLed while its CreateRoom is under way (the name claimed, its
    creation lock taken): the holder then gets 503 room_busy with Retry-After (not
    livekit_unavailable), another tenant 403; once the lock expires, the holder gets 200 and the
    room is the holder's."""
    server = make_gunicorn(WEB_CONCURRENCY="1", LIVEKIT_TIMEOUT="5")
    livekit.after_next_call("ListRooms", lambda: setattr(livekit.faults, "latency", 3.0))
    caught = threading.Thread(target=lambda: _swallow(ask, server, tenants, "crashed-room"))
    caught.start()
    deadline = time.monotonic() + 10
    while livekit.calls["CreateRoom"] == 0:
        assert time.monotonic() < deadline, "CreateRoom never came"
        time.sleep(0.01)
    (worker,) = workers(server)
    os.kill(worker, signal.SIGKILL)
    caught.join(10)
    livekit.faults.latency = 0
    deadline = time.monotonic() + 15
    while len(workers(server) - {worker}) < 1:
        assert time.monotonic() < deadline, "gunicorn did not start a new worker"
        time.sleep(0.1)
    status, body, headers = server.post(
        "/livekit/token", {**BODY, "room_name": "crashed-room"}, tenants.headers("acme")
    )
    assert (status, body["code"]) == (503, "room_busy")
    retry_after = int(headers["Retry-After"])
    assert 1 <= retry_after <= 40
    refused = server.post(
        "/livekit/token", {**BODY, "room_name": "crashed-room"}, tenants.headers("globex")
    )
    assert (refused[0], refused[1]["code"]) == (403, "room_forbidden")
    time.sleep(retry_after + 0.5)
    assert ask(server, tenants, "crashed-room")[0] == 200
    assert '"auth_id":"acme"' in livekit.get_room("crashed-room").metadata.replace(" ", "")


def _swallow(function, *args):
    """Call `function`, ignoring the connection error a killed worker leaves its client with."""
    try:
        function(*args)
    except (urllib.error.URLError, ConnectionError, OSError):
        pass
