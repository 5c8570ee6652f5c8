"""A synchronous LiveKit RoomService client: one event loop thread and one HTTP session per process.

`livekit-api` is asyncio-only and its `LiveKitAPI` must live on one running loop. A WSGI worker
is synchronous and may serve from several threads, so each process gets one background loop
thread, created on first use (never in a gunicorn master that forks it away), and every call is
handed to it and waited for with a bound of `timeout` seconds.
"""

import asyncio
import atexit
import concurrent.futures
import logging
import os
import threading
import time
import weakref
from datetime import timedelta

import aiohttp
from google.protobuf.message import DecodeError
from livekit import api

from .errors import LiveKitError, LiveKitTimeout, LiveKitUnavailable

log = logging.getLogger(__name__)

#: The service's own server-API token: minted once, renewed long before it expires.
SERVER_TOKEN_TTL = timedelta(hours=6)
SERVER_TOKEN_RENEW_SECONDS = 3600.0

_CLIENTS = weakref.WeakSet()


class RoomServiceClient:
    """Blocking calls to LiveKit's RoomService, safe from many threads and across `fork`."""

    def __init__(self, url: str, api_key: str, api_secret: str, timeout: float):
        """Remember where and how to call; connect lazily on the first call."""
        self._url = url
        self._api_key = api_key
        self._api_secret = api_secret
        self._timeout = timeout
        self._counter = threading.local()
        self._reset()
        _CLIENTS.add(self)

    def find_room(self, name: str):
        """Return the room called `name` as the store holds it, or None (ListRooms)."""
        request = api.ListRoomsRequest(names=[name])
        answer = self._call(lambda lk: lk.room.list_rooms(request))
        return next((room for room in answer.rooms if room.name == name), None)

    def create_room(self, request: "api.CreateRoomRequest"):
        """Get or create a room and return it as LiveKit holds it (CreateRoom)."""
        return self._call(lambda lk: lk.room.create_room(request))

    def list_rooms(self):
        """Return every live room (ListRooms with no names): the cheap readiness probe."""
        return list(self._call(lambda lk: lk.room.list_rooms(api.ListRoomsRequest())).rooms)

    def take_call_count(self) -> int:
        """Return how many calls this thread made since the last time it asked, and reset."""
        count = getattr(self._counter, "calls", 0)
        self._counter.calls = 0
        return count

    def close(self) -> None:
        """Close the HTTP session and stop the loop thread, if this process started them."""
        with self._lock:
            loop, session, thread = self._loop, self._session, self._thread
            owned = self._pid == os.getpid()
            self._reset(keep_lock=True)
        if not owned or loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(session.close(), loop).result(self._timeout)
        except Exception:  # closing is best effort; the process is going away
            log.debug("LiveKit client session did not close cleanly", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(self._timeout)
        if not thread.is_alive():
            loop.close()

    def _reset(self, keep_lock=False) -> None:
        """Forget the loop, thread and session (after close, or in a forked child)."""
        if not keep_lock:
            self._lock = threading.Lock()
        self._pid = None
        self._loop = None
        self._thread = None
        self._session = None
        self._api = None
        self._api_renew_at = 0.0

    def _running_loop(self):
        """Return this process's loop, starting it and the session on first use."""
        if self._pid == os.getpid():
            return self._loop
        with self._lock:
            if self._pid != os.getpid():
                self._start()
        return self._loop

    def _start(self) -> None:
        """Start the loop thread and open the HTTP session on it."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="livekit-client", daemon=True)
        thread.start()
        self._session = asyncio.run_coroutine_threadsafe(self._open(), loop).result()
        self._loop, self._thread = loop, thread
        self._pid = os.getpid()

    async def _open(self) -> aiohttp.ClientSession:
        """Create the keep-alive HTTP session (aiohttp needs it made inside the loop)."""
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))

    def _livekit(self) -> "api.LiveKitAPI":
        """Return the `LiveKitAPI` on the shared session, renewing its server token hourly.

        `livekit-api` would otherwise sign a fresh JWT for every call; one token with the two
        grants the service uses (roomList, roomCreate) is signed once and never leaves the process.
        Runs on the loop thread only, so it needs no lock.
        """
        now = time.monotonic()
        if self._api is None or now >= self._api_renew_at:
            grants = api.VideoGrants(room_list=True, room_create=True)
            token = (
                api.AccessToken(self._api_key, self._api_secret)
                .with_grants(grants)
                .with_ttl(SERVER_TOKEN_TTL)
                .to_jwt()
            )
            self._api = api.LiveKitAPI(
                self._url, token=token, session=self._session, failover=False
            )
            self._api_renew_at = now + SERVER_TOKEN_RENEW_SECONDS
        return self._api

    def _call(self, make_call):
        """Run one RoomService call on the loop and wait for it, bounded by the timeout.

        The call bounds itself (`_attempt`); waiting one more second here only guards against a
        loop that cannot run at all.
        """
        self._counter.calls = getattr(self._counter, "calls", 0) + 1
        future = asyncio.run_coroutine_threadsafe(self._attempt(make_call), self._running_loop())
        try:
            return future.result(self._timeout + 1.0)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise LiveKitTimeout(f"LiveKit did not answer within {self._timeout:g} s") from None

    async def _attempt(self, make_call):
        """Await the call, retrying once when a kept-alive connection turns out closed."""
        try:
            # livekit-api passes `timeout=None` to aiohttp, which switches the session's own
            # timeout off; so the bound is enforced here, around both attempts.
            async with asyncio.timeout(self._timeout):
                try:
                    return await make_call(self._livekit())
                except aiohttp.ServerDisconnectedError:
                    log.debug("LiveKit closed a kept-alive connection; retrying once")
                    return await make_call(self._livekit())
        except api.ServerError as exc:
            log.warning("LiveKit answered %s %s: %s", exc.status, exc.code, exc.message)
            raise LiveKitError(f"LiveKit answered HTTP {exc.status} ({exc.code})") from None
        except aiohttp.ConnectionTimeoutError:
            raise LiveKitUnavailable("LiveKit could not be reached (connect timed out)") from None
        except asyncio.TimeoutError:
            raise LiveKitTimeout(f"LiveKit did not answer within {self._timeout:g} s") from None
        except aiohttp.ClientConnectionError as exc:
            log.warning("LiveKit could not be reached: %s", type(exc).__name__)
            raise LiveKitUnavailable("LiveKit could not be reached") from None
        except (aiohttp.ClientError, DecodeError, ValueError) as exc:
            log.warning("LiveKit answered something unreadable: %s", type(exc).__name__)
            raise LiveKitError("LiveKit answered with a body that is not a valid answer") from None


def _forget_in_child() -> None:
    """After `fork`, make every client start its own loop instead of using the parent's."""
    for client in list(_CLIENTS):
        client._reset()


def _close_all() -> None:
    """Close every client at interpreter exit."""
    for client in list(_CLIENTS):
        client.close()


os.register_at_fork(after_in_child=_forget_in_child)
atexit.register(_close_all)
