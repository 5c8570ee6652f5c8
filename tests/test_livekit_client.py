"""The synchronous LiveKit client: fewest round trips, kept-alive connections, fork safety."""

import multiprocessing
from concurrent.futures import ThreadPoolExecutor

import jwt

from support.processes import connections_to
from support.tokens import BODY
from tokensvc.context import service_state


def test_round_trips_per_token(make_app, tenants, livekit):
    """A new room 2 calls (ListRooms, CreateRoom); the caller's own 0; another tenant's 0; never
    an update (anonymous tokens' 0: tests/test_token.py)."""
    client = make_app().test_client()
    client.post("/livekit/token", json=BODY, headers=tenants.headers("acme"))
    assert livekit.calls == {"ListRooms": 1, "CreateRoom": 1}
    livekit.calls.clear()
    client.post("/livekit/token", json=BODY, headers=tenants.headers("acme"))
    assert livekit.calls == {}
    assert (
        client.post("/livekit/token", json=BODY, headers=tenants.headers("globex")).status_code
        == 403
    )
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
    assert 1 <= len(set(livekit.client_ports)) <= 8


def test_no_connection_before_the_first_call(make_app, tenants, livekit):
    """Building the app opens no connection to LiveKit (safe before gunicorn forks its
    workers); the first call opens one."""
    app = make_app()
    assert connections_to(livekit.port) == 0
    client = app.test_client()
    assert client.post("/livekit/token", json=BODY, headers=tenants.headers()).status_code == 200
    assert connections_to(livekit.port) == 1


def _child_request(app, headers, queue):
    """In a forked child: ask for a token for a new name (so LiveKit is called); report it."""
    body = {**BODY, "room_name": "child-room"}
    queue.put(app.test_client().post("/livekit/token", json=body, headers=headers).status_code)


def test_forked_child_uses_its_own_connections(app, tenants, livekit):
    """After fork a child never uses the parent's connection: it opens its own, and the parent
    goes on on the one it had."""
    headers = tenants.headers("acme")
    client = app.test_client()
    assert client.post("/livekit/token", json=BODY, headers=headers).status_code == 200
    parent_ports = set(livekit.client_ports)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_request, args=(app, headers, queue))
    child.start()
    status = queue.get(timeout=30)
    child.join(30)
    assert (status, child.exitcode) == (200, 0)
    child_ports = set(livekit.client_ports) - parent_ports
    assert len(child_ports) == 1
    body = {**BODY, "room_name": "parent-again"}
    assert client.post("/livekit/token", json=body, headers=headers).status_code == 200
    assert set(livekit.client_ports[-2:]) <= parent_ports
    assert livekit.calls == {"ListRooms": 3, "CreateRoom": 3}


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
    before = set(livekit.client_ports)
    service_state(app).close()
    assert connections_to(livekit.port) == 0
    body = {**BODY, "room_name": "another-room"}  # a new name: LiveKit is called again
    assert client.post("/livekit/token", json=body, headers=tenants.headers()).status_code == 200
    assert not set(livekit.client_ports[-2:]) & before


def test_a_room_admin_token_is_signed_once_and_serves_that_room_alone(make_app, tenants, livekit):
    """The calls on one room (the sweeper's probes, listings) share one `roomAdmin` token for
    that room alone, signed again once it is half spent; another room gets its own, and LiveKit
    (which checks the room claim) accepts each for its room."""
    app = make_app()
    for room in ("room-a", "room-b"):
        body = {**BODY, "room_name": room}
        assert app.test_client().post("/livekit/token", json=body, headers=tenants.headers())
    rooms = service_state(app).issuer.rooms
    bearers = {}
    for room in ("room-a", "room-b", "room-a"):
        assert rooms.list_participants(room) == []
        headers = rooms._admin_headers(room)
        assert rooms._admin_headers(room) is headers  # kept, not signed again
        bearer = headers["Authorization"]
        assert bearers.setdefault(room, bearer) == bearer
    for room, bearer in bearers.items():
        claims = jwt.decode(bearer.removeprefix("Bearer "), options={"verify_signature": False})
        assert (claims["video"]["roomAdmin"], claims["video"]["room"]) == (True, room)
        assert not {"roomList", "roomCreate"} & set(claims["video"])
        assert claims["exp"] - claims["nbf"] == 60
