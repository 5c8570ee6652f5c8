"""A store whose every call is timed, counted, and whose failures are turned into 503."""

import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from ..errors import ApiError, StorageUnavailable
from .clock import StorageClock

log = logging.getLogger(__name__)

#: Told of every call: (operation, outcome, seconds).
Observer = Callable[[str, str, float], None]


class Located(Protocol):
    """What every store has: where it is (for logs) and its clock."""

    where: str
    clock: StorageClock


Store = TypeVar("Store", bound=Located)


class ObservedHolds(Generic[Store]):
    """A store (holds, usage or webhooks) whose every call is timed, counted, and failures
    turned into 503."""

    def __init__(self, store: Store, observe: Observer | None = None) -> None:
        """Wrap `store`; `observe(operation, outcome, seconds)` is told of every call."""
        self.store = store
        self.where = store.where
        self.clock = store.clock
        self._observe = observe

    def __getattr__(self, operation: str) -> Callable[..., Any]:
        """Each store operation, wrapped."""
        method: Callable[..., Any] = getattr(self.store, operation)
        if operation == "close":
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            started, outcome = time.perf_counter(), "ok"
            try:
                return method(*args, **kwargs)
            except ApiError as exc:
                outcome = exc.error_code
                raise
            except Exception as exc:  # sqlite3, redis-py and socket errors alike
                outcome = "storage_unavailable"
                log.warning("storage at %s failed in %s (%s)", self.where, operation, describe(exc))
                raise StorageUnavailable() from None
            finally:
                if self._observe is not None:
                    self._observe(operation, outcome, time.perf_counter() - started)

        setattr(self, operation, call)  # made once: the next lookup finds it
        return call


def describe(exc: Exception) -> str:
    """An exception's kind, and SQLite's error name and message (they name no secret; a Redis
    error's message may quote its URL)."""
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", None)
        return f"{type(exc).__name__} {name}: {exc}" if name else f"{type(exc).__name__}: {exc}"
    return type(exc).__name__
