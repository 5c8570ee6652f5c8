"""Health endpoints: liveness (`/healthz`) and readiness (`/readyz`), never behind auth."""

import threading
import time

from flask import Blueprint

from .context import service_state
from .errors import ApiError, error_response

bp = Blueprint("health", __name__)

READINESS_CACHE_SECONDS = 5.0
PROBE_ROOM = "tokensvc-readiness-probe"


@bp.route("/healthz", methods=["GET", "HEAD"])
def healthz():
    """The process is up and serving; LiveKit is not called."""
    return {"status": "ok"}


@bp.get("/readyz")
def readyz():
    """Settings are usable and LiveKit answers a cheap call (result cached a few seconds)."""
    problem = service_state().readiness.problem()
    if problem is None:
        return {"status": "ready"}
    code, message = problem
    return error_response(503, code, message)


class Readiness:
    """Asks LiveKit one cheap question (ListRooms of one name) at most every few seconds, and
    never twice at once: while a check runs, every other caller gets the last result at once
    (only the very first check, with no result yet, is waited for)."""

    def __init__(self, issuer, cache_seconds: float = READINESS_CACHE_SECONDS):
        """Check through `issuer`, the service that needs LiveKit."""
        self.issuer = issuer
        self.cache_seconds = cache_seconds
        self._state = threading.Condition()
        self._checking = False
        self._checked_at = None
        self._problem = None

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
        """Settings present, one ListRooms call and one storage read; a failure becomes its code
        and message from the error table."""
        try:
            self.issuer.require_livekit().find_room(PROBE_ROOM)
            if self.issuer.holds is not None:
                self.issuer.holds.get(PROBE_ROOM)
        except ApiError as error:
            return (error.error_code, error.description)
        return None
