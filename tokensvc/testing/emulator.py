"""A LiveKit-compatible RoomService for development and tests. It is not a media server.

It speaks Twirp over HTTP as livekit-server does: `POST /twirp/livekit.RoomService/<Method>`
with protobuf or JSON bodies, HS256 bearer tokens checked for the grant each method needs,
Twirp JSON errors, `CreateRoom`, `ListRooms` by exact names, `UpdateRoomMetadata`, `DeleteRoom`,
`ListParticipants`, `GetParticipant` and `RemoveParticipant` (of the participants a test seats
with `add_participant`, in any state: nobody can join the emulator over the wire),
`MutePublishedTrack` and `UpdateParticipant` (always `not_found`), `SendData` (answered by the
room's node: `unavailable` once `kill_node` killed it), rooms that close after `empty_timeout`
unless someone is in them, and LiveKit's size limits. Switches inject faults (latency, Twirp
errors, a 200 with a malformed body, refused connections), and counters record every call, so
tests can assert what the service did over the wire.

Like livekit-server (pkg/service/roomservice.go, roommanager.go, roomallocator.go, localstore.go),
it keeps two views of each room, and its calls read and write them as the real server does:

- the **live room** (`rooms`): what `CreateRoom` answers from and what participants join. A
  `CreateRoom` for a live room returns it unchanged and touches nothing (`getOrCreateRoom`);
- the **store entry** (`store`): what `ListRooms` reads. A `CreateRoom` for a room that is not live
  goes through the allocator, which creates the entry or, when one exists, overwrites its metadata
  (when the request's is non-empty) and its timeouts and limit (when > 0), then makes it live;
- `UpdateRoomMetadata` needs the store entry, replaces the live room's metadata unconditionally,
  and re-writes the store only when the value changed; `DeleteRoom` needs the store entry and
  removes both; a live room that outlives `empty_timeout` closes and its store entry goes with it.

Two switches reproduce, without timing luck, what the real server does in the windows a test
cannot hit on purpose: `race_next_create` (two concurrent creates of one new room: the second
creator overwrites the store, whichever registered first keeps the live room, so the two views
disagree) and `add_stored_room` (an entry in the store with no live room, as after a node failure).
Participants are kept in the store as livekit-server's Redis store keeps them, with the room's
`num_participants`: `add_participant` seats one (state ACTIVE, or JOINING for one connected over
signal only; LiveKit sends no event for it), `drop_participant` lets one go silently (as when
its webhook is lost), `kill_node` kills the node hosting a room: the live room goes, its
store entry and participants stay listed, and calls routed to its node fail; and `rehost` lets a
live node host it again with the same sid.
"""

import asyncio
import secrets
import string
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import jwt
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from livekit.protocol import models
from livekit.protocol import room as room_pb

SERVICE_PREFIX = "/twirp/livekit.RoomService/"
MAX_NAME_BYTES = 256
MAX_METADATA_BYTES = 512 * 1024
MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_EMPTY_TIMEOUT = 300
DEFAULT_DEPARTURE_TIMEOUT = 20
TOKEN_LEEWAY = 60
CONTROL_PREFIX = "/emulator/"

#: HTTP status for each Twirp error code.
TWIRP_STATUS = {
    "invalid_argument": 400,
    "malformed": 400,
    "out_of_range": 400,
    "unauthenticated": 401,
    "permission_denied": 403,
    "not_found": 404,
    "bad_route": 404,
    "canceled": 408,
    "deadline_exceeded": 408,
    "already_exists": 409,
    "aborted": 409,
    "failed_precondition": 412,
    "resource_exhausted": 429,
    "unimplemented": 501,
    "unavailable": 503,
    "internal": 500,
    "unknown": 500,
    "dataloss": 500,
}


class TwirpError(Exception):
    """A Twirp error answer: code, message and optional metadata."""

    def __init__(self, code: str, msg: str, meta: dict | None = None):
        """Keep the Twirp code, message and metadata."""
        super().__init__(msg)
        self.code, self.msg, self.meta = code, msg, meta or {}

    def response(self) -> web.Response:
        """Render as Twirp does: JSON body, status by code."""
        body: dict = {"code": self.code, "msg": self.msg}
        if self.meta:
            body["meta"] = self.meta
        return web.json_response(body, status=TWIRP_STATUS.get(self.code, 500))


