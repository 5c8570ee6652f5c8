"""The webhook store's contract, on both backends: a tenant's endpoints and their limit, secret
rotation, deliveries and their attempts (leases, back-off, deadline, concurrency), the sweep of
overdue deliveries, and the outcome counters."""

from dataclasses import replace

import pytest

from tokensvc.storage import Endpoint, NewDelivery

MINUTE = 60_000
HOUR = 60 * MINUTE


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
    webhooks.add_deliveries([delivery("d1"), delivery("d2")], HOUR)
    assert webhooks.start_attempt("d1", MINUTE, 5, 0).secrets == ("new", "old")
    webhooks.clock.advance(MINUTE + 1)
    assert webhooks.start_attempt("d2", MINUTE, 5, 0).secrets == ("new",)


def test_deliveries_are_listed_newest_first_per_tenant_with_filters(webhooks):
    """A tenant sees its own deliveries, newest first, filtered by endpoint and status."""
    webhooks.add_endpoint(endpoint("ep1"), 5)
    webhooks.add_endpoint(endpoint("ep2"), 5)
    webhooks.add_deliveries([delivery("d1")], HOUR)
    webhooks.clock.advance(1000)
    webhooks.add_deliveries([delivery("d2", "ep2"), delivery("g1", "epg", "globex")], HOUR)
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
    webhooks.add_deliveries([], HOUR)  # nothing to add: nothing written
    assert len(webhooks.deliveries("acme", None, None, 10)) == 2


def test_an_attempt_is_leased_retried_after_its_delay_and_delivered(webhooks):
    """start_attempt leases the delivery (a second start finds it leased); a failed attempt
    makes it pending again after the delay (early before it); a delivered one is done."""
    webhooks.add_endpoint(endpoint("ep1"), 5)
    webhooks.add_deliveries([delivery("d1")], HOUR)
    attempt = webhooks.start_attempt("d1", MINUTE, 5, 0)
    assert (attempt.outcome, attempt.body, attempt.url, attempt.secrets, attempt.attempts) == (
        "go",
        '{"id": "d1"}',
        "https://acme.example/hook",
        ("whsec_one",),
        0,
    )
    leased = webhooks.start_attempt("d1", MINUTE, 5, 0)
    assert leased.outcome == "leased" and 0 < leased.wait_ms <= MINUTE
    status, due = webhooks.finish_attempt("d1", False, 500, "HTTP 500", 10_000)
    assert status == "pending" and due is not None
    found = webhooks.delivery("acme", "d1")
    assert (found.status, found.attempts, found.last_status_code, found.last_error) == (
        "pending",
        1,
        500,
        "HTTP 500",
    )
    assert found.next_attempt_at == due
    early = webhooks.start_attempt("d1", MINUTE, 5, 0)
    assert early.outcome == "early" and 0 < early.wait_ms <= 10_000
    assert webhooks.start_attempt("d1", MINUTE, 5, 10_000).outcome == "go"  # within the slack
    assert webhooks.finish_attempt("d1", True, 200, None, 10_000) == ("delivered", None)
    assert webhooks.start_attempt("d1", MINUTE, 5, 0).outcome == "done"
    assert webhooks.delivery("acme", "d1").status == "delivered"
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
    webhooks.add_deliveries([delivery("d1")], MINUTE)
    assert webhooks.start_attempt("d1", MINUTE, 5, 0).outcome == "go"
    webhooks.clock.advance(MINUTE)
    assert webhooks.finish_attempt("d1", False, None, "timed out", 1000) == ("failed", None)
    assert webhooks.stats().outcomes == {"failed": 1}
    assert not webhooks.retry("globex", "d1", HOUR)
    assert webhooks.delivery("acme", "d1").status == "failed"
    assert webhooks.retry("acme", "d1", HOUR)
    assert webhooks.delivery("acme", "d1").status == "pending"
    assert webhooks.start_attempt("d1", MINUTE, 5, 0).outcome == "go"
    assert webhooks.finish_attempt("d1", False, 503, "HTTP 503", 1000)[0] == "pending"


