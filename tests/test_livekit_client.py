"""The synchronous LiveKit client: fewest round trips, kept-alive connections, fork safety."""

import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor

from support.tokens import BODY


def test_round_trips_per_token(make_app, tenants, livekit):
    """Unauthenticated 0 calls; a new room 2 (ListRooms, CreateRoom); the caller's own 0;
    another tenant's 0; never an update."""
    unauthenticated = make_app(AUTH_JWT_SECRET=None, AUTH_REQUIRED=None).test_client()
    assert unauthenticated.post("/livekit/token", json=BODY).status_code == 200
    assert livekit.calls == {}
    client = make_app().test_client()
    client.post("/livekit/token", json=BODY, headers=tenants.headers("acme"))
    assert livekit.calls == {"ListRooms": 1, "CreateRoom": 1}
    livekit.calls.clear()
    client.post("/livekit/token", json=BODY, headers=tenants.headers("acme"))
    assert livekit.calls == {}
    assert client.post("/livekit/token", json=BODY,
                       headers=tenants.headers("globex")).status_code == 403
    assert livekit.calls == {}
    assert livekit.call_count("UpdateRoomMetadata") == 0


def test_many_request_threads_share_a_few_kept_alive_connections(app, tenants, livekit):
    """Sixty-four requests from eight threads: one pool, at most eight connections opened."""
    def ask(number):
        with app.test_client() as client:
            body = {**BODY, "room_name": f"room-{number % 8}"}
            return client.post("/livekit/token", json=body, headers=tenants.headers("acme"))

    with ThreadPoolExecutor(8) as pool:
        statuses = [response.status_code for response in pool.map(ask, range(64))]
    assert statuses == [200] * 64
    # One ListRooms and one CreateRoom per new name; acme's later tokens need no LiveKit call.
    assert livekit.calls == {"ListRooms": 8, "CreateRoom": 8}
    assert sorted(livekit.rooms) == [f"room-{number}" for number in range(8)]
    assert 1 <= app.extensions["tokensvc"].issuer.rooms._pool.num_connections <= 8
    assert not [t for t in threading.enumerate() if t.name == "livekit-client"]


def test_no_connection_before_the_first_call(app, livekit):
    """Building the app opens no connection (safe before gunicorn forks its workers)."""
    assert app.extensions["tokensvc"].issuer.rooms._pool is None


def _child_request(app, headers, parent_pool_id, queue):
    """In a forked child: ask for a token; report the status and whether it had its own pool."""
    body = {**BODY, "room_name": "child-room"}  # a new name, so the child calls LiveKit
    response = app.test_client().post("/livekit/token", json=body, headers=headers)
    pool = app.extensions["tokensvc"].issuer.rooms._pool
    queue.put((response.status_code, pool is not None and id(pool) != parent_pool_id))


def test_forked_child_uses_its_own_connections(app, tenants, livekit):
    """After fork a child never uses the parent's sockets: it opens its own, and both work."""
    headers = tenants.headers("acme")
    client = app.test_client()
    assert client.post("/livekit/token", json=BODY, headers=headers).status_code == 200
    parent_pool = app.extensions["tokensvc"].issuer.rooms._pool
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_request, args=(app, headers, id(parent_pool), queue))
    child.start()
    status, own_pool = queue.get(timeout=30)
    child.join(30)
    assert (status, own_pool, child.exitcode) == (200, True, 0)
    assert client.post("/livekit/token", json=BODY, headers=headers).status_code == 200
    assert app.extensions["tokensvc"].issuer.rooms._pool is parent_pool
    assert livekit.calls == {"ListRooms": 2, "CreateRoom": 2}


def test_server_closed_keepalive_connection_is_replaced(client, tenants, livekit):
    """LiveKit closing idle connections does not fail the next request (no broken pool)."""
    headers = tenants.headers("acme")
    assert client.post("/livekit/token", json=BODY, headers=headers).status_code == 200
    for _ in range(3):
        livekit.drop_connections()
        assert client.post("/livekit/token", json=BODY, headers=headers).status_code == 200


def test_close_drops_the_connections(make_app, tenants, livekit):
    """close() lets go of the pool; a later call opens a fresh one."""
    app = make_app()
    client = app.test_client()
    assert client.post("/livekit/token", json=BODY, headers=tenants.headers()).status_code == 200
    rooms = app.extensions["tokensvc"].issuer.rooms
    pool = rooms._pool
    app.extensions["tokensvc"].close()
    assert rooms._pool is None
    body = {**BODY, "room_name": "another-room"}  # a new name: LiveKit is called again
    assert client.post("/livekit/token", json=body, headers=tenants.headers()).status_code == 200
    assert rooms._pool is not None and rooms._pool is not pool