@dataclass
class RoomLife:
    """One room's life, for tests that must know who owned a name at a given moment."""

    name: str
    sid: str
    metadata: str
    created: float
    closed: float | None = None


@dataclass
class Faults:
    """Fault switches: applied to every RoomService call while set."""

    latency: float = 0.0
    error: str | None = None
    malformed: bool = False


@dataclass(frozen=True)
class RivalCreate:
    """A rival CreateRoom that the next create of a room races (see `race_next_create`)."""

    metadata: str
    live_winner: str


@dataclass(frozen=True)
class Method:
    """One RoomService method: its request and response types and the grant check."""

    request: type
    grant: str


METHODS = {
    "CreateRoom": Method(room_pb.CreateRoomRequest, "roomCreate"),
    "DeleteRoom": Method(room_pb.DeleteRoomRequest, "roomCreate"),
    "ListRooms": Method(room_pb.ListRoomsRequest, "roomList"),
    "UpdateRoomMetadata": Method(room_pb.UpdateRoomMetadataRequest, "roomAdmin"),
    "ListParticipants": Method(room_pb.ListParticipantsRequest, "roomAdmin"),
    "GetParticipant": Method(room_pb.RoomParticipantIdentity, "roomAdmin"),
    "RemoveParticipant": Method(room_pb.RoomParticipantIdentity, "roomAdmin"),
    "MutePublishedTrack": Method(room_pb.MuteRoomTrackRequest, "roomAdmin"),
    "UpdateParticipant": Method(room_pb.UpdateParticipantRequest, "roomAdmin"),
    "SendData": Method(room_pb.SendDataRequest, "roomAdmin"),
}


