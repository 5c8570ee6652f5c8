"""A synchronous LiveKit RoomService client: Twirp over a thread-safe keep-alive connection pool.

The service is a synchronous WSGI app, so it calls LiveKit's server API directly: protobuf
messages from `livekit-protocol`, POSTed with urllib3, with the server-API token from
`livekit-api`'s `AccessToken`, signed once and renewed long before it expires. Each call is
bounded by `timeout` seconds in all (connect and read, both attempts).
"""

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from datetime import timedelta
from urllib.parse import urlsplit

import urllib3
from google.protobuf.message import DecodeError, Message
from livekit import api
from livekit.protocol import models
from livekit.protocol import room as room_pb
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from ..errors import (
    ApiError,
    LiveKitError,
    LiveKitNotFound,
    LiveKitTimeout,
    LiveKitUnavailable,
    LiveKitUnreached,
)

log = logging.getLogger(__name__)

#: The service's own server-API token (roomList, roomCreate): signed once, renewed hourly.
SERVER_TOKEN_TTL = timedelta(hours=6)
SERVER_TOKEN_RENEW_SECONDS = 3600.0
SCHEMES = {"ws": "http", "wss": "https", "http": "http", "https": "https"}
#: The calls made in this context (a thread, or a greenlet under gevent), by client (its id):
#: nothing is made for a context that never calls (a gevent `threading.local` made its storage
#: on each new connection's first use, about 5 µs on every such request).
CALLS: ContextVar[dict[int, int] | None] = ContextVar("tokensvc_livekit_calls", default=None)
#: The identity (and topic) of the reconciliation's probe: no participant of the service's has it.
PROBE_IDENTITY = "tokensvc.probe"


