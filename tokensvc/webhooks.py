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
  attributes. The deliveries are stored, due now, and that is all: the web process never sends
  HTTP to a tenant.
- **Delivery** is the worker's (`processes/delivery.py`): it claims due deliveries from the
  store, fairly across tenants and at most TENANT_WEBHOOK_ENDPOINT_CONCURRENCY at once per
  endpoint, sends them asynchronously, and records each outcome; this module gives it the
  signing (`sign`, `signing_secrets`: `webhook-id` is the delivery's id, the same on every
  attempt), the back-off (TENANT_WEBHOOK_RETRY_DELAY doubling, at most `MAX_RETRY_DELAY_S`, with
  jitter) and the `endpoint.disabled` event an endpoint's breaker sends to the tenant's others.
- **Secrets** are sealed at rest (`sealing.py`, TENANT_WEBHOOK_SECRETS_KEY) before they reach
  the store, and opened only to sign; `rekey` seals them all again with the first key.
- **Inputs**: a URL is kept in its normalized form (`egress.normalize_url`), and nothing is
  written that the storage could not encode: a 400 first.
"""

import base64
import json
import logging
import random
import secrets
from collections.abc import Callable
from datetime import UTC, datetime

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
from .sealing import SealingError, SecretBox
from .storage import Claim, Endpoint, NewDelivery

log = logging.getLogger(__name__)

#: The LiveKit events a tenant's endpoints get.
LIVEKIT_EVENT_TYPES = (
    "room_started",
    "room_finished",
    "participant_joined",
    "participant_left",
    "track_published",
    "track_unpublished",
)
#: What the service itself did in a tenant's room, and why: a participant it removed (over a
#: quota), a room it ended (over `max_rooms`, or the tenant suspended).
SERVICE_EVENT_TYPES = ("participant.removed", "room.ended")
#: The events a tenant may subscribe to (all by default).
EVENT_TYPES = LIVEKIT_EVENT_TYPES + SERVICE_EVENT_TYPES
#: The event the test route sends (to one endpoint, whatever it subscribed to).
TEST_EVENT = "webhook.test"
#: The event a tenant's other endpoints get when one of its endpoints is disabled.
DISABLED_EVENT = "endpoint.disabled"
STATUSES = ("pending", "delivered", "failed")
SECRET_PREFIX = "whsec_"
#: After a rotation the old secret signs too, this long.
ROTATION_OVERLAP_MS = 24 * 3600 * 1000
#: The longest wait between two attempts.
MAX_RETRY_DELAY_S = 3600.0
#: A lease outlasts the attempt's timeout by this much.
LEASE_MARGIN_MS = 2000
#: Deliveries listed by the route, newest first.
LISTED = 100


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


class TenantWebhooks:
    """Tenants' webhook endpoints, the fan-out of LiveKit's events to them, and the attempts."""

    def __init__(
        self,
        settings: Settings,
        store,
        box: SecretBox | None = None,
        sender: Sender | None = None,
        observe=None,
    ):
        """Keep endpoints and deliveries in `store`, their secrets sealed by `box`; check URLs
        with `sender` (the guard); `observe(outcome)` is told of every attempt's outcome. Each
        event's room name comes from the ownership rule."""
        self.settings = settings
        self.store = store
        self.box = box or SecretBox(settings.tenant_webhook_secrets_key)
        self.sender = sender or Sender(
            settings.tenant_webhook_timeout, settings.tenant_webhooks_allow_private
        )
        self.observe = observe
        self.period_ms = int(settings.tenant_webhook_retry_period * 1000)
        self.lease_ms = int(settings.tenant_webhook_timeout * 1000) + LEASE_MARGIN_MS
        self.concurrency = settings.tenant_webhook_endpoint_concurrency
        self.disable_after_ms = int(settings.tenant_webhook_disable_after * 1000)

    # The routes.

    #: The most endpoints a tenant may have, by its plan (`Tenants.max_webhook_endpoints`, set
    #: by the extension); None: TENANT_WEBHOOK_ENDPOINTS_MAX for every tenant.
    endpoints_max: Callable[[str], int] | None = None

    def subscribe(self, tenant: str, url: str, events, description: str) -> tuple:
        """A new endpoint for the tenant: (Endpoint, its secret). 400 for a refused URL or a
        field the storage could not keep, 409 past the tenant's most endpoints (its plan, else
        TENANT_WEBHOOK_ENDPOINTS_MAX), checked atomically with the insert."""
        _encodable("description", description)
        for event in events or ():
            _encodable("events", event)
        try:
            url = self.sender.check(url)
        except UrlRefused as exc:
            raise InvalidRequest(f"the URL {exc}", fields={"url": [f"The URL {exc}."]}) from None
        chosen = tuple(dict.fromkeys(events)) if events else EVENT_TYPES
        endpoint_id = "ep_" + secrets.token_hex(12)
        secret = new_secret()
        endpoint = Endpoint(
            endpoint_id, tenant, url, chosen, description, 0, self.box.seal(secret, endpoint_id)
        )
        most = (
            self.endpoints_max(tenant)
            if self.endpoints_max is not None
            else self.settings.tenant_webhook_endpoints_max
        )
        stored = self.store.add_endpoint(endpoint, most)
        if stored is None:
            raise WebhookEndpointsLimit(
                f"this tenant has {most} webhook endpoints already (its plan's limit, or "
                f"TENANT_WEBHOOK_ENDPOINTS_MAX); delete one first"
            )
        return stored, secret

    def endpoints(self, tenant: str) -> list[Endpoint]:
        """The tenant's endpoints (their secrets as stored: never shown)."""
        return self.store.endpoints(tenant)

    def unsubscribe(self, tenant: str, endpoint_id: str) -> None:
        """Delete one of the tenant's endpoints (404 when it has none of that id); its waiting
        deliveries fail."""
        if not self.store.delete_endpoint(tenant, endpoint_id):
            raise WebhookEndpointNotFound()

    def set_enabled(self, tenant: str, endpoint_id: str, enabled: bool) -> Endpoint:
        """Enable one of the tenant's endpoints (what waited is sent, oldest first, each with a
        new retry period) or disable it; the endpoint as it is now."""
        if not self.store.set_enabled(
            tenant, endpoint_id, enabled, "disabled by the tenant", self.period_ms, self.concurrency
        ):
            raise WebhookEndpointNotFound()
        return self._endpoint(tenant, endpoint_id)

    def rotate_secret(self, tenant: str, endpoint_id: str) -> str:
        """A new secret for one of the tenant's endpoints; the old one signs too for 24 h."""
        secret = new_secret()
        sealed = self.box.seal(secret, endpoint_id)
        if not self.store.rotate(tenant, endpoint_id, sealed, ROTATION_OVERLAP_MS):
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
        if not self.store.retry(tenant, delivery_id, self.period_ms, self.concurrency):
            raise WebhookDeliveryNotFound()

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
        if not holder or event.event not in LIVEKIT_EVENT_TYPES:
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

    def on_service_event(
        self, holder: str, kind: str, room_name: str, data: dict, event_id: str
    ) -> int:
        """Queue one delivery of what the service did in `holder`'s room (`kind`, one of
        SERVICE_EVENT_TYPES; `data` says what and why) to each of its endpoints subscribed to
        it; how many. `event_id` is the same for every delivery of the one event."""
        if not holder or kind not in SERVICE_EVENT_TYPES:
            return 0
        endpoints = [e for e in self.store.endpoints(holder) if kind in e.events]
        if not endpoints:
            return 0
        body = json.dumps(
            {
                "type": kind,
                "timestamp": rfc3339(self.store.time_ms()),
                "data": {"room": {"name": room_name}, **data},
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )
        self._deliver(
            [
                NewDelivery(_delivery_id(), holder, endpoint.id, event_id, kind, body)
                for endpoint in endpoints
            ]
        )
        return len(endpoints)

    def _deliver(self, deliveries: list[NewDelivery]) -> None:
        """Store the deliveries, due now: a worker claims them from the store."""
        self.store.add_deliveries(deliveries, self.period_ms, self.concurrency)

    # The worker's helpers.

    def signing_secrets(self, claim: Claim) -> tuple[str, ...]:
        """The secrets that sign an attempt of `claim`, opened (SealingError when no key
        given opens one)."""
        found = [self.box.open(claim.secret, claim.endpoint_id)]
        if claim.previous_secret:
            found.append(self.box.open(claim.previous_secret, claim.endpoint_id))
        return tuple(found)

    def endpoint_disabled(self, tenant: str, endpoint_id: str) -> int:
        """Tell the tenant's other enabled endpoints that `endpoint_id` was disabled (an
        `endpoint.disabled` event each); how many."""
        endpoints = self.store.endpoints(tenant)
        disabled = next((e for e in endpoints if e.id == endpoint_id), None)
        if disabled is None:
            return 0
        now = self.store.time_ms()
        body = json.dumps(
            {
                "type": DISABLED_EVENT,
                "timestamp": rfc3339(now),
                "data": {
                    "endpoint_id": disabled.id,
                    "url": disabled.url,
                    "reason": disabled.disabled_reason,
                    "disabled_at": rfc3339(disabled.disabled_at),
                },
            },
            separators=(",", ":"),
        )
        event_id = f"disabled_{endpoint_id}_{disabled.disabled_at}"
        others = [
            NewDelivery(_delivery_id(), tenant, other.id, event_id, DISABLED_EVENT, body)
            for other in endpoints
            if other.id != endpoint_id and other.enabled
        ]
        if others:
            self._deliver(others)
        return len(others)

    def disabled_reason(self) -> str:
        """What a disabled endpoint's reason says (the attempt's error follows)."""
        return (
            f"every attempt failed for {_duration(self.disable_after_ms)} "
            f"(TENANT_WEBHOOK_DISABLE_AFTER)"
        )

    def rekey(self) -> tuple[int, int]:
        """Seal every endpoint's secrets with the first key of TENANT_WEBHOOK_SECRETS_KEY:
        (endpoints sealed again, endpoints already sealed with it). SealingError when a secret
        opens with no key given."""
        if not self.box.sealing:
            raise SealingError("TENANT_WEBHOOK_SECRETS_KEY is not set: nothing to seal with")
        changed = unchanged = 0
        for endpoint_id, secret, previous in self.store.secrets():
            if self.box.current(secret) and self.box.current(previous):
                unchanged += 1
                continue
            new = tuple(
                self.box.seal(self.box.open(value, endpoint_id), endpoint_id)
                for value in (secret, previous)
            )
            if self.store.replace_secrets(endpoint_id, (secret, previous), new):
                changed += 1
        return changed, unchanged

    def backoff(self, attempts: int) -> float:
        """Seconds before the next attempt after `attempts` earlier ones and this one failed:
        TENANT_WEBHOOK_RETRY_DELAY doubling each time, at most MAX_RETRY_DELAY_S, with jitter
        (half to all of it)."""
        delay = min(
            MAX_RETRY_DELAY_S, self.settings.tenant_webhook_retry_delay * 2 ** min(attempts, 30)
        )
        return delay * (0.5 + random.random() / 2)

    def stats(self):
        """The store's figures for /metrics, read past the storage-call counter (a scrape is
        not one of the service's storage calls)."""
        return getattr(self.store, "store", self.store).stats()

    def observed(self, outcome: str) -> None:
        """Tell the observer of an attempt's outcome."""
        if self.observe is not None:
            self.observe(outcome)

    def close(self) -> None:
        """Close the store's connection."""
        self.store.close()


def _delivery_id() -> str:
    """A new delivery id: the `webhook-id` of every attempt."""
    return "msg_" + secrets.token_hex(12)


def _encodable(field: str, value) -> None:
    """400 naming `field` when `value` holds what no storage can keep (lone surrogates)."""
    try:
        str(value).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(
            f"{field} contains characters that cannot be encoded",
            fields={field: ["Contains characters that cannot be encoded (lone surrogates)."]},
        ) from None


def _duration(ms: int) -> str:
    """A duration in the largest whole unit that fits (days, hours, minutes, seconds)."""
    for unit, size in (("day", 86_400_000), ("hour", 3_600_000), ("minute", 60_000)):
        if ms >= size and ms % size == 0:
            count = ms // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{ms / 1000:g} s"
