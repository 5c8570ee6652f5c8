"""Prometheus metrics (`prometheus_client`) and the `/metrics` blueprint, on when METRICS_ENABLED.

Under gunicorn every worker writes its samples to files in `PROMETHEUS_MULTIPROC_DIR`, which
gunicorn.conf.py sets up (and cleans for dead workers), and `/metrics` adds them up, so one
scrape shows the whole service whichever worker answers it. Labels are bounded: route, outcome
code, mode, LiveKit method; never a tenant id, room name or identity (unbounded cardinality).
"""

import hmac
import logging
from functools import cache

from flask import Blueprint, Response, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from werkzeug.exceptions import NotFound

from ..context import service_state
from ..errors import Unauthorized

#: Its route is registered from the route table (routes.py).
bp = Blueprint("metrics", __name__)
log = logging.getLogger(__name__)

#: Request and LiveKit latency buckets, seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Instruments:
    """The service's metrics; made once per process (prometheus_client keeps them globally)."""

    def __init__(self):
        """Declare every metric."""
        self.children: dict = {}  # (metric, label values) -> its sample, see `child`
        self.requests = Counter(
            "tokensvc_requests", "HTTP requests by route and outcome code.", ["route", "code"]
        )
        self.request_seconds = Histogram(
            "tokensvc_request_duration_seconds",
            "Time to answer a request, by route.",
            ["route"],
            buckets=BUCKETS,
        )
        self.tokens = Counter(
            "tokensvc_tokens_issued", "Participant tokens issued, by mode.", ["mode"]
        )
        self.rooms_created = Counter("tokensvc_rooms_created", "Rooms the service created.")
        self.livekit_calls = Counter(
            "tokensvc_livekit_calls",
            "LiveKit RoomService calls by method and outcome.",
            ["method", "outcome"],
        )
        self.livekit_seconds = Histogram(
            "tokensvc_livekit_call_duration_seconds",
            "Time of one LiveKit call, by method.",
            ["method"],
            buckets=BUCKETS,
        )
        self.storage_calls = Counter(
            "tokensvc_storage_calls",
            "Calls to the ownership record's storage by operation and outcome.",
            ["operation", "outcome"],
        )
        self.storage_seconds = Histogram(
            "tokensvc_storage_call_duration_seconds",
            "Time of one storage call, by operation.",
            ["operation"],
            buckets=BUCKETS,
        )
        self.jwks_fetches = Counter(
            "tokensvc_jwks_fetches", "JWKS fetches by outcome.", ["outcome"]
        )
        self.livekit_events = Counter(
            "tokensvc_livekit_events",
            "LiveKit webhook events by type and what they did.",
            ["type", "outcome"],
        )
        self.usage_events = Counter(
            "tokensvc_usage_events",
            "LiveKit events handed to metering, by type and outcome "
            "(metered, over_quota, ignored).",
            ["type", "outcome"],
        )
        self.quota_refusals = Counter(
            "tokensvc_quota_refusals",
            "Tokens refused because a quota was reached, by quota.",
            ["quota"],
        )
        self.quota_removals = Counter(
            "tokensvc_quota_removals",
            "Participants removed at their join for a room's participants quota.",
        )
        self.storage_losses = Counter(
            "tokensvc_storage_losses", "Times the storage was found to have lost its data."
        )
        self.clock_skew = Gauge(
            "tokensvc_clock_skew_seconds",
            "The storage's clock minus this instance's, as last measured.",
            multiprocess_mode="liveall",
        )

    def child(self, metric, *values):
        """The metric's sample for these label values, looked up once per process (the hot
        paths' labels come from small fixed sets: routes, codes, operations)."""
        key = (metric, values)
        found = self.children.get(key)
        if found is None:
            found = self.children[key] = metric.labels(*values)
        return found

    def request_done(self, route: str, code: str, seconds: float) -> None:
        """Record one answered request."""
        self.child(self.requests, route, code).inc()
        self.child(self.request_seconds, route).observe(seconds)

    def token_issued(self, tenant: str | None, room_created: bool) -> None:
        """Record one issued token (and the room it created, if any)."""
        self.child(self.tokens, "anonymous" if tenant is None else "tenant").inc()
        if room_created:
            self.rooms_created.inc()

    def livekit_call(self, method: str, outcome: str, seconds: float) -> None:
        """Record one LiveKit call."""
        self.child(self.livekit_calls, method, outcome).inc()
        self.child(self.livekit_seconds, method).observe(seconds)

    def storage_call(self, operation: str, outcome: str, seconds: float) -> None:
        """Record one storage call."""
        self.child(self.storage_calls, operation, outcome).inc()
        self.child(self.storage_seconds, operation).observe(seconds)

    def livekit_event(self, kind: str, outcome: str) -> None:
        """Record one LiveKit webhook event and what it did."""
        self.livekit_events.labels(kind, outcome).inc()

    def usage_event(self, kind: str, outcome: str) -> None:
        """Record one LiveKit event handed to metering and what it did."""
        self.usage_events.labels(kind, outcome).inc()

    def quota_refused(self, quota: str) -> None:
        """Record one token refused for a quota."""
        self.quota_refusals.labels(quota).inc()

    def quota_removed(self) -> None:
        """Record one participant removed at its join for its room's participants quota."""
        self.quota_removals.inc()

    def storage_lost(self) -> None:
        """Record one detected loss of the storage's data."""
        self.storage_losses.inc()

    def clock_skewed(self, seconds: float) -> None:
        """Record the measured skew against the storage's clock."""
        self.clock_skew.set(seconds)

    def jwks_fetch(self, outcome: str) -> None:
        """Record one JWKS fetch."""
        self.jwks_fetches.labels(outcome).inc()


