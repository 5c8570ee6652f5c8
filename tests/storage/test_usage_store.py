"""The usage store's contract, on both backends: events recorded once whatever their order,
the tenant's live and reserved rooms, the seats of a room, and the usage report."""

import sqlite3

from tokensvc.storage import (
    ROOM_LOST,
    EventFacts,
    LiveLife,
    MintCheck,
    RoomRecord,
    SessionRecord,
    open_holds,
    open_usage,
)

MINUTE = 60_000


def joined(usage, sid, identity, room="r1", name="room", tenant="acme", kind="participant_joined"):
    """A participant event of room `room` (a life of `name`), at the storage's now."""
    now = usage.time_ms()
    return EventFacts(kind, tenant, name, room, now, now, sid, identity, now)


def started(usage, room="r1", name="room", tenant="acme"):
    """A room_started event, at the storage's now."""
    now = usage.time_ms()
    return EventFacts("room_started", tenant, name, room, now, now)


def test_events_are_recorded_once_and_reported(usage):
    """A room and a session are reported as their events say; an event delivered again or a
    later copy with other times changes nothing (the earliest start, the first end stay)."""
    start = started(usage)
    assert usage.record(start, None) == "metered"
    join = joined(usage, "p1", "alice")
    assert usage.record(join, None) == "metered"
    assert usage.record(join, None) == "metered"
    usage.clock.advance(MINUTE)
    left = joined(usage, "p1", "alice", kind="participant_left")
    assert usage.record(left, None) == "metered"
    usage.clock.advance(MINUTE)
    assert usage.record(joined(usage, "p1", "alice", kind="participant_left"), None) == "metered"
    now, rooms, sessions = usage.usage("acme", 0, usage.time_ms() + 1)
    assert now >= start.at + 2 * MINUTE  # the storage's clock, moved two minutes
    assert rooms == [RoomRecord("r1", "acme", "room", start.room_started, None)]
    assert sessions == [SessionRecord("p1", "r1", "alice", join.joined, left.at)]
    assert usage.usage("globex", 0, now + 1)[1:] == ([], [])


def test_a_room_of_no_known_tenant_is_ignored(usage):
    """An event for a room whose tenant neither the event nor the record knows writes nothing."""
    assert usage.record(started(usage, tenant=""), None) == "ignored"
    assert usage.usage(None, 0, usage.time_ms() + 1)[1:] == ([], [])


def test_a_finished_room_leaves_the_rooms_in_use_and_the_report_window(usage):
    """room_finished ends the life at the event's time: the name is no longer in use, and a
    window starting after it no longer reports the room."""
    usage.record(started(usage, "r1", "one"), None)
    usage.record(started(usage, "r2", "two"), None)
    assert usage.rooms_in_use("acme", ["one", "two", "three"]) == ["one", "two"]
    assert usage.rooms_in_use("globex", ["one", "two"]) == []
    usage.clock.advance(MINUTE)
    end = usage.time_ms()
    finished = EventFacts("room_finished", "acme", "one", "r1", end, end)
    assert usage.record(finished, None) == "metered"
    assert usage.rooms_in_use("acme", ["one", "two"]) == ["two"]
    _, rooms, _ = usage.usage("acme", end, end + MINUTE)
    assert sorted((room.sid, room.finished) for room in rooms) == [("r1", end), ("r2", None)]
    _, rooms, _ = usage.usage("acme", end + 1, end + MINUTE)
    assert [room.sid for room in rooms] == ["r2"]
    _, rooms, _ = usage.usage(None, 0, end + 1)
    assert sorted(room.sid for room in rooms) == ["r1", "r2"]


def test_check_mint_reserves_rooms_up_to_the_tenants_limit(usage):
    """Each new name reserves itself until `max_rooms` of the tenant's other names given are
    in use; a name in use passes without reserving again; another tenant, or names not given,
    count for nothing."""
    names = ["one", "two", "three"]
    assert usage.check_mint("acme", "one", "alice", names, 2, None, MINUTE) == MintCheck(
        None, 0, True
    )
    assert usage.check_mint("acme", "one", "bob", names, 2, None, MINUTE) == MintCheck(None)
    assert usage.check_mint("acme", "two", "alice", names, 2, None, MINUTE) == MintCheck(
        None, 1, True
    )
    assert usage.check_mint("acme", "three", "alice", names, 2, None, MINUTE) == MintCheck(
        "max_rooms", 2
    )
    assert usage.rooms_in_use("acme", names) == ["one", "two"]
    assert usage.check_mint("globex", "three", "alice", names, 1, None, MINUTE).reserved
    assert usage.check_mint("acme", "three", "alice", ["three"], 2, None, MINUTE).reserved
    assert usage.check_mint("acme", "four", "alice", names, None, None, MINUTE) == MintCheck(None)


