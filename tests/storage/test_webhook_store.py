"""The webhook store's contract, on both backends: a tenant's endpoints and their limit, secret
rotation, deliveries and their attempts (fair claims, leases, back-off, deadline, concurrency),
the circuit breaker (probes, disabling, enabling), leases that run out put back once, and the
outcome counters; time moved with the storage clock."""

from dataclasses import replace

import pytest

from tokensvc.storage import Endpoint, NewDelivery, Outcome

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def claim(webhooks, limit=100, concurrency=5, skip=()):
    """The ids claimed now (a lease of a minute)."""
    return [c.id for c in webhooks.claim(limit, MINUTE, concurrency, skip)]


def failed(delivery_id, endpoint_id="ep1", delay_ms=1000, error="answered 500"):
    """A failed attempt's outcome."""
    return Outcome(delivery_id, endpoint_id, "failed", 500, error, delay_ms)


def delivered(delivery_id, endpoint_id="ep1"):
    """A delivered attempt's outcome."""
    return Outcome(delivery_id, endpoint_id, "delivered", 200)


def finish(webhooks, *outcomes, disable_after=5 * DAY, concurrency=5):
    """Record outcomes; [(id, status, disabled)]."""
    return [
        (f.id, f.status, f.disabled)
        for f in webhooks.finish(list(outcomes), concurrency, disable_after, "failing")
    ]


def endpoint(endpoint_id, tenant="acme", secret="whsec_one"):
    """An endpoint to add (its created_at is set by the store)."""
    return Endpoint(
        endpoint_id, tenant, f"https://{tenant}.example/hook", ("room_started",), "", 0, secret
    )


def delivery(delivery_id, endpoint_id="ep1", tenant="acme"):
    """A delivery to add, with a body naming it."""
    return NewDelivery(
        delivery_id,
        tenant,
        endpoint_id,
        "ev-" + delivery_id,
        "room_started",
        f'{{"id": "{delivery_id}"}}',
    )


def test_endpoints_are_per_tenant_and_limited(webhooks):
    """A tenant adds endpoints up to `most`, sees them oldest first, and only its own."""
    first = webhooks.add_endpoint(endpoint("ep1"), 2)
    assert first == replace(endpoint("ep1"), created_at=first.created_at)
    assert first.created_at > 0
    webhooks.clock.advance(1000)
    second = webhooks.add_endpoint(endpoint("ep2"), 2)
    assert second.created_at > first.created_at
    assert webhooks.add_endpoint(endpoint("ep3"), 2) is None
    assert webhooks.add_endpoint(endpoint("ep3", tenant="globex"), 2) is not None
    assert [e.id for e in webhooks.endpoints("acme")] == ["ep1", "ep2"]
    assert webhooks.endpoints("acme")[0] == first
    assert [e.id for e in webhooks.endpoints("globex")] == ["ep3"]
    assert webhooks.endpoints("initech") == []


def test_an_endpoint_is_deleted_only_by_its_tenant(webhooks):
    """Another tenant's id is the same as a missing one; a deleted endpoint frees its slot."""
    webhooks.add_endpoint(endpoint("ep1"), 1)
    assert not webhooks.delete_endpoint("globex", "ep1")
    assert [e.id for e in webhooks.endpoints("acme")] == ["ep1"]
    assert webhooks.delete_endpoint("acme", "ep1")
    assert not webhooks.delete_endpoint("acme", "ep1")
    assert webhooks.endpoints("acme") == []
    assert webhooks.add_endpoint(endpoint("ep2"), 1) is not None


def test_a_rotated_secret_signs_beside_the_new_one_for_the_overlap(webhooks):
    """After a rotation both secrets sign until `keep_ms` passes on the storage's clock."""
    webhooks.add_endpoint(endpoint("ep1", secret="old"), 5)
    assert not webhooks.rotate("globex", "ep1", "new", MINUTE)
    assert webhooks.rotate("acme", "ep1", "new", MINUTE)
    (rotated,) = webhooks.endpoints("acme")
    assert (rotated.secret, rotated.previous_secret) == ("new", "old")
    assert rotated.previous_until > webhooks.time_ms()
    webhooks.add_deliveries([delivery("d1")], HOUR, 5)
    (first,) = webhooks.claim(10, MINUTE, 5)
    assert (first.secret, first.previous_secret) == ("new", "old")
    finish(webhooks, delivered("d1"))
    webhooks.clock.advance(MINUTE + 1)
    webhooks.add_deliveries([delivery("d2")], HOUR, 5)
    (second,) = webhooks.claim(10, MINUTE, 5)
    assert (second.id, second.secret, second.previous_secret) == ("d2", "new", "")