class RoomServiceClient:
    """Blocking calls to LiveKit's RoomService, safe from many threads and across `fork`."""

    def __init__(self, url: str, api_key: str, api_secret: str, timeout: float, observe=None):
        """Remember where and how to call; connections open on the first call. `observe`, when
        given, is told of every call: `observe(method, outcome code or "ok", seconds)`."""
        parts = urlsplit(url)
        self.host = parts.netloc
        self._base = f"{SCHEMES[parts.scheme]}://{parts.netloc}"
        self._path = f"{parts.path.rstrip('/')}/twirp/livekit.RoomService/"
        self._api_key, self._api_secret = api_key, api_secret
        self._timeout = timeout
        self._lock = threading.Lock()
        self._headers_now: dict[str, str] = {}
        self._renew_at = 0.0
        self._admin: dict[str, tuple[float, dict]] = {}  # room -> (signed again after, headers)
        self._pool: urllib3.HTTPConnectionPool | None = None
        self._pid: int | None = None
        self._observe = observe
        #: Measures this instance's clock against the storage's (storage minus instance, ms),
        #: when the service has a storage: a 401 that the skew explains names the clock.
        self.clock_skew: Callable[[], int] | None = None

    def find_room(self, name: str):
        """Return the room called `name` as the store holds it, or None (ListRooms)."""
        answer = self._call("ListRooms", room_pb.ListRoomsRequest(names=[name]))
        return next((room for room in answer.rooms if room.name == name), None)

    def create_room(self, request: "api.CreateRoomRequest"):
        """Get or create a room and return the live room (CreateRoom)."""
        return self._call("CreateRoom", request)

    def list_rooms(self, names: list[str]):
        """Return the rooms the store holds among `names` (ListRooms; never every room)."""
        if not names:
            return []
        return list(self._call("ListRooms", room_pb.ListRoomsRequest(names=names)).rooms)

    def every_room(self):
        """Every room LiveKit lists (ListRooms with no names): `storage init` (whether a
        deployment has an earlier life) and the reconciliation's one call per sweep."""
        return list(self._call("ListRooms", room_pb.ListRoomsRequest()).rooms)

    def reaches(self, room: str) -> bool:
        """Whether the node hosting `room` answers: SendData with no payload to an identity no
        participant has, routed by LiveKit to that node (the store alone cannot tell: a dead
        node's rooms and participants stay listed). LiveKit's refusal, 5xx or timeout: False;
        no connection to LiveKit at all: LiveKitUnreached."""
        request = room_pb.SendDataRequest(
            room=room, data=b"", destination_identities=[PROBE_IDENTITY], topic=PROBE_IDENTITY
        )
        try:
            self._call("SendData", request, admin_of=room)
        except LiveKitUnreached:
            raise
        except (LiveKitNotFound, LiveKitUnavailable, LiveKitTimeout):
            return False
        except LiveKitError as exc:
            if getattr(exc, "livekit_status", 0) >= 500:  # LiveKit's own routing failed
                return False
            raise
        return True

    def delete_room(self, room: str) -> None:
        """End a room for everyone (DeleteRoom); LiveKitNotFound when there is none."""
        self._call("DeleteRoom", room_pb.DeleteRoomRequest(room=room))

    def list_participants(self, room: str):
        """The participants of a room (ListParticipants, with a token scoped to that room)."""
        request = room_pb.ListParticipantsRequest(room=room)
        return list(self._call("ListParticipants", request, admin_of=room).participants)

    def get_participant(self, room: str, identity: str):
        """One participant (GetParticipant); LiveKitNotFound when it is not in the room."""
        request = room_pb.RoomParticipantIdentity(room=room, identity=identity)
        return self._call("GetParticipant", request, admin_of=room)

    def remove_participant(self, room: str, identity: str) -> None:
        """Disconnect a participant (RemoveParticipant); it can rejoin with a token it holds."""
        request = room_pb.RoomParticipantIdentity(room=room, identity=identity)
        self._call("RemoveParticipant", request, admin_of=room)

    def mute_track(self, room: str, identity: str, track_sid: str, muted: bool):
        """Mute or unmute one published track (MutePublishedTrack); return the track."""
        request = room_pb.MuteRoomTrackRequest(
            room=room, identity=identity, track_sid=track_sid, muted=muted
        )
        return self._call("MutePublishedTrack", request, admin_of=room).track

    def update_permission(self, room: str, identity: str, permission):
        """Change a connected participant's permissions live (UpdateParticipant)."""
        request = room_pb.UpdateParticipantRequest(
            room=room, identity=identity, permission=permission
        )
        return self._call("UpdateParticipant", request, admin_of=room)

    def send_data(self, room: str, data: bytes, topic: str, identities=()) -> None:
        """Send a reliable data message on `topic` to some participants of `room` (every one
        when `identities` is empty); LiveKit delivers it to active participants only."""
        request = room_pb.SendDataRequest(
            room=room,
            data=data,
            kind=models.DataPacket.Kind.RELIABLE,
            destination_identities=list(identities),
            topic=topic,
        )
        self._call("SendData", request, admin_of=room)

    def take_call_count(self) -> int:
        """Return how many calls this thread or greenlet made since the last time it asked, and
        reset."""
        counts = CALLS.get()
        return counts.pop(id(self), 0) if counts else 0

    def close(self) -> None:
        """Close the pooled connections (a later call opens new ones)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None and self._pid == os.getpid():
            pool.close()

    def _call(self, method: str, request, admin_of: str | None = None):
        """POST one RoomService call and return the decoded answer, or raise 502/503/504.
        `admin_of`: the call needs `roomAdmin` on that one room, with a token signed for it."""
        counts = CALLS.get()
        if counts is None:
            counts = {}
            CALLS.set(counts)
        counts[id(self)] = counts.get(id(self), 0) + 1
        if self._observe is None:
            return self._round_trip(method, request, admin_of)
        started, outcome = time.perf_counter(), "ok"
        try:
            return self._round_trip(method, request, admin_of)
        except ApiError as exc:
            outcome = exc.error_code
            raise
        finally:
            self._observe(method, outcome, time.perf_counter() - started)

    def _round_trip(self, method: str, request, admin_of: str | None = None):
        """The call itself: POST with one retry on a stale connection, then decode."""
        path = self._path + method
        headers = self._headers() if admin_of is None else self._admin_headers(admin_of)
        body = request.SerializeToString()
        deadline = time.monotonic() + self._timeout
        for attempt in (1, 2):
            timeout = urllib3.Timeout(total=max(deadline - time.monotonic(), 0.001))
            try:
                answer = self._connections().urlopen(
                    "POST", path, body=body, headers=headers, timeout=timeout, retries=False
                )
                break
            except NewConnectionError as exc:  # a subclass of ConnectTimeoutError: first
                reason = _connect_failure(exc)
                log.warning("LiveKit at %s could not be reached: %s", self.host, reason)
                raise LiveKitUnreached(f"LiveKit could not be reached ({reason})") from None
            except ConnectTimeoutError:
                raise LiveKitUnreached("LiveKit could not be reached (connect timed out)") from None
            except ReadTimeoutError:
                raise LiveKitTimeout(f"LiveKit did not answer within {self._timeout:g} s") from None
            except ProtocolError:
                if attempt == 1:  # a kept-alive connection LiveKit had closed: once more
                    log.debug("LiveKit closed a kept-alive connection; retrying once")
                    continue
                raise self._unreachable("connection dropped") from None
            except SSLError:  # wss:// against a plain server, or a certificate refused
                raise self._unreachable(f"TLS failed: {SCHEME_HINT}") from None
            except HTTPError as exc:
                raise self._unreachable(type(exc).__name__) from None
        if answer.status != 200:
            code = _twirp_code(answer.data)
            if code == "not_found":
                raise LiveKitNotFound(f"LiveKit found no such {method} target")
            if answer.status == 401:  # LiveKit refused the service's own API token
                hint = self._refusal_hint()
                log.warning(
                    "LiveKit at %s refused the service's API key (HTTP 401 to %s): %s",
                    self.host,
                    method,
                    hint,
                )
                raise LiveKitError(f"LiveKit refused the service's API key (HTTP 401): {hint}")
            log.warning(
                "LiveKit at %s answered %s %s to %s", self.host, answer.status, code, method
            )
            failed = LiveKitError(f"LiveKit answered HTTP {answer.status} ({code})")
            failed.livekit_status = answer.status  # type: ignore[attr-defined]
            raise failed
        try:
            return RESPONSES[method].FromString(answer.data)
        except DecodeError:
            log.warning(
                "LiveKit at %s answered %s with a body that is not protobuf", self.host, method
            )
            raise LiveKitError("LiveKit answered with a body that is not a valid answer") from None

    def _refusal_hint(self) -> str:
        """Why LiveKit refused the service's API token: this instance's clock when its skew
        against the storage's explains it (LiveKit judges the token's times on its own clock,
        with about 60 s of leeway), else the key pair."""
        if self.clock_skew is None:
            return KEY_HINT
        try:
            skew_ms = self.clock_skew()
        except Exception:  # the storage failed too (logged by it): the usual hint
            return KEY_HINT
        if abs(skew_ms) < SKEW_EXPLAINS_401_MS:
            return KEY_HINT
        return (
            f"this instance's clock is {abs(skew_ms) / 1000:.0f} s "
            f"{'behind' if skew_ms > 0 else 'ahead of'} the storage's, and LiveKit judges the "
            f"service's API token on its own clock: set this host's clock right (NTP); "
            f"the key pair is not the cause"
        )

    def _unreachable(self, why: str) -> LiveKitUnavailable:
        """Log and build the 503 for a transport failure (a TLS failure says what to check)."""
        log.warning("LiveKit at %s could not be reached: %s", self.host, why)
        if SCHEME_HINT in why:
            return LiveKitUnavailable(f"LiveKit could not be reached ({why})")
        return LiveKitUnavailable("LiveKit could not be reached")

    def _connections(self) -> urllib3.HTTPConnectionPool:
        """This process's pool, made on first use (a forked child never uses its parent's)."""
        pool = self._pool
        if self._pid != os.getpid() or pool is None:
            with self._lock:
                pool = self._pool
                if self._pid != os.getpid() or pool is None:
                    pool = urllib3.connection_from_url(self._base, maxsize=16, block=False)
                    self._pool, self._pid = pool, os.getpid()
        return pool

    def _headers(self) -> dict:
        """The request headers, with one server-API token renewed an hour after it was signed."""
        now = time.monotonic()
        if now >= self._renew_at:
            grants = api.VideoGrants(room_list=True, room_create=True)
            token = api.AccessToken(self._api_key, self._api_secret).with_grants(grants)
            bearer = "Bearer " + token.with_ttl(SERVER_TOKEN_TTL).to_jwt()
            self._headers_now = {"Content-Type": "application/protobuf", "Authorization": bearer}
            self._renew_at = now + SERVER_TOKEN_RENEW_SECONDS
        return self._headers_now

    def _admin_headers(self, room: str) -> dict:
        """Headers with a one-minute token of `roomAdmin` on `room` alone, signed afresh once
        ADMIN_TOKEN_REUSE_S have passed (the sweeper probes every live room at each sweep: a
        signature per call was a third of a probe's CPU); never returned or logged."""
        now = time.monotonic()
        kept = self._admin.get(room)
        if kept is not None and now < kept[0]:
            return kept[1]
        grants = api.VideoGrants(room_admin=True, room=room)
        token = api.AccessToken(self._api_key, self._api_secret).with_grants(grants)
        bearer = "Bearer " + token.with_ttl(ADMIN_TOKEN_TTL).to_jwt()
        headers = {"Content-Type": "application/protobuf", "Authorization": bearer}
        if len(self._admin) >= ADMIN_TOKENS_KEPT:
            self._admin.clear()
        self._admin[room] = (now + ADMIN_TOKEN_REUSE_S, headers)
        return headers


#: A room-scoped admin token lives one minute (margin for clock skew) and is used for at most
#: its first half; at most this many rooms' tokens are kept per client.
ADMIN_TOKEN_TTL = timedelta(minutes=1)
ADMIN_TOKEN_REUSE_S = 30.0
ADMIN_TOKENS_KEPT = 4096
#: What to check when LiveKit refuses the service's API token (HTTP 401).
KEY_HINT = "check LIVEKIT_API_KEY/LIVEKIT_API_SECRET"
#: A skew against the storage's clock from which a 401 is the clock's doing: LiveKit's leeway
#: (60 s) less what LiveKit's own clock may differ from the storage's.
SKEW_EXPLAINS_401_MS = 50_000
#: What to check when TLS fails: usually wss:// against a plain server, or the reverse.
SCHEME_HINT = "is LIVEKIT_URL's scheme right (ws vs wss)?"

RESPONSES: dict[str, type[Message]] = {
    "ListRooms": room_pb.ListRoomsResponse,
    "CreateRoom": api.Room,
    "DeleteRoom": room_pb.DeleteRoomResponse,
    "ListParticipants": room_pb.ListParticipantsResponse,
    "GetParticipant": api.ParticipantInfo,
    "RemoveParticipant": room_pb.RemoveParticipantResponse,
    "MutePublishedTrack": room_pb.MuteRoomTrackResponse,
    "UpdateParticipant": api.ParticipantInfo,
    "SendData": room_pb.SendDataResponse,
}


def _connect_failure(error: NewConnectionError) -> str:
    """What stopped a connection: the name did not resolve, or the connection was refused."""
    if isinstance(error, NameResolutionError):
        return "name not resolved"
    if isinstance(error.__context__, ConnectionRefusedError) or "refused" in str(error).lower():
        return "connection refused"
    return "connection failed"


def _twirp_code(data: bytes) -> str:
    """The Twirp error code of an error body, or "unknown" (plain-text 401s have none)."""
    try:
        code = json.loads(data).get("code")
    except (ValueError, AttributeError):
        return "unknown"
    return code if isinstance(code, str) else "unknown"