@cache
def instruments() -> Instruments:
    """This process's metrics, made on first use."""
    return Instruments()


def metrics():
    """The Prometheus text exposition of every worker's metrics."""
    state = service_state()
    if state.metrics is None:  # METRICS_ENABLED is off: no such route
        raise NotFound()
    settings = state.settings
    expected = settings.metrics_bearer_token
    if expected is not None:
        sent = request.headers.get("Authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {expected}".encode()):
            raise Unauthorized("a valid metrics bearer token is required")
    registry = REGISTRY
    # prometheus_client's own variable: set, every worker writes its samples to files there.
    if settings.prometheus_multiproc_dir:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    text = generate_latest(registry)
    if state.tenant_webhooks is not None:
        webhooks = CollectorRegistry()
        webhooks.register(WebhookCollector(state.tenant_webhooks))
        text += generate_latest(webhooks)
    if state.reconcile_store is not None:
        repairs = CollectorRegistry()
        # Read unobserved: a scrape is not one of the service's storage calls.
        repairs.register(RepairCollector(state.reconcile_store.store))
        text += generate_latest(repairs)
    return Response(text, content_type=CONTENT_TYPE_LATEST)


class WebhookCollector:
    """Tenants' webhook deliveries, read from the storage at each scrape (the workers that
    count them are other processes, on other hosts): attempts by outcome, the deliveries
    pending and the age of the oldest (the store is the queue). No tenant label."""

    def __init__(self, webhooks):
        """Read `webhooks`' store."""
        self.webhooks = webhooks

    def collect(self):
        """The metric families; none when the storage does not answer (logged)."""
        try:
            stats = self.webhooks.stats()
        except Exception as exc:
            log.warning("metrics: tenants' webhook figures unavailable (%s)", type(exc).__name__)
            return
        outcomes = CounterMetricFamily(
            "tokensvc_webhook_deliveries",
            "Webhook delivery attempts by outcome: delivered, retried (failed, to be tried "
            "again), failed (for good).",
            labels=["outcome"],
        )
        for outcome in ("delivered", "retried", "failed"):
            outcomes.add_metric([outcome], stats.outcomes.get(outcome, 0))
        yield outcomes
        yield GaugeMetricFamily(
            "tokensvc_webhook_deliveries_pending",
            "Webhook deliveries not yet delivered or failed.",
            stats.pending,
        )
        oldest = 0.0 if stats.oldest_pending is None else (stats.now - stats.oldest_pending) / 1000
        yield GaugeMetricFamily(
            "tokensvc_webhook_oldest_pending_seconds",
            "Age of the oldest pending webhook delivery.",
            max(0.0, oldest),
        )


class RepairCollector:
    """The reconciliation's repairs by kind, read from the storage at each scrape (the one
    sweeper that counts them runs in a worker, on any host)."""

    def __init__(self, store):
        """Read `store` (the reconciliation store)."""
        self.store = store

    def collect(self):
        """The counter family; none when the storage does not answer (logged)."""
        try:
            counts = self.store.counts()
        except Exception as exc:
            log.warning("metrics: reconciliation figures unavailable (%s)", type(exc).__name__)
            return
        repairs = CounterMetricFamily(
            "tokensvc_reconcile_repairs",
            "Repairs the reconciliation with LiveKit made, by kind (session_closed, "
            "session_opened, life_ended, grace_started, foreign_removed, removed_removed, "
            "quota_removed, name_rebuilt).",
            labels=["kind"],
        )
        for kind, n in sorted(counts.items()):
            repairs.add_metric([kind], n)
        yield repairs
