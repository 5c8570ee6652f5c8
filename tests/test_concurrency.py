"""Two tenants asking for one new room at the same moment: exactly one owner, every time."""

import json

import pytest

from support.racing import race
from support.tokens import verify_token

pytestmark = pytest.mark.livekit_server

ROUNDS = 40


def test_two_tenants_one_new_room_one_owner(make_app, serve, tenants, livekit):
    """Over many rounds: one 200 and one 403, the winner owns the room and its token says so."""
    server = serve(make_app())
    livekit.faults.latency = 0.02  # widen the window: the first creator is still in LiveKit
    overlapped = 0
    for round_no in range(ROUNDS):
        room = f"race-{round_no}"
        results = race(server, tenants, room)
        overlapped += results.pop("overlapped")
        statuses = sorted(status for status, _ in results.values())
        assert statuses == [200, 403], results
        winner = next(tenant for tenant, (status, _) in results.items() if status == 200)
        loser_body = next(body for status, body in results.values() if status == 403)
        metadata = livekit.get_room(room).metadata
        assert json.loads(metadata) == {"auth_id": winner}
        assert loser_body["code"] == "room_forbidden"
        claims, _ = verify_token(results[winner][1]["token"])
        assert claims.room_config.metadata == metadata
    # The race was really run: in most rounds both requests were in the service at once.
    assert overlapped >= ROUNDS // 2