def test_release_frees_a_reservation_and_reservations_run_out(usage):
    """A released reservation frees its place; an unreleased one frees it once `reserve_ms`
    passes on the storage's clock; a room seen live is not released."""
    names = ["one", "two", "three"]
    assert usage.check_mint("acme", "one", "alice", names, 1, None, MINUTE).reserved
    usage.release("acme", "one")
    assert usage.rooms_in_use("acme", names) == []
    assert usage.check_mint("acme", "two", "alice", names, 1, None, MINUTE).reserved
    assert usage.check_mint("acme", "three", "alice", names, 1, None, MINUTE).refused
    usage.clock.advance(MINUTE + 1)
    assert usage.rooms_in_use("acme", names) == []
    assert usage.check_mint("acme", "three", "alice", names, 1, None, MINUTE).reserved
    usage.record(started(usage, "r3", "three"), None)
    usage.release("acme", "three")
    assert usage.rooms_in_use("acme", names) == ["three"]
    usage.clock.advance(MINUTE + 1)
    assert usage.rooms_in_use("acme", names) == ["three"]


def test_a_room_life_beyond_max_rooms_is_over_rooms(usage):
    """A life first seen (a rejoin LiveKit started) while max_rooms of the tenant's other names
    are in use is "over_rooms", and is metered; its later events are metered as usual; a life
    within the limit, or with no limit, is "metered"."""
    names = ["x", "y"]
    assert usage.check_mint("acme", "y", "alice", names, 1, None, MINUTE).reserved
    assert usage.record(started(usage, "RX", "x"), None, 1, ["y"]) == "over_rooms"
    _, rooms, _ = usage.usage("acme", 0, usage.time_ms() + 1)
    assert [room.sid for room in rooms] == ["RX"]
    assert usage.record(started(usage, "RX", "x"), None, 1, ["y"]) == "metered"  # seen before
    usage.release("acme", "y")
    assert usage.record(started(usage, "RZ", "z"), None, 1, ["x", "y"]) == "over_rooms"
    assert usage.record(started(usage, "RW", "w"), None, 5, ["x", "y", "z"]) == "metered"
    assert usage.record(started(usage, "RV", "v"), None, None, ["x"]) == "metered"


def test_seats_are_counted_per_identity_and_limited(usage):
    """check_mint refuses a seat beyond max_participants unless the identity is seated; the
    limit given to `record` refuses a join beyond it (over_quota, not seated); a leave frees a
    seat."""
    usage.record(started(usage), None)
    assert usage.record(joined(usage, "p1", "alice"), 2) == "metered"
    assert usage.record(joined(usage, "p2", "alice"), 2) == "metered"  # a second session
    assert usage.record(joined(usage, "p3", "bob"), 2) == "metered"
    assert usage.check_mint("acme", "room", "carol", [], None, 2, MINUTE) == MintCheck(
        "max_participants", 2
    )
    assert usage.check_mint("acme", "room", "bob", [], None, 2, MINUTE) == MintCheck(None)
    assert usage.record(joined(usage, "p4", "carol"), 2) == "over_quota"
    assert usage.record(joined(usage, "p4", "carol"), 2) == "metered"  # refused once
    usage.record(joined(usage, "p3", "bob", kind="participant_left"), 2)
    assert usage.check_mint("acme", "room", "carol", [], None, 2, MINUTE) == MintCheck(None)
    assert usage.record(joined(usage, "p5", "carol"), 2) == "metered"