def test_deliveries_are_listed_newest_first_per_tenant_with_filters(webhooks):
    """A tenant sees its own deliveries, newest first, filtered by endpoint and status."""
    webhooks.add_endpoint(endpoint("ep1"), 5)
    webhooks.add_endpoint(endpoint("ep2"), 5)
    webhooks.add_deliveries([delivery("d1")], HOUR, 5)
    webhooks.clock.advance(1000)
    webhooks.add_deliveries([delivery("d2", "ep2"), delivery("g1", "epg", "globex")], HOUR, 5)
    listed = webhooks.deliveries("acme", None, None, 10)
    assert [d.id for d in listed] == ["d2", "d1"]
    assert [(d.status, d.attempts, d.event_id) for d in listed] == [
        ("pending", 0, "ev-d2"),
        ("pending", 0, "ev-d1"),
    ]
    assert listed[0].next_attempt_at == listed[0].created_at
    assert [d.id for d in webhooks.deliveries("acme", "ep2", None, 10)] == ["d2"]
    assert [d.id for d in webhooks.deliveries("acme", None, None, 1)] == ["d2"]
    assert webhooks.deliveries("acme", None, "delivered", 10) == []
    assert webhooks.delivery("acme", "d1") == listed[1]
    assert webhooks.delivery("acme", "g1") is None
    assert webhooks.delivery("globex", "g1").tenant == "globex"
    webhooks.add_deliveries([], HOUR, 5)  # nothing to add: nothing written
    assert len(webhooks.deliveries("acme", None, None, 10)) == 2


def test_a_claim_leases_a_delivery_retried_after_its_delay_and_delivered(webhooks):
    """A claim leases a due delivery (claimed once, not again while leased); a failed attempt
    makes it pending again, due after its delay (not claimed before); a delivered one is done."""
    webhooks.add_endpoint(endpoint("ep1"), 5)
    webhooks.add_deliveries([delivery("d1")], HOUR, 5)
    (first,) = webhooks.claim(10, MINUTE, 5)
    assert (first.id, first.tenant, first.endpoint_id, first.url, first.secret) == (
        "d1",
        "acme",
        "ep1",
        "https://acme.example/hook",
        "whsec_one",
    )
    assert (first.body, first.attempts, first.endpoint_failures) == ('{"id": "d1"}', 0, 0)
    assert claim(webhooks) == []  # leased
    assert finish(webhooks, failed("d1", delay_ms=10_000)) == [("d1", "pending", False)]
    found = webhooks.delivery("acme", "d1")
    assert (found.status, found.attempts, found.last_status_code, found.last_error) == (
        "pending",
        1,
        500,
        "answered 500",
    )
    assert found.next_attempt_at == webhooks.time_ms() + 10_000 or found.next_attempt_at > 0
    assert claim(webhooks) == []  # not due yet (and its endpoint is probed no sooner)
    webhooks.clock.advance(10_001)
    (again,) = webhooks.claim(10, MINUTE, 5)
    assert (again.id, again.attempts, again.endpoint_failures) == ("d1", 1, 1)
    assert finish(webhooks, delivered("d1")) == [("d1", "delivered", False)]
    assert claim(webhooks) == []
    done = webhooks.delivery("acme", "d1")
    assert (done.status, done.last_error, done.next_attempt_at) == ("delivered", None, None)
    stats = webhooks.stats()
    assert (stats.outcomes, stats.pending, stats.oldest_pending) == (
        {"retried": 1, "delivered": 1},
        0,
        None,
    )


def test_a_delivery_fails_past_its_period_and_a_retry_makes_it_pending(webhooks):
    """A failed attempt whose next try would fall past the period fails the delivery; the
    tenant's retry (not another's) makes it pending and due for another period."""
    webhooks.add_endpoint(endpoint("ep1"), 5)
    webhooks.add_deliveries([delivery("d1")], MINUTE, 5)
    assert claim(webhooks) == ["d1"]
    webhooks.clock.advance(MINUTE)
    assert finish(webhooks, failed("d1", error="timed out")) == [("d1", "failed", False)]
    assert webhooks.stats().outcomes == {"failed": 1}
    assert not webhooks.retry("globex", "d1", HOUR, 5)
    assert webhooks.delivery("acme", "d1").status == "failed"
    assert webhooks.retry("acme", "d1", HOUR, 5)
    assert webhooks.delivery("acme", "d1").status == "pending"
    webhooks.clock.advance(1001)  # past the endpoint's probe time
    assert claim(webhooks) == ["d1"]
    assert finish(webhooks, failed("d1"))[0][1] == "pending"


