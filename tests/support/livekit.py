"""The real livekit-server for the behaviour suite, with a recording proxy in front of it.

The binary is found, never built, by `scripts/livekit-server --no-build` (`make test` builds it
first) or named by `TOKENSVC_LIVEKIT_SERVER`. `RealLiveKit` offers the emulator's test-facing
calls (add_room, get_room, close_room, calls, after_next_call, reset) on the real server, so one
test runs against both. The app under test calls the server through `RecordingProxy`, which
forwards each RoomService call unchanged and counts it; participants connect to the server itself.
"""

import http.client
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
from google.protobuf import json_format
from livekit.protocol import models, room as room_pb

from tokensvc.testing import Faults, LiveKitServer, LiveKitUnderTest
from tokensvc.testing.processes import find_livekit_server as find_binary

ROOT = Path(__file__).resolve().parent.parent.parent
#: The address participants' media uses, set by scripts/in-private-network (none: no joins).
MEDIA_IP = os.environ.get("TOKENSVC_MEDIA_IP")
ROOM_SERVICE = "/twirp/livekit.RoomService/"
AGENT_DISPATCH_SERVICE = "/twirp/livekit.AgentDispatchService/"


def find_livekit_server() -> tuple[str | None, str]:
    """(path to the pinned livekit-server or None, what the lookup said)."""
    return find_binary(ROOT / "scripts" / "livekit-server")


class ProxyFaults(Faults):
    """The switches the recording proxy applies to the real server: latency only. Setting any
    other raises, so a test cannot pass on a fault that was never injected."""

    def __setattr__(self, name, value):
        """Refuse a switch the real server cannot be made to obey (its default stays allowed)."""
        if name != "latency" and value != Faults.__dataclass_fields__[name].default:
            raise NotImplementedError(
                f"faults.{name} cannot be applied to the real livekit-server;"
                f" run the test on the emulator"
            )
        super().__setattr__(name, value)


