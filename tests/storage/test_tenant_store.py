"""The tenant store's contract, on both backends: no record until the operator sets one; limits
set and removed one by one; the status and its reason; the times on the storage's clock."""

import pytest

from tokensvc.storage import TenantRecord

MINUTE = 60_000


def test_a_tenant_has_no_record_until_one_is_set(tenant_store):
    """get: None; all: empty."""
    assert tenant_store.get("acme") is None
    assert tenant_store.all() == []


def test_limits_are_set_and_removed_one_by_one(tenant_store):
    """Each change sets the limits it names and leaves the others; None removes one; agents
    are a tuple of names; created_at stays, updated_at follows the storage's clock."""
    first = tenant_store.change("acme", {"max_rooms": 3, "agents": ("helper", "scribe")})
    assert (first.max_rooms, first.max_participants, first.agents) == (
        3,
        None,
        ("helper", "scribe"),
    )
    assert (first.status, first.reason) == ("active", "")
    assert first.created_at == first.updated_at > 0
    tenant_store.clock.advance(MINUTE)
    second = tenant_store.change("acme", {"max_participants": 0, "max_webhook_endpoints": 2})
    assert second == TenantRecord(
        "acme", 3, 0, 2, ("helper", "scribe"), "active", "", first.created_at, second.updated_at
    )
    assert second.updated_at >= first.updated_at + MINUTE
    third = tenant_store.change("acme", {"max_rooms": None, "agents": None})
    assert (third.max_rooms, third.agents, third.max_participants) == (None, None, 0)
    assert tenant_store.get("acme") == third
    empty = tenant_store.change("acme", {"agents": ()})
    assert empty.agents == ()


def test_suspension_and_resumption_keep_the_limits(tenant_store):
    """A status with its reason; resuming clears the reason; limits stay as they were."""
    tenant_store.change("acme", {"max_rooms": 1})
    suspended = tenant_store.change("acme", {}, "suspended", "unpaid invoice 42")
    assert suspended.suspended and suspended.reason == "unpaid invoice 42"
    assert suspended.max_rooms == 1
    resumed = tenant_store.change("acme", {}, "active")
    assert not resumed.suspended and resumed.reason == ""
    assert tenant_store.get("acme").max_rooms == 1


def test_records_are_listed_by_tenant_and_kept_apart(tenant_store):
    """Two tenants' records are listed in id order; one's change leaves the other's alone; ids
    are kept exactly (case, spaces, any character)."""
    tenant_store.change("globex", {"max_rooms": 5})
    tenant_store.change("Acme Ltd/ü", {}, "suspended", "abuse")
    assert [record.id for record in tenant_store.all()] == ["Acme Ltd/ü", "globex"]
    assert tenant_store.get("globex").status == "active"
    assert tenant_store.get("acme ltd/ü") is None


def test_an_unknown_limit_is_refused_and_writes_nothing(tenant_store):
    """A limit name outside TENANT_LIMITS: ValueError, no record made."""
    with pytest.raises(ValueError):
        tenant_store.store.change("acme", {"max_everything": 1})
    assert tenant_store.get("acme") is None