def test_seats_are_the_tenants_own(usage):
    """Seats count per (tenant, room life): a name another tenant's lives used starts from
    zero for the next tenant, and a mint keeps no limit (the next join is judged by the limit
    given to it alone)."""
    usage.record(started(usage, "r1", "room", "globex"), None)
    for number, who in enumerate(("alice", "bob")):
        usage.record(joined(usage, f"g{number}", who, "r1", "room", "globex"), None)
    assert usage.check_mint("acme", "room", "carol", [], None, 1, MINUTE) == MintCheck(None)
    assert usage.check_mint("globex", "room", "carol", [], None, 2, MINUTE).refused
    usage.record(started(usage, "r2", "room", "acme"), None)
    assert usage.record(joined(usage, "a1", "carol", "r2", "room", "acme"), 1) == "metered"
    assert usage.record(joined(usage, "a2", "dave", "r2", "room", "acme"), 1) == "over_quota"
    assert usage.record(joined(usage, "a3", "erin", "r2", "room", "acme"), None) == "metered"


def test_live_lives_list_the_open_sessions_of_unfinished_lives(usage):
    """Lives not finished, with the sessions still open; a finished life and a left session are
    not listed (also when its join is told after its departure), nor is a reservation (no life
    yet)."""
    usage.check_mint("acme", "four", "alice", [], None, 5, MINUTE)
    usage.record(started(usage, "r1", "one"), None)
    usage.record(joined(usage, "p1", "alice", "r1", "one"), 5)
    usage.record(joined(usage, "p2", "bob", "r1", "one"), 5)
    usage.record(joined(usage, "p2", "bob", "r1", "one", kind="participant_left"), 5)
    usage.record(joined(usage, "p3", "carol", "r1", "one", kind="participant_left"), 5)
    usage.record(joined(usage, "p3", "carol", "r1", "one"), 5)  # its join told late
    usage.record(started(usage, "r2", "two", "globex"), None)
    usage.record(started(usage, "r3", "three"), None)
    end = usage.time_ms()
    usage.record(EventFacts("room_finished", "acme", "three", "r3", end, end), None)
    lives = sorted(usage.live_lives(), key=lambda life: life.sid)
    assert [(life.sid, life.tenant, life.name) for life in lives] == [
        ("r1", "acme", "one"),
        ("r2", "globex", "two"),
    ]
    assert [(s.sid, s.identity, s.left) for s in lives[0].sessions] == [("p1", "alice", None)]
    assert lives[1].sessions == ()
    assert all(isinstance(life, LiveLife) for life in lives)


def lost(usage, room="r1", name="room", tenant="acme"):
    """The reconciliation's inferred end of a life (ROOM_LOST), at the storage's now."""
    now = usage.time_ms()
    return EventFacts(ROOM_LOST, tenant, name, room, now, now)


def test_a_lost_life_is_reopened_by_a_later_join_without_the_gap(usage):
    """A life the reconciliation ended (ROOM_LOST) that a join later than its end shows alive
    (LiveKit re-hosted the room) is live again: its sessions before the end ended then, the
    join is metered and seated under the quota (the next beyond it refused), the name is in
    use, and its start moves on by the gap so that its room-seconds leave the dead time out."""
    begin = started(usage)
    usage.record(begin, None)
    before = [joined(usage, "p1", "alice"), joined(usage, "p2", "bob")]
    for join in before:
        assert usage.record(join, 2) == "metered"
    usage.clock.advance(MINUTE)
    end = lost(usage)
    assert usage.record(end, None) == "metered"
    assert usage.live_lives() == []
    assert usage.rooms_in_use("acme", ["room"]) == []
    usage.clock.advance(10 * MINUTE)
    again = joined(usage, "p3", "carol")
    assert usage.record(again, 2) == "metered"
    assert usage.rooms_in_use("acme", ["room"]) == ["room"]
    gap = again.at - end.at  # ten minutes, on the storage's clock
    (life,) = usage.live_lives()
    assert (life.sid, life.started) == ("r1", begin.room_started + gap)
    assert [session.sid for session in life.sessions] == ["p3"]
    assert usage.check_mint("acme", "room", "erin", [], None, 1, MINUTE).refused
    assert usage.record(joined(usage, "p4", "dave"), 2) == "metered"
    assert usage.record(joined(usage, "p5", "erin"), 2) == "over_quota"
    assert usage.check_mint("acme", "room", "erin", [], None, 2, MINUTE) == MintCheck(
        "max_participants", 2
    )
    usage.clock.advance(MINUTE)
    now, rooms, sessions = usage.usage("acme", 0, usage.time_ms() + 1)
    assert rooms == [RoomRecord("r1", "acme", "room", begin.room_started + gap, None)]
    assert now - rooms[0].started >= 2 * MINUTE  # a minute before the loss, one after
    assert now - rooms[0].started < 3 * MINUTE
    left = {session.sid: session.left for session in sessions}
    assert left == {"p1": end.at, "p2": end.at, "p3": None, "p4": None, "p5": None}
    assert usage.record(lost(usage), None) == "metered"  # lost again: ends again
    assert usage.live_lives() == []