def test_an_endpoint_has_at_most_its_concurrency_of_leases(webhooks):
    """With `concurrency` attempts leased, the endpoint's other deliveries wait until one ends
    or a lease runs out and is put back (once)."""
    webhooks.add_endpoint(endpoint("ep1"), 5)
    webhooks.add_deliveries([delivery("d1"), delivery("d2"), delivery("d3")], HOUR, 2)
    assert claim(webhooks, concurrency=2) == ["d1", "d2"] or sorted(
        claim(webhooks, concurrency=2)
    ) == ["d1", "d2"]
    assert claim(webhooks, concurrency=2) == []
    assert finish(webhooks, delivered("d1"), concurrency=2) == [("d1", "delivered", False)]
    assert claim(webhooks, concurrency=2) == ["d3"]
    webhooks.add_deliveries([delivery("d4")], HOUR, 2)
    assert claim(webhooks, concurrency=2) == []
    assert webhooks.reap(10, 2) == 0
    webhooks.clock.advance(MINUTE + 1)
    assert webhooks.reap(10, 2) == 2  # d2 and d3: put back once, no attempt counted
    assert webhooks.reap(10, 2) == 0
    assert sorted(claim(webhooks, concurrency=2)) == ["d2", "d3"]
    assert webhooks.delivery("acme", "d2").attempts == 0


def test_claims_take_turns_across_tenants_and_their_endpoints(webhooks):
    """However many deliveries one tenant has queued, each tenant with work due gets one in
    turn (the one served longest ago first), each of a tenant's endpoints one in turn, each
    endpoint's oldest first; a tenant skipped keeps its deliveries."""
    for endpoint_id, tenant in (("n1", "noisy"), ("n2", "noisy"), ("b1", "bravo")):
        webhooks.add_endpoint(endpoint(endpoint_id, tenant=tenant), 5)
    noisy = [delivery(f"n{i}", f"n{1 + i % 2}", "noisy") for i in range(40)]
    webhooks.add_deliveries(noisy, HOUR, 100)
    webhooks.clock.advance(1)
    webhooks.add_deliveries([delivery("b-old", "b1", "bravo")], HOUR, 100)
    webhooks.clock.advance(1)
    webhooks.add_deliveries([delivery("b-new", "b1", "bravo")], HOUR, 100)
    first = webhooks.claim(4, MINUTE, 100)
    assert {c.tenant for c in first} == {"noisy", "bravo"}
    assert [c.id for c in first if c.tenant == "bravo"] == ["b-old", "b-new"]
    assert sorted(c.endpoint_id for c in first if c.tenant == "noisy") == ["n1", "n2"]
    webhooks.add_deliveries([delivery("b-3", "b1", "bravo")], HOUR, 100)
    # One turn each: bravo's new delivery goes out in the next two claimed, whatever noisy has
    # queued (which of the two comes first depends on the clock's last millisecond).
    turn = webhooks.claim(2, MINUTE, 100)
    assert sorted(c.tenant for c in turn) == ["bravo", "noisy"]
    assert [c.id for c in turn if c.tenant == "bravo"] == ["b-3"]
    assert {c.tenant for c in webhooks.claim(100, MINUTE, 100, ["noisy"])} == set()
    rest = claim(webhooks, limit=100, concurrency=100)
    assert len(rest) == 37 and all(i.startswith("n") for i in rest)


def test_a_failing_endpoint_is_probed_then_disabled_and_enabled_again(webhooks):
    """An endpoint failing gets one attempt at a time, at its probe time; failing for
    `disable_after` it is disabled (with the reason, its deliveries kept and unclaimed);
    enabled, its failures are forgotten and what waited is due now, oldest first."""
    webhooks.add_endpoint(endpoint("ep1"), 5)
    webhooks.add_endpoint(endpoint("ep2"), 5)
    webhooks.add_deliveries([delivery(f"d{i}") for i in range(5)], DAY, 5)
    assert len(claim(webhooks)) == 5
    outcomes = [failed(f"d{i}", delay_ms=MINUTE) for i in range(5)]
    assert [status for _, status, _ in finish(webhooks, *outcomes, disable_after=HOUR)] == [
        "pending"
    ] * 5
    (failing, _) = webhooks.endpoints("acme")
    assert failing.failing_since is not None and failing.enabled
    assert claim(webhooks) == []
    webhooks.clock.advance(MINUTE + 1)
    probe = claim(webhooks)
    assert len(probe) == 1  # one probe, not one per delivery
    webhooks.clock.advance(HOUR)
    ((_, status, disabled),) = finish(
        webhooks, failed(probe[0], delay_ms=MINUTE), disable_after=HOUR
    )
    assert (status, disabled) == ("pending", True)
    (off, other) = webhooks.endpoints("acme")
    assert not off.enabled and other.enabled
    assert off.disabled_reason == "failing (last: answered 500)"
    assert off.disabled_at is not None
    webhooks.clock.advance(2 * DAY)  # past the deliveries' own period: kept all the same
    assert claim(webhooks) == []
    assert {d.status for d in webhooks.deliveries("acme", "ep1", None, 10)} == {"pending"}
    assert not webhooks.set_enabled("globex", "ep1", True, "", HOUR, 5)
    assert webhooks.set_enabled("acme", "ep1", True, "", HOUR, 5)
    (on, _) = webhooks.endpoints("acme")
    assert on.enabled and on.failing_since is None and on.disabled_reason == ""
    assert claim(webhooks) == [f"d{i}" for i in range(5)]


