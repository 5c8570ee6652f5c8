"""Tenants' webhook endpoints and deliveries in the Redis of the holds (its connection, its
clock, its replica acknowledgement on every write).

A hash per endpoint (ep:<id>) and a set of each tenant's endpoint ids (eps:<tenant>); a hash per
delivery (d:<id>), a sorted set of each tenant's newest deliveries by creation (ds:<tenant>), the
pending ones by creation (pending) and by next attempt (due), the leases of each endpoint's
running attempts (inflight:<endpoint>), and the outcome counters (outcomes).
"""

import json

from ..contracts import (
    DELIVERY_RETENTION_MS,
    LISTED_PER_TENANT,
    Attempt,
    Delivery,
    Endpoint,
    NewDelivery,
    Stats,
)
from ..webhook_rows import DELIVERY_FIELDS, ENDPOINT_FIELDS, delivery_from, endpoint_from
from .base import REDIS_PREFIX, Arguments, RedisStore

#: The prefix of every Redis key of tenants' webhooks.
PREFIX = REDIS_PREFIX + "wh:"
CLOCK = ("clock",)


class RedisWebhookStore(RedisStore):
    """Endpoints and deliveries in the Redis of the holds (its connection, its clock)."""

    scripts = {
        "add_endpoint": ("webhooks_add_endpoint", CLOCK),
        "delete_endpoint": ("webhooks_delete_endpoint", ()),
        "rotate": ("webhooks_rotate", CLOCK),
        "add_deliveries": ("webhooks_add_deliveries", CLOCK),
        "retry": ("webhooks_retry", CLOCK),
        "start": ("webhooks_start_attempt", CLOCK),
        "finish": ("webhooks_finish_attempt", CLOCK),
    }

    def prepare(self) -> None:
        """Nothing to make: Redis keys appear when written."""

    @staticmethod
    def _key(kind: str, name: str = "") -> str:
        """A key of tenants' webhooks."""
        return f"{PREFIX}{kind}:{name}" if name else f"{PREFIX}{kind}"

    def add_endpoint(self, endpoint: Endpoint, most: int) -> Endpoint | None:
        """Store a new endpoint unless the tenant has `most`."""
        now = self._run(
            "add_endpoint",
            [self._key("eps", endpoint.tenant), self._key("ep", endpoint.id)],
            [
                most,
                endpoint.id,
                endpoint.tenant,
                endpoint.url,
                json.dumps(endpoint.events),
                endpoint.description,
                endpoint.secret,
                self.clock.shift_ms,
            ],
        )
        if now == -1:
            return None
        return Endpoint(
            endpoint.id,
            endpoint.tenant,
            endpoint.url,
            endpoint.events,
            endpoint.description,
            int(now),
            endpoint.secret,
        )

    def endpoints(self, tenant: str) -> list[Endpoint]:
        """The tenant's endpoints, oldest first."""
        ids = sorted(member.decode() for member in self.client.smembers(self._key("eps", tenant)))
        pipe = self.client.pipeline(transaction=False)
        for endpoint_id in ids:
            pipe.hmget(self._key("ep", endpoint_id), ENDPOINT_FIELDS)
        found = [
            endpoint_from([None if v is None else v.decode() for v in row])
            for row in pipe.execute()
            if row[0] is not None
        ]
        return sorted((e for e in found if e.tenant == tenant), key=lambda e: (e.created_at, e.id))

    def delete_endpoint(self, tenant: str, endpoint_id: str) -> bool:
        """Delete one of the tenant's endpoints."""
        done = self._run(
            "delete_endpoint",
            [self._key("eps", tenant), self._key("ep", endpoint_id)],
            [tenant, endpoint_id],
        )
        return bool(done == 1)

    def rotate(self, tenant: str, endpoint_id: str, secret: str, keep_ms: int) -> bool:
        """Replace an endpoint's secret; the old one signs too for `keep_ms`."""
        done = self._run(
            "rotate",
            [self._key("ep", endpoint_id)],
            [tenant, secret, keep_ms, self.clock.shift_ms],
        )
        return bool(done == 1)

    def add_deliveries(self, deliveries: list[NewDelivery], period_ms: int) -> None:
        """Store pending deliveries, due now (one script for all of them)."""
        if not deliveries:
            return
        keys: list[str | int] = [self._key("due"), self._key("pending")]
        args: list[str | int] = [
            period_ms,
            DELIVERY_RETENTION_MS,
            LISTED_PER_TENANT,
            self.clock.shift_ms,
        ]
        for d in deliveries:
            keys += [self._key("d", d.id), self._key("ds", d.tenant)]
            args += [d.id, d.tenant, d.endpoint_id, d.event_id, d.type, d.body]
        self._run("add_deliveries", keys, args)

    def deliveries(
        self, tenant: str, endpoint_id: str | None, status: str | None, limit: int
    ) -> list[Delivery]:
        """The tenant's newest deliveries, filtered by endpoint and status."""
        ids = self.client.zrevrange(self._key("ds", tenant), 0, LISTED_PER_TENANT - 1)
        pipe = self.client.pipeline(transaction=False)
        for delivery_id in ids:
            pipe.hmget(self._key("d", delivery_id.decode()), DELIVERY_FIELDS)
        found: list[Delivery] = []
        for row in pipe.execute():
            if row[0] is None:
                continue
            delivery = delivery_from([None if v is None else v.decode() for v in row])
            if delivery.tenant != tenant or (
                endpoint_id is not None and delivery.endpoint_id != endpoint_id
            ):
                continue
            if status is None or delivery.status == status:
                found.append(delivery)
            if len(found) == limit:
                break
        return found

    def delivery(self, tenant: str, delivery_id: str) -> Delivery | None:
        """One of the tenant's deliveries, or None."""
        row = self.client.hmget(self._key("d", delivery_id), DELIVERY_FIELDS)
        if row[0] is None:
            return None
        delivery = delivery_from([None if v is None else v.decode() for v in row])
        return delivery if delivery.tenant == tenant else None

    def retry(self, tenant: str, delivery_id: str, period_ms: int) -> bool:
        """Make one of the tenant's deliveries pending and due now, for another period."""
        done = self._run(
            "retry",
            [self._key("d", delivery_id), self._key("due"), self._key("pending")],
            [tenant, delivery_id, period_ms, DELIVERY_RETENTION_MS, self.clock.shift_ms],
        )
        return bool(done == 1)

    def _delivery_keys(self, delivery_id: str) -> Arguments:
        """The keys the attempt scripts name."""
        return [
            self._key("d", delivery_id),
            self._key("due"),
            self._key("pending"),
            self._key("outcomes"),
        ]

    def start_attempt(
        self, delivery_id: str, lease_ms: int, concurrency: int, slack_ms: int
    ) -> Attempt:
        """Lease a due pending delivery for one attempt (one script)."""
        found = [
            part.decode()
            for part in self._run(
                "start",
                self._delivery_keys(delivery_id),
                [delivery_id, lease_ms, concurrency, slack_ms, PREFIX, self.clock.shift_ms],
            )
        ]
        if found[0] in ("leased", "early"):
            return Attempt(found[0], wait_ms=int(found[1]))
        if found[0] != "go":
            return Attempt(found[0])
        body, url, secret, previous, attempts = found[1:]
        return Attempt(
            "go", body, url, (secret, previous) if previous else (secret,), int(attempts)
        )

    def finish_attempt(
        self,
        delivery_id: str,
        delivered: bool,
        status_code: int | None,
        error: str | None,
        delay_ms: int,
    ) -> tuple[str, int | None]:
        """Record one attempt (one script)."""
        status, due = (
            part.decode()
            for part in self._run(
                "finish",
                self._delivery_keys(delivery_id),
                [
                    delivery_id,
                    "1" if delivered else "0",
                    "" if status_code is None else status_code,
                    error or "",
                    delay_ms,
                    DELIVERY_RETENTION_MS,
                    PREFIX,
                    self.clock.shift_ms,
                ],
            )
        )
        return status, int(due) if due else None

    def overdue(self, older_than_ms: int, limit: int) -> list[str]:
        """Pending deliveries due more than `older_than_ms` ago (records that expired are
        dropped from the index); the attempt itself checks the lease."""
        now = self.time_ms()
        ids = [
            member.decode()
            for member in self.client.zrangebyscore(
                self._key("due"), "-inf", now - older_than_ms, start=0, num=limit
            )
        ]
        if not ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for delivery_id in ids:
            pipe.exists(self._key("d", delivery_id))
        alive = pipe.execute()
        lost = [delivery_id for delivery_id, found in zip(ids, alive, strict=True) if not found]
        if lost:
            self.connection.command("ZREM", self._key("due"), *lost)
            self.connection.command("ZREM", self._key("pending"), *lost)
        return [delivery_id for delivery_id, found in zip(ids, alive, strict=True) if found]

    def stats(self) -> Stats:
        """The counters, the pending count and the oldest pending delivery's creation time."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self._key("outcomes"))
        pipe.zcard(self._key("pending"))
        pipe.zrange(self._key("pending"), 0, 0, withscores=True)
        outcomes, pending, oldest = pipe.execute()
        return Stats(
            {k.decode(): int(v) for k, v in outcomes.items()},
            int(pending),
            int(oldest[0][1]) if oldest else None,
            self.time_ms(),
        )

    def time_ms(self) -> int:
        """Redis's clock, shifted, ms."""
        return self.connection.time_ms() + self.clock.shift_ms

    def close(self) -> None:
        """The holds close the shared client."""
