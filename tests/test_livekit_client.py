"""The synchronous LiveKit bridge: fewest round trips, one loop per process, fork safety."""

import json
import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import BODY


def loop_threads():
    """The LiveKit client loop threads alive in this process."""
    return [t for t in threading.enumerate() if t.name == "livekit-client"]


def test_round_trips_per_token(client, tenants, livekit):
    """Unauthenticated 0 calls; room missing or owned 2 (ListRooms, CreateRoom); never an update."""
    client.post("/livekit/token", json=BODY)
    assert livekit.calls == {}
    client.post("/livekit/token", json=BODY, headers=tenants.headers("acme"))
    assert livekit.calls == {"ListRooms": 1, "CreateRoom": 1}
    livekit.calls.clear()
    client.post("/livekit/token", json=BODY, headers=tenants.headers("acme"))
    assert livekit.calls == {"ListRooms": 1, "CreateRoom": 1}
    assert livekit.call_count("UpdateRoomMetadata") == 0


def test_one_loop_thread_serves_many_request_threads(app, tenants, livekit):
    """Sixty-four requests from eight threads share one loop thread and one session."""
    before = len(loop_threads())

    def ask(number):
        with app.test_client() as client:
            body = {**BODY, "room_name": f"room-{number % 8}"}
            return client.post("/livekit/token", json=body, headers=tenants.headers("acme"))

    with ThreadPoolExecutor(8) as pool:
        statuses = [response.status_code for response in pool.map(ask, range(64))]
    assert statuses == [200] * 64
    assert len(loop_threads()) == before + 1
    assert livekit.calls == {"ListRooms": 64, "CreateRoom": 64}
    assert sorted(livekit.rooms) == [f"room-{number}" for number in range(8)]


def test_loop_is_started_lazily(app, livekit):
    """Building the app starts no thread and opens no connection (safe before fork)."""
    rooms = app.extensions["tokensvc"].issuer.rooms
    assert rooms._loop is None


def _child_request(app, headers, queue):
    """In a forked child: ask for a token and report status and the loop thread's identity."""
    response = app.test_client().post("/livekit/token", json=BODY, headers=headers)
    rooms = app.extensions["tokensvc"].issuer.rooms
    queue.put((response.status_code, rooms._thread.ident if rooms._thread else None))


def test_forked_child_starts_its_own_loop(app, tenants, livekit):
    """After fork a child never uses the parent's loop or sockets: it starts its own and works."""
    headers = tenants.headers("acme")
    assert app.test_client().post("/livekit/token", json=BODY, headers=headers).status_code == 200
    parent_thread = app.extensions["tokensvc"].issuer.rooms._thread
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_request, args=(app, headers, queue))
    child.start()
    status, child_thread = queue.get(timeout=30)
    child.join(30)
    assert status == 200
    assert child_thread is not None and child.exitcode == 0
    assert parent_thread.is_alive()
    assert livekit.calls["ListRooms"] == 2


def test_server_closed_keepalive_connection_is_replaced(client, tenants, livekit):
    """LiveKit closing idle connections does not fail the next request (no broken pool)."""
    headers = tenants.headers("acme")
    assert client.post("/livekit/token", json=BODY, headers=headers).status_code == 200
    for _ in range(3):
        livekit.drop_connections()
        assert client.post("/livekit/token", json=BODY, headers=headers).status_code == 200


def test_close_stops_the_loop_thread(make_app, tenants, livekit):
    """close() ends the loop thread; a later call starts a fresh one."""
    app = make_app()
    client = app.test_client()
    assert client.post("/livekit/token", json=BODY, headers=tenants.headers()).status_code == 200
    rooms = app.extensions["tokensvc"].issuer.rooms
    thread = rooms._thread
    app.extensions["tokensvc"].close()
    assert not thread.is_alive()
    assert client.post("/livekit/token", json=BODY, headers=tenants.headers()).status_code == 200
    assert rooms._thread is not thread and rooms._thread.is_alive()