class RecordingProxy:
    """Forwards HTTP requests to `target` unchanged; counts RoomService calls by method and the
    rooms each CreateRoom named; runs a queued action right after a given call is answered."""

    def __init__(self, target_port: int):
        """Listen on a free loopback port; forward to `target_port`."""
        self.calls: Counter = Counter()
        self.client_ports: list[int] = []
        self.creates: Counter = Counter()
        self.faults = ProxyFaults()
        self._after_call = {}
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler(target_port))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        """Forget counts, queued actions and latency."""
        with self._lock:
            self.calls.clear()
            self.client_ports.clear()
            self.creates.clear()
            self._after_call.clear()
            self.faults = ProxyFaults()

    def close(self) -> None:
        """Stop listening."""
        self.server.shutdown()
        self.server.server_close()

    def _record(self, method: str, body: bytes, content_type: str, answered: bool, port: int):
        """Count one forwarded call from the client's `port`; return the action queued for
        after it, if it was answered."""
        with self._lock:
            self.calls[method] += 1
            self.client_ports.append(port)
            if not answered:
                return None
            if method == "CreateRoom" and content_type == "application/protobuf":
                self.creates[room_pb.CreateRoomRequest.FromString(body).name] += 1
            return self._after_call.pop(method, None)

    def _handler(self, target_port: int):
        """The request handler class, bound to this proxy."""
        proxy = self

        class Forward(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if proxy.faults.latency:
                    time.sleep(proxy.faults.latency)
                upstream = http.client.HTTPConnection("127.0.0.1", target_port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                upstream.request("POST", self.path, body, headers)
                answer = upstream.getresponse()
                data = answer.read()
                upstream.close()
                after = None
                if self.path.startswith(ROOM_SERVICE):  # failed calls count too
                    method = self.path.removeprefix(ROOM_SERVICE)
                    after = proxy._record(
                        method,
                        body,
                        self.headers.get_content_type(),
                        answer.status == 200,
                        self.client_address[1],
                    )
                if after is not None:
                    after()
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.getheader("Content-Type", "text/plain"))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        return Forward


class RealLiveKit(LiveKitUnderTest):
    """The real server and its proxy, with the emulator's test-facing calls."""

    def __init__(self, binary: str, keys: dict, ports):
        """Start livekit-server on free ports from `ports()` and a recording proxy in front."""
        self.keys = keys
        for attempt in range(3):  # a port found free can be taken before the server binds it
            try:
                self.server = LiveKitServer(binary, keys, ports(), MEDIA_IP).start()
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        self.proxy = RecordingProxy(self.server.ports[0])

    @property
    def ws_url(self) -> str:
        """What clients connect to: the server itself."""
        return self.server.ws_url

    @property
    def url(self) -> str:
        """The server API itself, over HTTP (what a test calls directly)."""
        return f"http://127.0.0.1:{self.server.ports[0]}"

    @property
    def api_url(self) -> str:
        """What the app under test calls: the recording proxy."""
        return f"ws://127.0.0.1:{self.proxy.port}"

    @property
    def calls(self) -> Counter:
        """RoomService calls the app made, by method."""
        return self.proxy.calls

    @property
    def client_ports(self) -> list[int]:
        """The app's port of each call it made, in order (one port per connection)."""
        return self.proxy.client_ports

    @property
    def faults(self) -> ProxyFaults:
        """The proxy's switches: only `latency` applies to the real server."""
        return self.proxy.faults

    def call_count(self, method: str | None = None) -> int:
        """How many calls the app made for `method` (all methods when None)."""
        return self.calls[method] if method else sum(self.calls.values())

    def after_next_call(self, method: str, action) -> None:
        """Run `action()` once, right after the app's next `method` call is answered."""
        self.proxy._after_call[method] = action

    def add_room(self, name: str, metadata: str = "", **options) -> models.Room:
        """Create a room directly, as another client of LiveKit would (not counted)."""
        return self._room(
            self._twirp("CreateRoom", {"name": name, "metadata": metadata, **options})
        )

    def stored_room(self, name: str) -> models.Room | None:
        """The room as ListRooms reports it (the store's view), or None."""
        rooms = self._twirp("ListRooms", {"names": [name]}).get("rooms", [])
        return next((self._room(room) for room in rooms if room["name"] == name), None)

    def get_room(self, name: str) -> models.Room | None:
        """The room as ListRooms reports it, or None: the server API has no read of the live
        room that writes nothing (CreateRoom would revive a room only the store still holds);
        what the live room says is seen by joining it."""
        return self.stored_room(name)

    def dispatches(self, name: str) -> list[tuple[str, str]]:
        """(agent name, metadata) of each agent dispatched to the room (ListDispatch)."""
        answer = twirp(
            self.server.ports[0],
            self.keys,
            "ListDispatch",
            {"room": name},
            service=AGENT_DISPATCH_SERVICE,
        )
        return [
            (dispatch["agent_name"], dispatch.get("metadata", ""))
            for dispatch in answer.get("agent_dispatches", [])
        ]

    def close_room(self, name: str) -> bool:
        """Delete a room (DeleteRoom); True if it existed."""
        try:
            self._twirp("DeleteRoom", {"room": name})
            return True
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return False
            raise

    def reset(self) -> None:
        """Delete every room and forget the proxy's counts, actions and latency."""
        for room in self._twirp("ListRooms", {}).get("rooms", []):
            self.close_room(room["name"])
        self.proxy.reset()

    def stop(self) -> None:
        """Stop the proxy and the server."""
        self.proxy.close()
        self.server.stop()

    def _twirp(self, method: str, body: dict) -> dict:
        """Call a RoomService method on the server directly, with protojson."""
        return twirp(self.server.ports[0], self.keys, method, body)

    @staticmethod
    def _room(document: dict) -> models.Room:
        """A protojson Room as the protobuf message."""
        return json_format.ParseDict(document, models.Room(), ignore_unknown_fields=True)


def twirp(port: int, keys: dict, method: str, body: dict, service: str = "") -> dict:
    """Call a RoomService (or `service`) method of the livekit-server on `port` directly, with
    protojson and an API token of the first of `keys` (roomCreate, roomList, roomAdmin)."""
    key, secret = next(iter(keys.items()))
    now = int(time.time())
    token = jwt.encode(
        {
            "iss": key,
            "nbf": now,
            "exp": now + 600,
            "video": {
                "roomCreate": True,
                "roomList": True,
                "roomAdmin": True,
                "room": body.get("room", ""),
            },
        },
        secret,
        "HS256",
    )
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{service or ROOM_SERVICE}{method}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())
