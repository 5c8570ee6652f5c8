"""The reconciliation store's contract, on both backends: one sweeper's lease at a time, watches
that run out on the storage's clock, repairs counted."""

LEASE = "reconcile"
SECOND = 1000


def test_one_owner_holds_the_lease_until_it_runs_out(reconcile):
    """The first owner takes the lease and renews it; another is refused while it runs and takes
    it once it ran out on the storage's clock."""
    assert reconcile.lease(LEASE, "one", 30 * SECOND)
    assert not reconcile.lease(LEASE, "two", 30 * SECOND)
    assert reconcile.lease(LEASE, "one", 30 * SECOND)  # renewed
    reconcile.clock.advance(29 * SECOND)
    assert not reconcile.lease(LEASE, "two", 30 * SECOND)
    reconcile.clock.advance(2 * SECOND)
    assert reconcile.lease(LEASE, "two", 30 * SECOND)
    assert not reconcile.lease(LEASE, "one", 30 * SECOND)


def test_a_released_lease_goes_to_the_next_owner_at_once(reconcile):
    """Releasing hands the lease on; another owner's release changes nothing."""
    assert reconcile.lease(LEASE, "one", 30 * SECOND)
    reconcile.release(LEASE, "two")
    assert not reconcile.lease(LEASE, "two", 30 * SECOND)
    reconcile.release(LEASE, "one")
    assert reconcile.lease(LEASE, "two", 30 * SECOND)
    assert reconcile.lease("other", "one", 30 * SECOND)  # leases are per name


def test_watches_run_out_on_the_storage_clock(reconcile):
    """A watched name is listed until its deadline; a later deadline is kept, an earlier one
    does not shorten it."""
    assert reconcile.watched() == []
    reconcile.watch("b-room", 10 * SECOND)
    reconcile.watch("a-room", 60 * SECOND)
    reconcile.watch("a-room", 5 * SECOND)  # does not shorten
    assert reconcile.watched() == ["a-room", "b-room"]
    reconcile.clock.advance(11 * SECOND)
    assert reconcile.watched() == ["a-room"]
    reconcile.watch("b-room", 10 * SECOND)
    assert reconcile.watched() == ["a-room", "b-room"]
    reconcile.clock.advance(50 * SECOND)
    assert reconcile.watched() == []


def test_repairs_are_counted_by_kind(reconcile):
    """Counts add up per kind and are read back by any instance."""
    assert reconcile.counts() == {}
    reconcile.count("session_closed", 2)
    reconcile.count("session_closed")
    reconcile.count("foreign_removed")
    assert reconcile.counts() == {"session_closed": 3, "foreign_removed": 1}