def test_a_lost_life_is_reopened_by_a_later_room_started(usage):
    """room_started later than a lost life's end reopens it too (no session to seat)."""
    usage.record(started(usage), None)
    usage.record(lost(usage), None)
    usage.clock.advance(MINUTE)
    assert usage.record(started(usage), None) == "metered"
    assert [life.sid for life in usage.live_lives()] == ["r1"]


def test_a_life_finished_by_livekit_is_not_reopened(usage):
    """LiveKit's room_finished ends a life for good: a join later than it is metered but not
    seated and the life stays finished; so does a lost life whose room_finished came later."""
    usage.record(started(usage, "r1", "one"), None)
    end = usage.time_ms()
    usage.record(EventFacts("room_finished", "acme", "one", "r1", end, end), None)
    usage.record(started(usage, "r2", "two"), None)
    usage.record(lost(usage, "r2", "two"), None)
    usage.clock.advance(MINUTE)
    end = usage.time_ms()
    usage.record(EventFacts("room_finished", "acme", "two", "r2", end, end), None)
    usage.clock.advance(MINUTE)
    assert usage.record(joined(usage, "p1", "alice", "r1", "one"), 1) == "metered"
    assert usage.record(joined(usage, "p2", "bob", "r2", "two"), 1) == "metered"
    assert usage.record(started(usage, "r2", "two"), None) == "metered"
    assert usage.live_lives() == []
    assert usage.rooms_in_use("acme", ["one", "two"]) == []
    assert usage.check_mint("acme", "one", "carol", [], None, 1, MINUTE) == MintCheck(None)
    _, rooms, _ = usage.usage("acme", 0, usage.time_ms() + 1)
    assert all(room.finished is not None for room in rooms)


def test_a_join_no_later_than_the_lost_end_does_not_reopen(usage):
    """A join told late, from before the lost end or at it, leaves the lost life ended."""
    usage.record(started(usage), None)
    usage.clock.advance(MINUTE)
    end = lost(usage)
    usage.record(end, None)
    for at in (end.at - 1000, end.at):
        late = EventFacts(
            "participant_joined", "acme", "room", "r1", end.room_started, at, "p1", "alice", at
        )
        assert usage.record(late, 2) == "metered"
    assert usage.live_lives() == []
    assert usage.rooms_in_use("acme", ["room"]) == []
    _, rooms, _ = usage.usage("acme", 0, usage.time_ms() + 1)
    assert [room.finished for room in rooms] == [end.at]


def test_an_earlier_versions_sqlite_file_gets_the_lost_columns(tmp_path):
    """A file whose usage_rooms predates the lost lives (no `lost`, `lost_ms`) is given them
    when the store opens it: its lives are kept, and one of them is lost and reopened."""
    path = tmp_path / "earlier.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE usage_rooms (sid TEXT PRIMARY KEY, tenant TEXT NOT NULL, name TEXT "
            "NOT NULL, started_at INTEGER NOT NULL, finished_at INTEGER, seen_at INTEGER NOT "
            "NULL)"
        )
        db.execute("INSERT INTO usage_rooms VALUES ('r1', 'acme', 'room', 1000, NULL, 1000)")
    db.close()
    holds = open_holds(f"sqlite:///{path}", timeout=2.0)
    try:
        usage = open_usage(holds, 0)
        assert [life.sid for life in usage.live_lives()] == ["r1"]
        usage.record(lost(usage), None)
        usage.clock.advance(MINUTE)
        assert usage.record(joined(usage, "p1", "alice"), 1) == "metered"
        (life,) = usage.live_lives()
        assert life.started >= 1000 + MINUTE  # the minute lost is left out
    finally:
        holds.close()
