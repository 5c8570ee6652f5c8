"""Rate limits: token requests per tenant, new rooms per tenant, anonymous requests per address.

Limits are written in flask-limiter's syntax (`60/minute`, `10/second; 500/hour`) and counted by
`limits`, the library flask-limiter is built on, in fixed windows: in process memory
(`memory://`, so each gunicorn worker counts on its own) or in Redis (`redis://...`, exact across
workers and instances). A new room is counted only once it is really created: the limit is
tested before `CreateRoom` and hit after it (so concurrent creates by one tenant may pass it by
the number in flight). When the storage cannot be reached the limits fail closed (503
`rate_limit_unavailable`) unless `RATE_LIMIT_FAIL_OPEN` is on; either way each failure is logged.
No Flask here: the views and the service call it.
"""

import logging
import math
import time
from urllib.parse import urlsplit

from limits import parse_many, storage, strategies

from .config import Settings
from .errors import RateLimited, RateLimitUnavailable

log = logging.getLogger(__name__)


class RateLimits:
    """The configured limits and the storage that counts them."""

    def __init__(self, settings: Settings):
        """Parse the limits and open the storage (Redis connects on first use)."""
        self.per_tenant = _limits(settings.rate_limit_per_tenant)
        self.room_creates = _limits(settings.rate_limit_room_creates_per_tenant)
        self.per_ip = _limits(settings.rate_limit_per_ip)
        self.fail_open = settings.rate_limit_fail_open
        self.where = urlsplit(settings.rate_limit_storage_url).hostname or "memory"
        self.storage = storage.storage_from_string(settings.rate_limit_storage_url)
        self.counter = strategies.FixedWindowRateLimiter(self.storage)

    def hit_request(self, tenant: str | None, client: str | None) -> None:
        """Count one token request for its tenant, or for its address when anonymous; raise
        429 once a limit is used up."""
        if tenant is not None:
            self._hit(self.per_tenant, "tenant", tenant)
        else:
            self._hit(self.per_ip, "ip", client or "unknown")

    def test_room_create(self, tenant: str) -> None:
        """Raise 429 if `tenant` may not create another room now (counts nothing)."""
        for limit in self.room_creates:
            if not self._storage_call(self.counter.test, limit, "room-create", tenant):
                raise self._limited(limit, "room-create", tenant, "new rooms")

    def count_room_create(self, tenant: str) -> None:
        """Count a room `tenant` has just created."""
        for limit in self.room_creates:
            self._storage_call(self.counter.hit, limit, "room-create", tenant)

    def _hit(self, limits, *key) -> None:
        """Count one against each of `limits` for `key`; raise 429 on the first one used up."""
        for limit in limits:
            if not self._storage_call(self.counter.hit, limit, *key):
                raise self._limited(limit, *key, "requests")

    def _limited(self, limit, kind, who, what) -> RateLimited:
        """The 429 for `limit`, with the seconds until its window resets."""
        stats = self._storage_call(self.counter.get_window_stats, limit, kind, who, allowed=None)
        wait = math.ceil(stats.reset_time - time.time()) if stats else 1
        return RateLimited(
            f"rate limit of {limit} {what} reached; retry later", retry_after=max(wait, 1)
        )

    def _storage_call(self, method, *args, allowed=True):
        """Call the storage; on failure log it, then fail open (return `allowed`) or closed
        (503)."""
        try:
            return method(*args)
        except Exception as exc:  # redis-py, limits and socket errors alike
            state = "open: allowing" if self.fail_open else "closed: refusing"
            log.warning(
                "rate limit storage at %s failed (%s); failing %s the request",
                self.where,
                type(exc).__name__,
                state,
            )
            if self.fail_open:
                return allowed
            raise RateLimitUnavailable() from None


def _limits(text: str | None) -> list:
    """The parsed limits of one setting (none when unset)."""
    return parse_many(text) if text else []
