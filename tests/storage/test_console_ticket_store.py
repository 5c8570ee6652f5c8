"""The console ticket store's contract, on both backends: a ticket redeems once, only within its
time on the storage's clock, and only by its own id."""

from concurrent.futures import ThreadPoolExecutor

MINUTE = 60_000


def test_a_ticket_redeems_once(console_tickets):
    """The payload comes back on the first redemption and never again."""
    console_tickets.issue("t1", '{"tenant": "acme"}', MINUTE)
    assert console_tickets.redeem("t1") == '{"tenant": "acme"}'
    assert console_tickets.redeem("t1") is None


def test_an_unknown_ticket_redeems_nothing(console_tickets):
    """An id never issued, or another ticket's id, gets nothing; the issued one still redeems."""
    console_tickets.issue("t1", "payload", MINUTE)
    assert console_tickets.redeem("t2") is None
    assert console_tickets.redeem("") is None
    assert console_tickets.redeem("t1") == "payload"


def test_a_ticket_past_its_time_on_the_storage_clock_is_refused(console_tickets):
    """Within its time it redeems; one ms past it (the storage's clock moved) it does not."""
    console_tickets.issue("early", "a", MINUTE)
    console_tickets.issue("late", "b", MINUTE)
    console_tickets.clock.advance(MINUTE - 1_000)
    assert console_tickets.redeem("early") == "a"
    console_tickets.clock.advance(1_000)
    assert console_tickets.redeem("late") is None


def test_two_redemptions_at_once_get_it_once(console_tickets):
    """Of many redemptions of one ticket racing, exactly one gets the payload."""
    console_tickets.issue("raced", "once", MINUTE)
    with ThreadPoolExecutor(8) as pool:
        found = list(pool.map(lambda _: console_tickets.redeem("raced"), range(16)))
    assert found.count("once") == 1
    assert found.count(None) == 15


def test_a_payload_keeps_every_character(console_tickets):
    """A payload with `|`, quotes, newlines and non-ASCII comes back exactly."""
    payload = '{"tenant": "a|b", "scopes": ["x"]}\n\u00e9\u4e2d'
    console_tickets.issue("t", payload, MINUTE)
    assert console_tickets.redeem("t") == payload