class LiveKitEmulator:
    """A RoomService on a loopback port, served from its own thread."""

    def __init__(self, host="127.0.0.1", port=0, keys=None):
        """Serve on `host:port` (0: any free port) accepting `keys` (API key -> secret)."""
        self.host = host
        self.port = port
        self.keys = dict(keys or {"devkey": "secret"})
        self.rooms: dict[str, models.Room] = {}  # live rooms
        self.store: dict[str, models.Room] = {}  # store entries
        self.participants: dict[str, dict[str, models.ParticipantInfo]] = {}  # by room, identity
        self.dead: set[str] = set()  # rooms whose node was killed
        self._rivals: dict[str, RivalCreate] = {}
        self.calls: Counter = Counter()
        #: The client's port of each call, in order: one port per connection the caller opened.
        self.client_ports: list[int] = []
        self.faults = Faults()
        self._after_call = {}
        self._verified = {}
        self._generation = 0
        self.history: list[RoomLife] = []
        #: Every SendData request answered, in order (nobody can join to receive them).
        self.sent_data: list[room_pb.SendDataRequest] = []
        self._lives: dict[str, RoomLife] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.accepting = False

    @property
    def url(self) -> str:
        """The HTTP URL of the server API."""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """The WebSocket form of the URL, as clients are given it."""
        return f"ws://{self.host}:{self.port}"

    def start(self) -> "LiveKitEmulator":
        """Start serving in a background thread; return self once the port is bound."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="livekit-emulator", daemon=True
        )
        self._thread.start()
        self._run(self._serve())
        return self

    def stop(self) -> None:
        """Stop serving and end the thread."""
        if self._loop is None:
            return
        assert self._runner is not None and self._thread is not None
        self._run(self._runner.cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
        self._loop = None

    def __enter__(self):
        """Start on entering a `with` block."""
        return self.start()

    def __exit__(self, *exc_info):
        """Stop on leaving a `with` block."""
        self.stop()

    def refuse_connections(self) -> None:
        """Close the listening socket and drop every open connection, as a dead server would."""
        self._run(self._close_site())

    def drop_connections(self) -> None:
        """Close every open (kept-alive) connection but keep listening, as a restarted proxy
        would."""
        self._run(self._abort_connections())

    def accept_connections(self) -> None:
        """Listen again on the same port after `refuse_connections` (no-op when listening)."""
        if not self.accepting:
            self._run(self._open_site())

    def reset(self) -> None:
        """Forget every room, call count and fault (and calls still in flight); accept again."""
        self.accept_connections()
        with self._lock:
            self._generation += 1
            self.rooms.clear()
            self.store.clear()
            self.participants.clear()
            self.dead.clear()
            self._rivals.clear()
            self.history.clear()
            self.sent_data.clear()
            self._lives.clear()
            self.calls.clear()
            self.client_ports.clear()
            self.faults = Faults()
            self._after_call.clear()

    def add_room(self, name: str, metadata: str = "", **options) -> models.Room:
        """Create a room directly, as another client of LiveKit would (not counted as a call)."""
        with self._lock:
            return self._create_room(
                room_pb.CreateRoomRequest(name=name, metadata=metadata, **options)
            )

    def add_stored_room(self, name: str, metadata: str = "", **options) -> models.Room:
        """Put a room in the store only, with no live room, as a failed node leaves it."""
        with self._lock:
            request = room_pb.CreateRoomRequest(name=name, metadata=metadata, **options)
            _check_name(name)
            self._close(name)
            return _copy(self._allocate(request))

    def add_participant(
        self, room: str, identity: str, state: str = "ACTIVE", attributes: dict | None = None
    ) -> models.ParticipantInfo:
        """Seat a participant in the live room `room` (made live from the store, or created
        empty, as a join's auto-create does), in `state` (ACTIVE, or JOINING: signal only), with
        `attributes`; replaces one of the same identity (DUPLICATE_IDENTITY). Sends nothing."""
        with self._lock:
            if self._live_room(room) is None:
                stored = self.store.get(room)
                if stored is None:
                    self._create_room(room_pb.CreateRoomRequest(name=room))
                else:
                    self._make_live(stored)
            now = time.time()
            participant = models.ParticipantInfo(
                sid="PA_" + "".join(secrets.choice(_SID_ALPHABET) for _ in range(12)),
                identity=identity,
                state=state,
                joined_at=int(now),
                joined_at_ms=int(now * 1000),
                attributes=attributes or {},
            )
            self.participants.setdefault(room, {})[identity] = participant
            self._count(room)
            return models.ParticipantInfo.FromString(participant.SerializeToString())

    def drop_participant(self, room: str, identity: str) -> bool:
        """A participant leaves and no event says so (a lost webhook); whether it was there."""
        with self._lock:
            found = self.participants.get(room, {}).pop(identity, None)
            self._count(room)
            return found is not None

    def participants_of(self, room: str) -> list[str]:
        """The identities LiveKit's store lists in `room`, sorted."""
        with self._lock:
            return sorted(self.participants.get(room, {}))

    def kill_node(self, room: str) -> None:
        """Kill the node hosting `room` (SIGKILL): no event; the live room is gone, its store
        entry (count included) and participants stay listed, calls routed to it fail. As on
        livekit-server 1.13 with two nodes on one Redis (measured): a call routed to the dead
        node (SendData, RemoveParticipant) fails `unavailable` "no response from servers", there
        after 3 s, here at once; ListParticipants through a live node lists the dead node's
        participants as ACTIVE for as long as one looks, and the count stays what the node last
        wrote, which may lag its participants (0 with two in)."""
        with self._lock:
            self._end_life(room)
            self.rooms.pop(room, None)
            self.dead.add(room)

    def rehost(self, room: str) -> models.Room:
        """A live node hosts the killed node's room again, as livekit-server does about 5 s
        after the kill at a CreateRoom or a join through a live node: the same sid, made live
        from its store entry; calls routed to it answer again. The dead node's participants stay
        listed beside the new ones, as livekit-server 1.13.5 lists them (measured), until
        `drop_participant` lets them go. Returns a copy of the room."""
        with self._lock:
            self.dead.discard(room)
            stored = self.store.get(room)
            if stored is None:
                raise KeyError(room)
            return self._make_live(stored)

    def race_next_create(self, name: str, rival_metadata: str, live_winner: str = "caller") -> None:
        """Make the next CreateRoom of the missing room `name` race a rival creator (metadata
        `rival_metadata`), as two concurrent creates do on livekit-server: both pass the allocator,
        the second overwriting the store, and `live_winner` ("caller" or "rival") keeps the live
        room that both are answered with. The views then disagree until the live room changes."""
        if live_winner not in ("caller", "rival"):
            raise ValueError("live_winner is 'caller' or 'rival'")
        with self._lock:
            self._rivals[name] = RivalCreate(rival_metadata, live_winner)

    def get_room(self, name: str) -> models.Room | None:
        """Return a copy of the live room called `name`, or None."""
        with self._lock:
            room = self._live_room(name)
            return None if room is None else _copy(room)

    def stored_room(self, name: str) -> models.Room | None:
        """Return a copy of the store entry called `name` (what ListRooms reads), or None."""
        with self._lock:
            self._live_room(name)  # a live room past its empty_timeout closes, store and all
            room = self.store.get(name)
            return None if room is None else _copy(room)

    def close_room(self, name: str) -> bool:
        """Close a room as LiveKit does when it empties out; True if it was live or stored."""
        with self._lock:
            if self._live_room(name) is None and name not in self.store:
                return False
            self._close(name)
            return True

    def owners_between(self, name: str, start: float, end: float) -> list[str]:
        """The metadata of every life of room `name` that overlapped [start, end] (epoch s)."""
        with self._lock:
            return [
                life.metadata
                for life in self.history
                if life.name == name
                and life.created <= end
                and (life.closed is None or life.closed >= start)
            ]

    def after_next_call(self, method: str, action) -> None:
        """Run `action()` once, right after the next `method` call is answered (e.g. a rival
        client creating the room between a service's ListRooms and its CreateRoom)."""
        with self._lock:
            self._after_call[method] = action

    def call_count(self, method: str | None = None) -> int:
        """Return how many calls reached the service for `method` (all methods when None),
        failed ones included."""
        with self._lock:
            return self.calls[method] if method else sum(self.calls.values())

    def _run(self, coroutine):
        """Run a coroutine on the server's loop and wait for it."""
        assert self._loop is not None, "the emulator is not started"
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _serve(self) -> None:
        """Build the aiohttp app and start listening."""
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await self._open_site()

    async def _open_site(self) -> None:
        """Listen on the configured port (remembering the one chosen when it was 0)."""
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await self._site.start()
        server = self._site._server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]
        self.accepting = True

    async def _close_site(self) -> None:
        """Stop listening and abort the open connections."""
        self.accepting = False
        assert self._site is not None
        await self._site.stop()
        await self._abort_connections()

    async def _abort_connections(self) -> None:
        """Abort every open connection."""
        assert self._runner is not None and self._runner.server is not None
        for handler in list(self._runner.server.connections):
            if handler.transport is not None:
                handler.transport.abort()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one HTTP request: a control call or a RoomService call."""
        if request.path.startswith(CONTROL_PREFIX):
            return await self._control(request)
        claims = self._authenticate(request.headers.get("Authorization"))
        if isinstance(claims, str):  # refused, in livekit-server's words
            return web.Response(status=401, text=claims)
        try:
            return await self._twirp(request, claims)
        except TwirpError as error:
            return error.response()

    def _authenticate(self, header: str | None) -> dict | str:
        """The API token's claims ({} without a header), or why it was refused (livekit-server's
        plain-text 401 body)."""
        if header is None:
            return {}
        scheme, _, token = header.partition(" ")
        if scheme != "Bearer" or not token:
            return "invalid authorization token"
        claims = self._verified.get(token)
        if claims is not None and claims["exp"] + TOKEN_LEEWAY > time.time():
            return claims
        claims = self._verify(token)
        if isinstance(claims, dict):
            if len(self._verified) > 1000:
                self._verified.clear()
            self._verified[token] = claims
        return claims

    def _verify(self, token: str) -> dict | str:
        """Verify an API token: HS256, a known key as `iss`, its secret, `exp` required; the
        claims, or the reason livekit-server gives (it quotes the token, as here)."""
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.InvalidTokenError:
            return "invalid authorization token"
        if issuer not in self.keys:
            return f"invalid API key: {issuer}"
        try:
            return jwt.decode(
                token,
                self.keys[issuer],
                algorithms=["HS256"],
                issuer=issuer,
                leeway=TOKEN_LEEWAY,
                options={"require": ["exp"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            reason = "token has invalid claims: token is expired"
        except jwt.InvalidSignatureError:
            reason = "token signature is invalid: signature is invalid"
        except (jwt.InvalidTokenError, TypeError):
            reason = "token is malformed"
        return f"invalid token: {token}, error: {reason}"

    async def _twirp(self, request: web.Request, claims: dict) -> web.Response:
        """Route, decode, authorise and answer one RoomService call."""
        method = METHODS.get(request.path.removeprefix(SERVICE_PREFIX))
        json_body = request.content_type == "application/json"
        if (
            request.method != "POST"
            or not request.path.startswith(SERVICE_PREFIX)
            or method is None
            or request.content_type not in ("application/json", "application/protobuf")
        ):
            raise TwirpError(
                "bad_route",
                f"no handler for path {request.path!r}",
                {"twirp_invalid_route": f"{request.method} {request.path}"},
            )
        body = await request.read()
        message = _decode(method.request, body, json_body)
        _authorise(claims.get("video") or {}, method.grant, getattr(message, "room", None))
        name = request.path.removeprefix(SERVICE_PREFIX)
        with self._lock:
            self.calls[name] += 1  # every call that reached the service, failed ones included
            transport = request.transport
            if transport is not None:
                self.client_ports.append(transport.get_extra_info("peername")[1])
        faults, generation = self.faults, self._generation
        if faults.latency:
            await asyncio.sleep(faults.latency)
        if faults.error:
            raise TwirpError(faults.error, "injected fault")
        with self._lock:
            if generation != self._generation:  # reset() while this call was delayed
                raise TwirpError("unavailable", "the emulator was reset during this call")
            answer = getattr(self, f"_{_snake(name)}")(message)
            after = self._after_call.pop(name, None)
        if after is not None:
            after()
        if faults.malformed:
            return web.Response(
                body=b"\xff\xfe not a protobuf message", content_type="application/protobuf"
            )
        return _encode(answer, json_body)

    def _create_room(self, request) -> models.Room:
        """CreateRoom: the live room unchanged if there is one; else allocate and make it live."""
        _check_name(request.name)
        _check_metadata(request.metadata)
        room = self._live_room(request.name)
        if room is not None:
            return _copy(room)
        rival = self._rivals.pop(request.name, None)
        if rival is None:
            return self._make_live(self._allocate(request))
        rival_request = room_pb.CreateRoomRequest(name=request.name, metadata=rival.metadata)
        first, second = (request, rival_request)
        if rival.live_winner == "rival":
            first, second = second, first
        live = self._make_live(self._allocate(first))
        self._allocate(second)  # the later creator finds the entry and overwrites the store only
        return live

    def _list_rooms(self, request) -> room_pb.ListRoomsResponse:
        """ListRooms: the store's entries, every one or those whose names match exactly."""
        self._expire_rooms()
        if request.names:
            rooms: Iterable[models.Room | None] = (
                self.store.get(name) for name in dict.fromkeys(request.names)
            )
        else:
            rooms = self.store.values()
        return room_pb.ListRoomsResponse(rooms=[_copy(room) for room in rooms if room])

    def _delete_room(self, request) -> room_pb.DeleteRoomResponse:
        """DeleteRoom: not_found for a room the store does not hold; else close it everywhere."""
        self._live_room(request.room)
        if request.room not in self.store:
            raise TwirpError("not_found", "requested room does not exist")
        self._close(request.room)
        return room_pb.DeleteRoomResponse()

    def _list_participants(self, request) -> room_pb.ListParticipantsResponse:
        """ListParticipants: the store's participants of the room, in every state."""
        self._live_room(request.room)
        if request.room not in self.store:
            raise TwirpError("not_found", "requested room does not exist")
        found = self.participants.get(request.room, {}).values()
        return room_pb.ListParticipantsResponse(participants=list(found))

    def _get_participant(self, request) -> models.ParticipantInfo:
        """GetParticipant: from the store; not_found for an identity not in the room."""
        found = self.participants.get(request.room, {}).get(request.identity)
        if found is None:
            raise TwirpError("not_found", "participant does not exist")
        return found

    def _remove_participant(self, request) -> room_pb.RemoveParticipantResponse:
        """RemoveParticipant: not_found for an identity the store does not list; routed to the
        room's node (a dead one fails), which disconnects it."""
        if request.identity not in self.participants.get(request.room, {}):
            raise TwirpError("not_found", "participant does not exist")
        if request.room in self.dead:
            raise TwirpError("unavailable", "no response from servers")
        self.participants[request.room].pop(request.identity)
        self._count(request.room)
        return room_pb.RemoveParticipantResponse()

    def _send_data(self, request) -> room_pb.SendDataResponse:
        """SendData: not_found for a room the store does not hold; routed to the room's node, so
        a room no live node hosts fails; else kept in `sent_data` (nobody can join the emulator
        to receive it)."""
        self._live_room(request.room)
        if request.room not in self.store:
            raise TwirpError("not_found", "requested room does not exist")
        if request.room in self.dead or request.room not in self.rooms:
            raise TwirpError("unavailable", "no response from servers")
        self.sent_data.append(request)
        return room_pb.SendDataResponse()

    def _no_participant(self, request):
        """A participant call the emulator does not apply: no identity is found."""
        raise TwirpError("not_found", "participant does not exist")

    _mute_published_track = _update_participant = _no_participant

    def _count(self, room: str) -> None:
        """Write the room's participant count to its live room and store entry (lock held)."""
        count = len(self.participants.get(room, {}))
        for view in (self.rooms, self.store):
            if room in view:
                view[room].num_participants = count

    def _update_room_metadata(self, request) -> models.Room:
        """UpdateRoomMetadata: replace the live room's metadata; the store follows on change."""
        _check_metadata(request.metadata)
        self._live_room(request.room)
        stored = self.store.get(request.room)
        if stored is None:
            raise TwirpError("not_found", "requested room does not exist")
        room = self.rooms.get(request.room)
        if room is None:
            self._make_live(stored)
            room = self.rooms[request.room]
        if room.metadata != request.metadata:
            room.metadata = request.metadata
            self.store[request.room] = _copy(room)
            self._end_life(request.room)
            self._record(room)
        return _copy(room)

    def _allocate(self, request) -> models.Room:
        """The allocator: store a new entry, or overwrite the existing one's metadata and options
        with the request's non-empty ones (lock held). Returns the entry itself."""
        stored = self.store.get(request.name)
        if stored is None:
            now = time.time()
            stored = models.Room(
                sid="RM_" + "".join(secrets.choice(_SID_ALPHABET) for _ in range(12)),
                name=request.name,
                empty_timeout=request.empty_timeout or DEFAULT_EMPTY_TIMEOUT,
                departure_timeout=request.departure_timeout or DEFAULT_DEPARTURE_TIMEOUT,
                max_participants=request.max_participants,
                creation_time=int(now),
                creation_time_ms=int(now * 1000),
                metadata=request.metadata,
            )
            self.store[request.name] = stored
            return stored
        if request.metadata:
            stored.metadata = request.metadata
        for option in ("empty_timeout", "departure_timeout", "max_participants"):
            if getattr(request, option) > 0:
                setattr(stored, option, getattr(request, option))
        return stored

    def _make_live(self, stored: models.Room) -> models.Room:
        """Start the live room from a store entry (lock held); return a copy of it."""
        room = _copy(stored)
        now = time.time()
        room.creation_time, room.creation_time_ms = int(now), int(now * 1000)
        self.rooms[room.name] = room
        self._record(room)
        return _copy(room)

    def _live_room(self, name: str) -> models.Room | None:
        """Return the live room called `name`, closing it first if its time is up (lock held)."""
        room = self.rooms.get(name)
        if room is not None and not self.participants.get(name) and _expired(room, now_ms()):
            self._close(name)
            return None
        return room

    def _expire_rooms(self) -> None:
        """Close every live room nobody joined within its `empty_timeout` (lock held)."""
        now = now_ms()
        for name in [
            name
            for name, room in self.rooms.items()
            if not self.participants.get(name) and _expired(room, now)
        ]:
            self._close(name)

    def _record(self, room: models.Room) -> None:
        """Start a new life in the history: a room made live, or its metadata replaced (lock
        held)."""
        life = RoomLife(room.name, room.sid, room.metadata, time.time())
        self.history.append(life)
        self._lives[room.name] = life

    def _end_life(self, name: str) -> None:
        """End the room's current life in the history (lock held)."""
        life = self._lives.pop(name, None)
        if life is not None:
            life.closed = time.time()

    def _close(self, name: str) -> None:
        """Close the room: its live room and its store entry go, as LiveKit deletes by name."""
        self._end_life(name)
        self.rooms.pop(name, None)
        self.store.pop(name, None)
        self.participants.pop(name, None)
        self.dead.discard(name)

    async def _control(self, request: web.Request) -> web.Response:
        """The emulator's own control API (not part of LiveKit), for out-of-process tests."""
        action = request.path.removeprefix(CONTROL_PREFIX)
        if action == "state" and request.method == "GET":
            with self._lock:
                self._expire_rooms()
                views = {
                    view: {
                        n: json_format.MessageToDict(r, preserving_proto_field_name=True)
                        for n, r in rooms.items()
                    }
                    for view, rooms in (("rooms", self.rooms), ("store", self.store))
                }
                return web.json_response({**views, "calls": dict(self.calls)})
        if action == "faults" and request.method == "POST":
            self.faults = Faults(**await request.json())
            return web.json_response({"faults": vars(self.faults)})
        if action == "reset" and request.method == "POST":
            self.reset()
            return web.json_response({"reset": True})
        if action == "rooms" and request.method == "POST":
            document = await request.json()
            room = self.add_room(document["name"], document.get("metadata", ""))
            return web.json_response(
                json_format.MessageToDict(room, preserving_proto_field_name=True)
            )
        if action.startswith("rooms/") and request.method == "DELETE":
            return web.json_response({"closed": self.close_room(action.removeprefix("rooms/"))})
        return web.json_response({"error": "unknown control call"}, status=404)


