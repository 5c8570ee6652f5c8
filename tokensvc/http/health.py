"""Health endpoints: liveness (`/healthz`) and readiness (`/readyz`), never behind auth."""

import logging
import threading
import time

from flask import Blueprint

from ..context import service_state
from ..errors import ApiError, error_response

log = logging.getLogger(__name__)

#: Its routes are registered from the route table (routes.py).
bp = Blueprint("health", __name__)

READINESS_CACHE_SECONDS = 5.0
PROBE_ROOM = "tokensvc-readiness-probe"


def healthz():
    """The process is up and serving; LiveKit is not called."""
    return {"status": "ok"}


def readyz():
    """Settings are usable, LiveKit and the storage answer, the storage will not forget and this
    instance's clock agrees with it (result cached a few seconds)."""
    problem = service_state().readiness.problem()
    if problem is None:
        return {"status": "ready"}
    code, message = problem
    return error_response(503, code, message)


class Readiness:
    """Asks LiveKit one cheap question (ListRooms of one name) at most every few seconds, and
    never twice at once: while a check runs, every other caller gets the last result at once
    (only the very first check, with no result yet, is waited for)."""

    def __init__(self, issuer, cache_seconds: float = READINESS_CACHE_SECONDS, observe=None):
        """Check through `issuer`, the service that needs LiveKit; tell `observe` (the metrics)
        the clock skew measured."""
        self.issuer = issuer
        self.observe = observe
        self.cache_seconds = cache_seconds
        self._state = threading.Condition()
        self._checking = False
        self._checked_at: float | None = None
        self._problem: tuple[str, str] | None = None

    def problem(self):
        """Return None when ready, else (code, message) naming what is wrong (no secrets)."""
        with self._state:
            if self._checked_at is not None and (
                self._checking or time.monotonic() - self._checked_at <= self.cache_seconds
            ):
                return self._problem
            if self._checking:
                self._state.wait_for(lambda: not self._checking)
                return self._problem
            self._checking = True
        problem = ("livekit_error", "the readiness check failed")
        try:
            problem = self._check()
        finally:
            with self._state:
                self._problem, self._checked_at, self._checking = problem, time.monotonic(), False
                self._state.notify_all()
        return problem

    def _check(self):
        """Settings present; with the ownership record, one storage read, a check of the
        storage's continuity (a loss starts the quarantine; a Redis that may evict is not
        ready) and this instance's clock within CLOCK_SKEW_MAX of the storage's (first: a skewed
        clock is also why LiveKit would refuse the service's calls); then one ListRooms call.
        A failure becomes its code and message."""
        try:
            rooms = self.issuer.require_livekit()
            ownership = self.issuer.ownership
            if ownership is not None:
                ownership.holds.get(PROBE_ROOM)
                problem = ownership.holds.check_continuity().problem
                if problem:
                    return ("storage_unavailable", problem)
                problem = self._clock_problem(ownership)
                if problem:
                    return problem
            rooms.find_room(PROBE_ROOM)
        except ApiError as error:
            return (error.error_code, error.description)
        return None

    def _clock_problem(self, ownership):
        """(code, message) when this instance's clock is off the storage's by more than
        CLOCK_SKEW_MAX (with a warning and the metric), else None."""
        skew = ownership.clock_skew_ms() / 1000
        if self.observe is not None:
            self.observe.clock_skewed(skew)
        allowed = self.issuer.settings.clock_skew_max
        if abs(skew) <= allowed:
            return None
        message = (
            f"this instance's clock is {abs(skew):.1f} s "
            f"{'behind' if skew > 0 else 'ahead of'} the storage's (CLOCK_SKEW_MAX is "
            f"{allowed:g} s)"
        )
        log.warning("not ready: %s", message)
        return ("clock_skew", message)
