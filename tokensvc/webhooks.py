"""Tenants' own webhooks: the LiveKit events of a tenant's rooms, signed by the Standard
Webhooks scheme and delivered at least once by a worker process (no Flask).

- **Endpoints** (`subscribe`, `unsubscribe`, `rotate_secret`, ...) are kept per tenant in the
  storage (`storage/webhooks.py`); a URL passes the guard (`egress.py`) when subscribed and again
  at every attempt. A secret is `whsec_<base64 of 32 random bytes>`, shown only when made; after
  a rotation the old one signs too for `ROTATION_OVERLAP_MS`.
- **Fan-out** (`on_event`): `Ownership.on_event`, the one receiver of LiveKit's verified
  events, calls it after dropping duplicates and stale events, with the holder of the event's
  room and the holder's own name for it; it never hands on an event of another tenant's
  participant (that is its decision, not this module's). Each endpoint of that tenant that
  subscribed to the event's type gets one delivery: its body (`{"type", "timestamp", "data"}`)
  is fixed then, with the tenant's own room name and without the service's `tokensvc.`
  attributes. The deliveries are stored first, then the queue is told: the web process never
  sends HTTP to a tenant.
- **Delivery** (`attempt`), in the worker: lease the delivery (at most
  TENANT_WEBHOOK_ENDPOINT_CONCURRENCY attempts per endpoint at once, so one slow endpoint holds
  only that many worker threads), sign (`webhook-id` is the delivery's id, the same on every
  attempt), POST within TENANT_WEBHOOK_TIMEOUT; a 2xx is delivered; anything else is tried again
  after an exponential back-off with jitter (TENANT_WEBHOOK_RETRY_DELAY doubling, at most
  `MAX_RETRY_DELAY_S`) until TENANT_WEBHOOK_RETRY_PERIOD has passed, then failed.
- **The queue** is huey: SqliteHuey in a file beside the embedded store, or RedisHuey on the
  storage's Redis. It only wakes workers up and keeps the retries' schedule; the store is the
  truth, and `sweep` hands out again what a killed worker or a lost queue write left behind.
"""

import base64
import json
import logging
import os
import random
import secrets
import threading
import time
from datetime import UTC, datetime

from huey import RedisHuey, SqliteHuey
from livekit.protocol import models
from standardwebhooks import Webhook

from .config import Settings
from .egress import Sender, UrlRefused
from .errors import (
    InvalidRequest,
    WebhookDeliveryNotFound,
    WebhookEndpointNotFound,
    WebhookEndpointsLimit,
)
from .roles import RESERVED_PREFIX
from .storage import Endpoint, NewDelivery

log = logging.getLogger(__name__)

#: The LiveKit events a tenant may subscribe to (all by default).
EVENT_TYPES = (
    "room_started",
    "room_finished",
    "participant_joined",
    "participant_left",
    "track_published",
    "track_unpublished",
)
#: The event the test route sends (to one endpoint, whatever it subscribed to).
TEST_EVENT = "webhook.test"
STATUSES = ("pending", "delivered", "failed")
SECRET_PREFIX = "whsec_"
#: After a rotation the old secret signs too, this long.
ROTATION_OVERLAP_MS = 24 * 3600 * 1000
#: The longest wait between two attempts.
MAX_RETRY_DELAY_S = 3600.0
#: A lease outlasts the attempt's timeout by this much.
LEASE_MARGIN_MS = 2000
#: An attempt woken this much before its time goes ahead (clocks of queue and storage).
EARLY_SLACK_MS = 50
#: An endpoint with its most attempts running: try again after about this long, doubling with
#: each busy find (`TenantWebhooks.busy_delay`).
BUSY_DELAY_S = 0.25
#: Deliveries listed by the route, newest first.
LISTED = 100
#: Deliveries the sweep hands out again at once.
SWEEP_BATCH = 500
#: The name of the queue (huey's) and of its one task.
QUEUE_NAME = "tokensvc-webhooks"
TASK_NAME = "deliver"


def new_secret() -> str:
    """A fresh signing secret: whsec_ and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def rfc3339(ms: int | None) -> str | None:
    """A storage time (ms) as an RFC 3339 UTC time, or None."""
    if ms is None:
        return None
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sign(delivery_id: str, timestamp: int, body: str, signing_secrets) -> dict:
    """The Standard Webhooks headers of one attempt: one `v1,` signature per secret."""
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    signatures = " ".join(
        Webhook(secret).sign(delivery_id, moment, body) for secret in signing_secrets
    )
    return {
        "webhook-id": delivery_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
    }


def _enum(kind, value: int) -> str:
    """A protobuf enum value's name, in lower case."""
    try:
        return kind.Name(value).lower()
    except ValueError:
        return str(value)