_SID_ALPHABET = string.ascii_letters + string.digits


def now_ms() -> float:
    """The emulator's clock, ms."""
    return time.time() * 1000


def _snake(name: str) -> str:
    """CreateRoom -> create_room."""
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def _expired(room: models.Room, now_ms: float) -> bool:
    """Whether a room nobody joined has outlived its `empty_timeout`."""
    return now_ms - room.creation_time_ms > room.empty_timeout * 1000


def _copy(room: models.Room) -> models.Room:
    """Return an independent copy of a room, so answers never alias stored state."""
    copy = models.Room()
    copy.CopyFrom(room)
    return copy


def _decode(message_type, body: bytes, json_body: bool):
    """Decode a request body as protobuf or protojson (unknown JSON keys discarded)."""
    message = message_type()
    try:
        if json_body:
            json_format.Parse(body or b"{}", message, ignore_unknown_fields=True)
        else:
            message.ParseFromString(body)
    except (DecodeError, json_format.ParseError, ValueError, UnicodeDecodeError):
        raise TwirpError("malformed", "the request could not be decoded") from None
    return message


def _encode(message, json_body: bool) -> web.Response:
    """Encode an answer in the request's encoding (protojson: proto names, unpopulated fields)."""
    if json_body:
        text = json_format.MessageToJson(
            message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        return web.Response(text=text, content_type="application/json")
    return web.Response(body=message.SerializeToString(), content_type="application/protobuf")


def _authorise(video: dict, grant: str, room: str | None) -> None:
    """Refuse a call whose token lacks the grant (roomAdmin also needs the same room)."""
    allowed = video.get(grant) is True
    if grant == "roomAdmin":
        allowed = allowed and video.get("room") == room
    if not allowed:
        raise TwirpError("unauthenticated", "permissions denied")


def _check_name(name: str) -> None:
    """Apply LiveKit's room name rules."""
    if not name:
        raise TwirpError("invalid_argument", "room name is required")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise TwirpError(
            "invalid_argument",
            f"twirp error unknown: room name length exceeds limits: max length {MAX_NAME_BYTES}",
        )


def _check_metadata(metadata: str) -> None:
    """Apply LiveKit's room metadata size limit."""
    if len(metadata.encode("utf-8")) > MAX_METADATA_BYTES:
        raise TwirpError(
            "invalid_argument",
            f"metadata size exceeds limits {MAX_METADATA_BYTES}",
            {"argument": "metadata size exceeds limits"},
        )