def test_an_endpoint_disabled_by_its_tenant_gets_nothing_till_enabled(webhooks):
    """Disabled by hand, an endpoint's deliveries wait; enabled, they are claimed."""
    webhooks.add_endpoint(endpoint("ep1"), 5)
    assert webhooks.set_enabled("acme", "ep1", False, "by hand", HOUR, 5)
    webhooks.add_deliveries([delivery("d1")], HOUR, 5)
    assert claim(webhooks) == []
    assert webhooks.endpoints("acme")[0].disabled_reason == "by hand"
    assert webhooks.set_enabled("acme", "ep1", True, "", HOUR, 5)
    assert claim(webhooks) == ["d1"]


def test_a_released_claim_waits_again_with_nothing_counted(webhooks):
    """A claim released (a paused tenant) is due again at once, no attempt counted."""
    webhooks.add_endpoint(endpoint("ep1"), 5)
    webhooks.add_deliveries([delivery("d1")], HOUR, 5)
    assert claim(webhooks) == ["d1"]
    assert finish(webhooks, Outcome("d1", "ep1", "released")) == [("d1", "pending", False)]
    assert webhooks.delivery("acme", "d1").attempts == 0
    assert claim(webhooks) == ["d1"]


def test_deleting_an_endpoint_fails_its_waiting_deliveries(webhooks):
    """Its endpoint deleted, a waiting delivery is failed; one under way ends failed too."""
    webhooks.add_endpoint(endpoint("ep1"), 5)
    webhooks.add_deliveries([delivery("d1"), delivery("d2")], HOUR, 1)
    assert claim(webhooks, concurrency=1) == ["d1"]
    assert webhooks.delete_endpoint("acme", "ep1")
    found = webhooks.delivery("acme", "d2")
    assert (found.status, found.last_error) == ("failed", "the endpoint was deleted")
    assert finish(webhooks, failed("d1")) == [("d1", "failed", False)]
    assert finish(webhooks, delivered("missing")) == [("missing", "gone", False)]
    assert webhooks.stats().outcomes == {"failed": 2}
    assert claim(webhooks) == []


def test_secrets_are_listed_and_replaced_only_if_unchanged(webhooks):
    """`secrets` lists every endpoint's; `replace_secrets` is a compare-and-set."""
    webhooks.add_endpoint(endpoint("ep1", secret="one"), 5)
    webhooks.add_endpoint(endpoint("ep2", tenant="globex", secret="two"), 5)
    assert webhooks.secrets() == [("ep1", "one", ""), ("ep2", "two", "")]
    assert not webhooks.replace_secrets("ep1", ("other", ""), ("x", ""))
    assert webhooks.replace_secrets("ep1", ("one", ""), ("uno", ""))
    assert webhooks.endpoints("acme")[0].secret == "uno"


def test_stats_count_the_pending_and_the_oldest(webhooks):
    """Pending deliveries are counted with the creation time of the oldest; `now` is the
    storage's clock."""
    assert webhooks.stats().pending == 0
    webhooks.add_endpoint(endpoint("ep1"), 5)
    webhooks.add_deliveries([delivery("d1")], HOUR, 5)
    oldest = webhooks.delivery("acme", "d1").created_at
    webhooks.clock.advance(1000)
    webhooks.add_deliveries([delivery("d2")], HOUR, 5)
    stats = webhooks.stats()
    assert (stats.pending, stats.oldest_pending, stats.outcomes) == (2, oldest, {})
    assert stats.now >= oldest + 1000


@pytest.mark.parametrize("most", [0, 1])
def test_the_endpoint_limit_counts_only_the_tenants_own(webhooks, most):
    """Another tenant's endpoints do not count against a tenant's limit."""
    webhooks.add_endpoint(endpoint("g1", tenant="globex"), 5)
    assert (webhooks.add_endpoint(endpoint("ep1"), most) is not None) == (most > 0)
