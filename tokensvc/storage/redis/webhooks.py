"""Tenants' webhook endpoints and deliveries in the Redis of the holds (its connection, its
clock, its replica acknowledgement on every write).

A hash per endpoint (ep:<id>) and a set of each tenant's endpoint ids (eps:<tenant>); a hash per
delivery (d:<id>), a sorted set of each tenant's newest deliveries by creation (ds:<tenant>), the
pending ones by creation (pending), every lease by its end (leases), and the outcome counters
(outcomes). The scheduling indexes (each endpoint's waiting deliveries and leases, each
tenant's endpoints that may get an attempt, the tenants with work) are described in
`webhooks_lib.lua`, which every script that changes them includes.
"""

import json
from collections.abc import Sequence

from ..contracts import (
    DELIVERY_RETENTION_MS,
    LISTED_PER_TENANT,
    Claim,
    Delivery,
    Endpoint,
    Finished,
    NewDelivery,
    Outcome,
    Stats,
)
from ..webhook_rows import DELIVERY_FIELDS, ENDPOINT_FIELDS, delivery_from, endpoint_from
from .base import REDIS_PREFIX, RedisStore

#: The prefix of every Redis key of tenants' webhooks.
PREFIX = REDIS_PREFIX + "wh:"
CLOCK = ("clock",)
SCHEDULING = ("clock", "webhooks_lib")
#: What a deleted endpoint's waiting deliveries say.
DELETED = "the endpoint was deleted"


class RedisWebhookStore(RedisStore):
    """Endpoints and deliveries in the Redis of the holds (its connection, its clock)."""

    scripts = {
        "add_endpoint": ("webhooks_add_endpoint", CLOCK),
        "delete_endpoint": ("webhooks_delete_endpoint", SCHEDULING),
        "rotate": ("webhooks_rotate", CLOCK),
        "set_enabled": ("webhooks_set_enabled", SCHEDULING),
        "replace_secrets": ("webhooks_replace_secrets", ()),
        "add_deliveries": ("webhooks_add_deliveries", SCHEDULING),
        "retry": ("webhooks_retry", SCHEDULING),
        "claim": ("webhooks_claim", SCHEDULING),
        "finish": ("webhooks_finish", SCHEDULING),
        "reap": ("webhooks_reap", SCHEDULING),
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
        """Delete one of the tenant's endpoints (its waiting deliveries fail)."""
        done = self._run(
            "delete_endpoint",
            [self._key("eps", tenant), self._key("ep", endpoint_id)],
            [tenant, endpoint_id, PREFIX, DELIVERY_RETENTION_MS, DELETED],
        )
        return bool(done == 1)

    def set_enabled(
        self,
        tenant: str,
        endpoint_id: str,
        enabled: bool,
        reason: str,
        period_ms: int,
        concurrency: int,
    ) -> bool:
        """Enable one of the tenant's endpoints, or disable it with `reason` (one script)."""
        done = self._run(
            "set_enabled",
            [self._key("ep", endpoint_id)],
            [
                tenant,
                endpoint_id,
                "1" if enabled else "0",
                reason,
                period_ms,
                DELIVERY_RETENTION_MS,
                PREFIX,
                concurrency,
                self.clock.shift_ms,
            ],
        )
        return bool(done == 1)

    def secrets(self) -> list[tuple[str, str, str]]:
        """Every endpoint's (id, secret, previous secret) as stored."""
        found: list[tuple[str, str, str]] = []
        for key in self.client.scan_iter(match=self._key("ep", "*"), count=500):
            row = self.client.hmget(key, ("id", "secret", "previous_secret"))
            if row[0] is not None:
                found.append(tuple(v.decode() if v else "" for v in row))  # type: ignore[arg-type]
        return sorted(found)

    def replace_secrets(self, endpoint_id: str, old: tuple[str, str], new: tuple[str, str]) -> bool:
        """Replace an endpoint's (secret, previous secret) if they are still `old`."""
        done = self._run("replace_secrets", [self._key("ep", endpoint_id)], [*old, *new])
        return bool(done == 1)

    def rotate(self, tenant: str, endpoint_id: str, secret: str, keep_ms: int) -> bool:
        """Replace an endpoint's secret; the old one signs too for `keep_ms`."""
        done = self._run(
            "rotate",
            [self._key("ep", endpoint_id)],
            [tenant, secret, keep_ms, self.clock.shift_ms],
        )
        return bool(done == 1)

    def add_deliveries(
        self, deliveries: list[NewDelivery], period_ms: int, concurrency: int
    ) -> None:
        """Store pending deliveries, due now (one script for all of them)."""
        if not deliveries:
            return
        keys: list[str | int] = [self._key("pending")]
        args: list[str | int] = [
            period_ms,
            DELIVERY_RETENTION_MS,
            LISTED_PER_TENANT,
            self.clock.shift_ms,
            PREFIX,
            concurrency,
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

    def retry(self, tenant: str, delivery_id: str, period_ms: int, concurrency: int) -> bool:
        """Make one of the tenant's deliveries pending and due now, for another period."""
        done = self._run(
            "retry",
            [self._key("d", delivery_id), self._key("pending")],
            [
                tenant,
                delivery_id,
                period_ms,
                DELIVERY_RETENTION_MS,
                self.clock.shift_ms,
                PREFIX,
                concurrency,
            ],
        )
        return bool(done == 1)

    def claim(
        self, limit: int, lease_ms: int, concurrency: int, skip: Sequence[str] = ()
    ) -> list[Claim]:
        """Lease up to `limit` due deliveries, fairly (one script)."""
        rows = self._run(
            "claim", [], [limit, lease_ms, concurrency, PREFIX, self.clock.shift_ms, *skip]
        )
        claims = []
        for row in rows:
            values = [part.decode() for part in row]
            claims.append(
                Claim(
                    values[0],
                    values[1],
                    values[2],
                    values[3],
                    values[4],
                    values[5],
                    values[6],
                    int(values[7] or 0),
                    int(values[8] or 0),
                )
            )
        return claims

    def finish(
        self, outcomes: Sequence[Outcome], concurrency: int, disable_after_ms: int, reason: str
    ) -> list[Finished]:
        """Record what came of claimed deliveries (one script)."""
        if not outcomes:
            return []
        args: list[str | int] = [
            PREFIX,
            self.clock.shift_ms,
            DELIVERY_RETENTION_MS,
            concurrency,
            disable_after_ms,
            reason,
        ]
        for outcome in outcomes:
            args += [
                outcome.id,
                outcome.endpoint_id,
                outcome.kind,
                "" if outcome.status_code is None else outcome.status_code,
                outcome.error,
                outcome.delay_ms,
            ]
        rows = self._run("finish", [], args)
        return [Finished(row[0].decode(), row[1].decode(), row[2] == b"1") for row in rows]

    def reap(self, limit: int, concurrency: int) -> int:
        """Put back up to `limit` deliveries whose lease ran out (one script)."""
        return int(self._run("reap", [], [PREFIX, self.clock.shift_ms, limit, concurrency]))

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