def _participant(info) -> dict:
    """A participant as tenants see it (the service's own attributes left out)."""
    return {
        "sid": info.sid,
        "identity": info.identity,
        "name": info.name,
        "state": _enum(models.ParticipantInfo.State, info.state),
        "joined_at": info.joined_at,
        "metadata": info.metadata,
        "attributes": {
            key: value
            for key, value in info.attributes.items()
            if not key.startswith(RESERVED_PREFIX)
        },
    }


def _track(info) -> dict:
    """A track as tenants see it."""
    return {
        "sid": info.sid,
        "type": _enum(models.TrackType, info.type),
        "source": _enum(models.TrackSource, info.source),
        "name": info.name,
        "muted": info.muted,
    }


def event_body(event, room_name: str) -> str:
    """The JSON body tenants receive for one LiveKit event, with their own room name."""
    data = {
        "room": {
            "name": room_name,
            "sid": event.room.sid,
            "creation_time": event.room.creation_time,
            "num_participants": event.room.num_participants,
        }
    }
    if event.HasField("participant"):
        data["participant"] = _participant(event.participant)
    if event.HasField("track"):
        data["track"] = _track(event.track)
    return json.dumps(
        {"type": event.event, "timestamp": rfc3339(event.created_at * 1000), "data": data},
        ensure_ascii=False,
        separators=(",", ":"),
    )


def open_queue(holds_store) -> "DeliveryQueue":
    """The delivery queue beside a hold store: RedisHuey on its Redis, else SqliteHuey in a file
    next to its SQLite file."""
    if holds_store.backend == "redis":
        huey = RedisHuey(
            QUEUE_NAME, results=False, connection_pool=holds_store.client.connection_pool
        )
    else:
        filename = os.path.splitext(holds_store.path)[0] + "-queue.sqlite3"
        huey = SqliteHuey(QUEUE_NAME, filename=filename, results=False, timeout=holds_store.timeout)
    return DeliveryQueue(huey)


class DeliveryQueue:
    """The huey queue with its one task, `deliver(delivery_id)`, which runs `handler` (set in
    the worker; the web process only enqueues)."""

    def __init__(self, huey):
        """Register the task on `huey`."""
        self.huey = huey
        self.handler = None

        @huey.task(name=TASK_NAME)
        def deliver(delivery_id, busy=0):
            """One attempt of one delivery (in the worker); `busy`: how many times in a row it
            found its endpoint busy."""
            if self.handler is None:
                raise RuntimeError("no delivery handler in this process")
            self.handler(delivery_id, busy)

        self.task = deliver

    def enqueue(self, delivery_id: str, delay: float = 0.0, busy: int = 0) -> None:
        """Wake a worker for `delivery_id`, now or after `delay` seconds."""
        if delay > 0:
            self.task.schedule(args=(delivery_id, busy), delay=delay)
        else:
            self.task(delivery_id, busy)

    def depth(self) -> int:
        """Tasks waiting in the queue and in its schedule."""
        return self.huey.pending_count() + self.huey.scheduled_count()


