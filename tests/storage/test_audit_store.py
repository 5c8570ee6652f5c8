"""The audit store's contract, on both backends: entries kept with the storage's time, listed
newest first per tenant or for all, and dropped past the retention (the storage's clock)."""

from tokensvc.storage import AuditEntry

DAY_MS = 24 * 3600 * 1000


def entry(number, tenant="acme", actor="tenant", action="rooms.end", outcome="ok"):
    """An entry to add (its time is set by the store)."""
    return AuditEntry(
        f"au_{number}", 0, tenant, actor, "user-7", "", action, f"room-{number}", outcome, "{}"
    )


def test_entries_are_kept_with_the_storages_time_newest_first(audit):
    """Three entries of one tenant and one of another: each tenant sees its own newest first,
    the operator all four; the time is the storage's now."""
    now = audit.time_ms()
    kept = [audit.add(entry(n)) for n in range(3)]
    audit.add(entry(9, tenant="globex", outcome="room_not_found"))
    assert all(now <= item.at <= audit.time_ms() for item in kept)
    assert [item.id for item in audit.entries("acme", 10)] == ["au_2", "au_1", "au_0"]
    assert audit.entries("acme", 10)[0] == kept[2]
    assert [item.id for item in audit.entries("globex", 10)] == ["au_9"]
    assert audit.entries("globex", 10)[0].outcome == "room_not_found"
    assert [item.id for item in audit.entries(None, 2)] == ["au_9", "au_2"]
    assert len(audit.entries(None, 10)) == 4
    assert audit.entries("initech", 10) == []


def test_the_operator_and_the_tenant_are_told_apart(audit):
    """An operator's entry keeps its actor, subject and details as given."""
    audit.add(
        AuditEntry(
            "au_op",
            0,
            "acme",
            "operator",
            "admin",
            "",
            "tenants.suspend",
            "acme",
            "ok",
            '{"reason": "unpaid"}',
        )
    )
    (found,) = audit.entries("acme", 5)
    assert (found.actor, found.action, found.detail) == (
        "operator",
        "tenants.suspend",
        '{"reason": "unpaid"}',
    )


def test_entries_past_the_retention_are_gone(audit):
    """An entry older than the retention (a day here) is no longer listed, on the storage's
    clock; a newer one is."""
    audit.add(entry(1))
    audit.clock.advance(DAY_MS - 60_000)
    audit.add(entry(2))
    assert [item.id for item in audit.entries("acme", 10)] == ["au_2", "au_1"]
    audit.clock.advance(120_000)
    assert [item.id for item in audit.entries("acme", 10)] == ["au_2"]
    audit.add(entry(3))
    assert [item.id for item in audit.entries(None, 10)] == ["au_3", "au_2"]