def test_an_endpoint_runs_at_most_its_concurrency_of_attempts(webhooks):
    """With `concurrency` attempts leased, another delivery to the endpoint is busy until one
    ends or its lease runs out."""
    webhooks.add_endpoint(endpoint("ep1"), 5)
    webhooks.add_deliveries([delivery("d1"), delivery("d2"), delivery("d3")], HOUR)
    assert webhooks.start_attempt("d1", MINUTE, 2, 0).outcome == "go"
    assert webhooks.start_attempt("d2", MINUTE, 2, 0).outcome == "go"
    assert webhooks.start_attempt("d3", MINUTE, 2, 0).outcome == "busy"
    webhooks.finish_attempt("d1", True, 200, None, 0)
    assert webhooks.start_attempt("d3", MINUTE, 2, 0).outcome == "go"
    webhooks.add_deliveries([delivery("d4")], HOUR)
    assert webhooks.start_attempt("d4", MINUTE, 2, 0).outcome == "busy"
    webhooks.clock.advance(MINUTE + 1)
    assert webhooks.start_attempt("d4", MINUTE, 2, 0).outcome == "go"


def test_a_delivery_of_a_deleted_endpoint_fails_and_a_missing_one_is_gone(webhooks):
    """Its endpoint deleted, a delivery's attempt is an orphan and the delivery failed."""
    webhooks.add_endpoint(endpoint("ep1"), 5)
    webhooks.add_deliveries([delivery("d1")], HOUR)
    webhooks.delete_endpoint("acme", "ep1")
    assert webhooks.start_attempt("d1", MINUTE, 5, 0).outcome == "orphan"
    found = webhooks.delivery("acme", "d1")
    assert (found.status, found.last_error) == ("failed", "the endpoint was deleted")
    assert webhooks.stats().outcomes == {"failed": 1}
    assert webhooks.start_attempt("missing", MINUTE, 5, 0).outcome == "gone"
    assert webhooks.finish_attempt("missing", True, 200, None, 0) == ("gone", None)


def test_overdue_lists_pending_deliveries_whose_wake_up_was_lost(webhooks):
    """A pending delivery due longer ago than the sweep's age is overdue (oldest first, at most
    `limit`); a delivered one never is."""
    webhooks.add_endpoint(endpoint("ep1"), 5)
    webhooks.add_deliveries([delivery("d1")], HOUR)
    webhooks.clock.advance(1000)
    webhooks.add_deliveries([delivery("d2"), delivery("d3")], HOUR)
    assert webhooks.overdue(MINUTE, 10) == []
    webhooks.clock.advance(MINUTE + 1)
    assert webhooks.overdue(MINUTE, 1) == ["d1"]
    assert sorted(webhooks.overdue(MINUTE, 10)) == ["d1", "d2", "d3"]
    assert webhooks.start_attempt("d1", MINUTE, 5, 0).outcome == "go"
    assert webhooks.finish_attempt("d1", True, 200, None, 0) == ("delivered", None)
    assert sorted(webhooks.overdue(MINUTE, 10)) == ["d2", "d3"]


def test_stats_count_the_pending_and_the_oldest(webhooks):
    """Pending deliveries are counted with the creation time of the oldest; `now` is the
    storage's clock."""
    assert webhooks.stats().pending == 0
    webhooks.add_endpoint(endpoint("ep1"), 5)
    webhooks.add_deliveries([delivery("d1")], HOUR)
    oldest = webhooks.delivery("acme", "d1").created_at
    webhooks.clock.advance(1000)
    webhooks.add_deliveries([delivery("d2")], HOUR)
    stats = webhooks.stats()
    assert (stats.pending, stats.oldest_pending, stats.outcomes) == (2, oldest, {})
    assert stats.now >= oldest + 1000


@pytest.mark.parametrize("most", [0, 1])
def test_the_endpoint_limit_counts_only_the_tenants_own(webhooks, most):
    """Another tenant's endpoints do not count against a tenant's limit."""
    webhooks.add_endpoint(endpoint("g1", tenant="globex"), 5)
    assert (webhooks.add_endpoint(endpoint("ep1"), most) is not None) == (most > 0)
