"""Tenants racing for new rooms through gunicorn (2 workers) on the real livekit-server.

Two concurrent CreateRoom calls for one new room can leave the server's live room and its store
disagreeing until the live room next changes (livekit-facts, "Room semantics"). Over many rounds,
no room may ever give tokens to two tenants: not in the race, not when every contender asks again
at once, and not after a participant has joined. The emulator reproduces the same divergence
deterministically in test_ownership.py.
"""

import json
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import BODY
from participants import join_all

ROUNDS = 200
TENANTS = ("acme", "globex", "initech", "umbrella")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.livekit_server("livekit-server"),
    pytest.mark.usefixtures("media_network"),
]


def ask_at_once(server, tenants, asks):
    """Send every (tenant, room) request at the same moment; return (tenant, room, status, body)."""
    barrier = threading.Barrier(len(asks))

    def ask(tenant, room):
        headers = tenants.headers(tenant)
        barrier.wait()
        status, body, _ = server.post("/livekit/token", {**BODY, "room_name": room}, headers)
        return tenant, room, status, body

    with ThreadPoolExecutor(len(asks)) as pool:
        return list(pool.map(lambda pair: ask(*pair), asks))


def owner(metadata: str) -> str:
    """The auth_id in a room's metadata."""
    return json.loads(metadata)["auth_id"]


def test_no_room_ever_gives_tokens_to_two_tenants(make_gunicorn, tenants, livekit, capsys):
    """200 rounds of 2 to 4 tenants; then all again at once; then again after a participant joined."""
    # Rooms outlive the test, so a name never closes and opens again between the phases.
    server = make_gunicorn(ROOM_EMPTY_TIMEOUT="900", ROOM_DEPARTURE_TIMEOUT="900")
    contenders, granted, tokens = {}, defaultdict(set), {}

    def record(results):
        for tenant, room, status, body in results:
            assert status in (200, 403), body
            if status == 200:
                granted[room].add(tenant)
                tokens.setdefault(room, (tenant, body["token"]))

    for round_no in range(ROUNDS):
        room, count = f"race-{round_no}", 2 + round_no % 3
        start = round_no % len(TENANTS)
        contenders[room] = (TENANTS * 2)[start:start + count]
        record(ask_at_once(server, tenants, [(tenant, room) for tenant in contenders[room]]))
    raced = sum(livekit.proxy.creates[room] >= 2 for room in contenders)

    for room, who in contenders.items():
        record(ask_at_once(server, tenants, [(tenant, room) for tenant in who]))
    diverged = sum(
        owner(livekit.stored_room(room).metadata) != owner(livekit.get_room(room).metadata)
        for room in contenders
    )

    seen = join_all(livekit.ws_url, [tokens[room][1] for room in contenders])
    for room, (name, metadata) in zip(contenders, seen):
        assert name == room and owner(metadata) == tokens[room][0]
        assert owner(livekit.stored_room(room).metadata) == tokens[room][0]
    for room, who in contenders.items():
        record(ask_at_once(server, tenants, [(tenant, room) for tenant in who]))

    shared = {room: sorted(who) for room, who in granted.items() if len(who) > 1}
    with capsys.disabled():
        print(f"\nrace on livekit-server: {ROUNDS} rounds, {raced} with concurrent CreateRoom, "
              f"{diverged} rooms whose store and live room disagreed, {len(shared)} shared")
    assert shared == {}
    assert sorted(granted) == sorted(contenders)  # every room has exactly one owner with tokens
    assert raced >= ROUNDS // 4, "the tenants' CreateRoom calls hardly ever overlapped"