class TenantWebhooks:
    """Tenants' webhook endpoints, the fan-out of LiveKit's events to them, and the attempts."""

    def __init__(
        self,
        settings: Settings,
        store,
        queue: DeliveryQueue,
        sender: Sender | None = None,
        observe=None,
    ):
        """Keep endpoints and deliveries in `store`, wake workers through `queue`, send with
        `sender` (the guarded HTTP client); `observe(outcome)` is told of every attempt.
        Each event's room name comes from the ownership rule."""
        self.settings = settings
        self.store = store
        self.queue = queue
        self.sender = sender or Sender(
            settings.tenant_webhook_timeout, settings.tenant_webhooks_allow_private
        )
        self.observe = observe
        self.period_ms = int(settings.tenant_webhook_retry_period * 1000)
        self.lease_ms = int(settings.tenant_webhook_timeout * 1000) + LEASE_MARGIN_MS

    # The routes.

    def subscribe(self, tenant: str, url: str, events, description: str) -> tuple:
        """A new endpoint for the tenant: (Endpoint, its secret). 400 for a refused URL, 409
        past TENANT_WEBHOOK_ENDPOINTS_MAX."""
        try:
            self.sender.check(url)
        except UrlRefused as exc:
            raise InvalidRequest(f"the URL {exc}", fields={"url": [f"The URL {exc}."]}) from None
        chosen = tuple(dict.fromkeys(events)) if events else EVENT_TYPES
        endpoint = Endpoint(
            "ep_" + secrets.token_hex(12), tenant, url, chosen, description, 0, new_secret()
        )
        most = self.settings.tenant_webhook_endpoints_max
        stored = self.store.add_endpoint(endpoint, most)
        if stored is None:
            raise WebhookEndpointsLimit(
                f"this tenant has {most} webhook endpoints already "
                f"(TENANT_WEBHOOK_ENDPOINTS_MAX); delete one first"
            )
        return stored, endpoint.secret

    def endpoints(self, tenant: str) -> list[Endpoint]:
        """The tenant's endpoints."""
        return self.store.endpoints(tenant)

    def unsubscribe(self, tenant: str, endpoint_id: str) -> None:
        """Delete one of the tenant's endpoints (404 when it has none of that id); its pending
        deliveries fail at their next attempt."""
        if not self.store.delete_endpoint(tenant, endpoint_id):
            raise WebhookEndpointNotFound()

    def rotate_secret(self, tenant: str, endpoint_id: str) -> str:
        """A new secret for one of the tenant's endpoints; the old one signs too for 24 h."""
        secret = new_secret()
        if not self.store.rotate(tenant, endpoint_id, secret, ROTATION_OVERLAP_MS):
            raise WebhookEndpointNotFound()
        return secret

    def send_test(self, tenant: str, endpoint_id: str) -> str:
        """Queue a `webhook.test` event to one of the tenant's endpoints; its delivery id."""
        endpoint = self._endpoint(tenant, endpoint_id)
        now = self.store.time_ms()
        body = json.dumps(
            {"type": TEST_EVENT, "timestamp": rfc3339(now), "data": {"endpoint_id": endpoint.id}},
            separators=(",", ":"),
        )
        delivery = NewDelivery(
            _delivery_id(), tenant, endpoint.id, "test_" + secrets.token_hex(6), TEST_EVENT, body
        )
        self._deliver([delivery])
        return delivery.id

    def deliveries(
        self, tenant: str, endpoint_id: str | None = None, status: str | None = None
    ) -> list:
        """The tenant's newest deliveries (at most LISTED), by endpoint and status."""
        return self.store.deliveries(tenant, endpoint_id, status, LISTED)

    def retry(self, tenant: str, delivery_id: str) -> None:
        """Deliver one of the tenant's deliveries again, now, for another retry period."""
        if not self.store.retry(tenant, delivery_id, self.period_ms):
            raise WebhookDeliveryNotFound()
        self._wake(delivery_id)

    def _endpoint(self, tenant: str, endpoint_id: str) -> Endpoint:
        """One of the tenant's endpoints, or 404."""
        for endpoint in self.store.endpoints(tenant):
            if endpoint.id == endpoint_id:
                return endpoint
        raise WebhookEndpointNotFound()

    # The fan-out (from Ownership.on_event, after its duplicate and age checks).

    def on_event(self, holder: str, event, room_name: str) -> int:
        """Queue one delivery of a LiveKit event of `holder`'s room (`room_name` in the
        holder's own names) to each of its endpoints that subscribed to the event's type;
        return how many."""
        if not holder or event.event not in EVENT_TYPES:
            return 0
        endpoints = [e for e in self.store.endpoints(holder) if event.event in e.events]
        if not endpoints:
            return 0
        body = event_body(event, room_name)
        self._deliver(
            [
                NewDelivery(_delivery_id(), holder, endpoint.id, event.id, event.event, body)
                for endpoint in endpoints
            ]
        )
        return len(endpoints)

    def _deliver(self, deliveries: list[NewDelivery]) -> None:
        """Store the deliveries, then wake a worker for each."""
        self.store.add_deliveries(deliveries, self.period_ms)
        for delivery in deliveries:
            self._wake(delivery.id)

    def _wake(self, delivery_id: str, delay: float = 0.0, busy: int = 0) -> None:
        """Tell the queue; if that fails the sweep finds the delivery later."""
        try:
            self.queue.enqueue(delivery_id, delay, busy)
        except Exception as exc:  # sqlite3 or redis-py alike: the record is what counts
            log.warning(
                "webhook queue: could not queue a delivery (%s); the sweep will", type(exc).__name__
            )

    # The worker.

    def attempt(self, delivery_id: str, busy: int = 0) -> str:
        """One attempt of one delivery; return what came of it ("delivered", "retried",
        "failed", or why nothing was sent: "busy", "early", "leased", "done", "gone",
        "orphan"). `busy`: how many times in a row this delivery found its endpoint busy."""
        settings = self.settings
        started = self.store.start_attempt(
            delivery_id, self.lease_ms, settings.tenant_webhook_endpoint_concurrency, EARLY_SLACK_MS
        )
        if started.outcome == "busy":
            self._wake(delivery_id, self.busy_delay(busy), busy + 1)
            return "busy"
        if started.outcome == "early":
            self._wake(delivery_id, started.wait_ms / 1000)
            return "early"
        if started.outcome != "go":
            if started.outcome == "orphan":
                self._observed("failed")
            return started.outcome
        timestamp = int(time.time())
        headers = sign(delivery_id, timestamp, started.body, started.secrets)
        answer = self.sender.post(started.url, started.body.encode(), headers)
        delay = self.backoff(started.attempts)
        status, _ = self.store.finish_attempt(
            delivery_id, answer.ok, answer.status, answer.error, int(delay * 1000)
        )
        outcome = "retried" if status == "pending" else status
        self._observed(outcome)
        if status == "pending":
            self._wake(delivery_id, delay)
        elif status == "failed":
            log.info(
                "webhook delivery failed for good after %d attempts (last: %s)",
                started.attempts + 1,
                answer.error,
            )
        return outcome

    def busy_delay(self, busy: int) -> float:
        """Seconds before a delivery that found its endpoint busy `busy` times in a row looks
        again: BUSY_DELAY_S doubling each time, at most TENANT_WEBHOOK_TIMEOUT (by then a
        running attempt has given its place up), with jitter (half to one and a half of it). A
        backlog behind a hanging endpoint so wakes its worker a few times a minute per
        delivery, not four times a second."""
        delay = min(BUSY_DELAY_S * 2 ** min(busy, 30), self.settings.tenant_webhook_timeout)
        return delay * (0.5 + random.random())

    def backoff(self, attempts: int) -> float:
        """Seconds before the next attempt after `attempts` earlier ones and this one failed:
        TENANT_WEBHOOK_RETRY_DELAY doubling each time, at most MAX_RETRY_DELAY_S, with jitter
        (half to all of it)."""
        delay = min(
            MAX_RETRY_DELAY_S, self.settings.tenant_webhook_retry_delay * 2 ** min(attempts, 30)
        )
        return delay * (0.5 + random.random() / 2)

    def sweep_interval(self) -> float:
        """How often the worker sweeps: half a lease, at most 15 s."""
        return min(15.0, max(0.2, self.lease_ms / 2000))

    def sweep(self) -> int:
        """Wake a worker for each pending delivery whose wake-up was lost (overdue by more than
        one sweep interval and not leased); return how many."""
        overdue = self.store.overdue(int(self.sweep_interval() * 1000), SWEEP_BATCH)
        for delivery_id in overdue:
            self._wake(delivery_id)
        return len(overdue)

    def stats(self):
        """The store's figures for /metrics, read past the storage-call counter (a scrape is
        not one of the service's storage calls)."""
        return getattr(self.store, "store", self.store).stats()

    def _observed(self, outcome: str) -> None:
        """Tell the observer of an attempt's outcome."""
        if self.observe is not None:
            self.observe(outcome)

    def close(self) -> None:
        """Close the store's connection."""
        self.store.close()


def _delivery_id() -> str:
    """A new delivery id: the `webhook-id` of every attempt."""
    return "msg_" + secrets.token_hex(12)


class Sweeper:
    """A thread that calls `TenantWebhooks.sweep` every sweep interval until stopped."""

    def __init__(self, webhooks: TenantWebhooks):
        """Sweep for `webhooks`."""
        self.webhooks = webhooks
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="webhook-sweeper", daemon=True)

    def start(self) -> "Sweeper":
        """Start sweeping (at once: a worker that starts picks up what a killed one left)."""
        self.thread.start()
        return self

    def _run(self) -> None:
        """Sweep until stopped; a failing storage is logged and tried again."""
        while not self.stopped.is_set():
            try:
                self.webhooks.sweep()
            except Exception as exc:
                log.warning("webhook sweep failed (%s)", type(exc).__name__)
            self.stopped.wait(self.webhooks.sweep_interval())

    def stop(self) -> None:
        """Stop, and wait for the thread."""
        self.stopped.set()
        self.thread.join(5)
