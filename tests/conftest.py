"""Fixtures: LiveKit (the emulator, or the real livekit-server), apps wired to it, tenant tokens.

Tests get the emulator as `livekit`. A test or module marked `livekit_server` runs twice, once on
the emulator and once on the real livekit-server; the real one is skipped with its reason when the
binary is missing, and fails instead under TOKENSVC_REQUIRE_LIVEKIT=1 (as CI sets it).
"""

import asyncio
import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import pytest
from livekit import api
from werkzeug.serving import make_server

from tokensvc import create_app, environ_config
from livekit_server import MEDIA_IP, RealLiveKit, find_livekit_server
from tokensvc.testing import LiveKitEmulator

LIVEKIT_KEY = "test-key"
LIVEKIT_SECRET = "test-livekit-secret-at-least-32-bytes-long"
TENANT_SECRET = "test-tenant-secret-long-enough-for-hs512-" + "0123456789abcdef" * 2
BODY = {"room_name": "room-1", "participant_name": "Alice Smith", "participant_identity": "alice"}


@pytest.fixture(scope="session")
def emulator():
    """One LiveKit emulator for the whole run."""
    with LiveKitEmulator(keys={LIVEKIT_KEY: LIVEKIT_SECRET}) as server:
        yield server


def unavailable(message: str):
    """Skip for a missing real part; fail instead under TOKENSVC_REQUIRE_LIVEKIT=1 (CI)."""
    if os.environ.get("TOKENSVC_REQUIRE_LIVEKIT") == "1":
        pytest.fail(message + " (TOKENSVC_REQUIRE_LIVEKIT=1)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def real_livekit():
    """One real livekit-server (behind a recording proxy) for the whole run."""
    binary, reason = find_livekit_server()
    if binary is None:
        unavailable(f"the real livekit-server is not available: {reason}")
    server = RealLiveKit(binary, {LIVEKIT_KEY: LIVEKIT_SECRET}, lambda: tuple(find_free_port() for _ in range(3)))
    yield server
    server.stop()


@pytest.fixture
def media_network():
    """Participants can join: the run has a media address (make test runs the suite in a
    private network namespace; WebRTC offers no loopback candidates)."""
    if MEDIA_IP is None:
        unavailable("real participants need the private network of `make test` (root, unshare)")


LIVEKIT_KINDS = ("emulator", "livekit-server")


def pytest_generate_tests(metafunc):
    """Run a test marked `livekit_server` on both LiveKits (or on the kinds the mark names)."""
    marker = metafunc.definition.get_closest_marker("livekit_server")
    if marker is not None and "livekit" in metafunc.fixturenames:
        metafunc.parametrize("livekit", marker.args or LIVEKIT_KINDS, indirect=True)


@pytest.fixture
def livekit(request):
    """A LiveKit with no rooms, recorded calls or faults: the emulator unless parametrized."""
    kind = getattr(request, "param", "emulator")
    server = request.getfixturevalue("emulator" if kind == "emulator" else "real_livekit")
    server.reset()
    yield server
    server.reset()


def livekit_settings(livekit) -> dict:
    """The LIVEKIT_* settings that point an app at `livekit` (through the proxy when real)."""
    settings = {"LIVEKIT_URL": getattr(livekit, "api_url", livekit.ws_url)}
    if settings["LIVEKIT_URL"] != livekit.ws_url:
        settings["LIVEKIT_PUBLIC_URL"] = livekit.ws_url
    return {**settings, "LIVEKIT_API_KEY": LIVEKIT_KEY, "LIVEKIT_API_SECRET": LIVEKIT_SECRET}


@pytest.fixture
def storage_url(tmp_path):
    """This test's own embedded ownership record (a fresh SQLite file)."""
    return f"sqlite:///{tmp_path}/holds.sqlite3"


@pytest.fixture
def make_app(livekit, storage_url):
    """Build apps wired to the emulator; extra settings override the defaults: a tenant key with
    AUTH_REQUIRED=false set explicitly (anonymous tokens for names no tenant holds), and this
    test's own storage. A setting given as None is left unset (AUTH_REQUIRED=None: the default)."""
    apps = []

    def build(**settings):
        config = {
            "TESTING": True,
            **livekit_settings(livekit),
            "AUTH_JWT_SECRET": TENANT_SECRET,
            "AUTH_REQUIRED": "false",
            "STORAGE_URL": storage_url,
            **settings,
        }
        app = create_app({k: v for k, v in config.items() if v is not None})
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["tokensvc"].close()


@pytest.fixture
def app(make_app):
    """The service with make_app's defaults (a tenant key, AUTH_REQUIRED=false)."""
    return make_app()


@pytest.fixture
def client(app):
    """A test client for `app`."""
    return app.test_client()


class Tenants:
    """Mints tenant JWTs the way the authentication service would."""

    def token(self, tenant="acme", secret=TENANT_SECRET, algorithm="HS256", ttl=300, **claims):
        """Return a signed tenant token (`sub` = tenant unless overridden)."""
        now = int(time.time())
        payload = {"sub": tenant, "iat": now, "exp": now + ttl, **claims}
        return jwt.encode({k: v for k, v in payload.items() if v is not None}, secret, algorithm)

    def headers(self, tenant="acme", **kwargs):
        """Return an Authorization header for `tenant`."""
        return {"Authorization": f"Bearer {self.token(tenant, **kwargs)}"}


@pytest.fixture
def tenants():
    """The tenant-token helper."""
    return Tenants()


def verify_token(token: str):
    """Decode a minted token with LiveKit's own verifier; return (claims, raw payload)."""
    claims = api.TokenVerifier(LIVEKIT_KEY, LIVEKIT_SECRET).verify(token)
    raw = jwt.decode(token, LIVEKIT_SECRET, algorithms=["HS256"], issuer=LIVEKIT_KEY)
    return claims, raw


class HttpService:
    """Something answering HTTP on a loopback URL."""

    url = ""

    def post(self, path, body, headers=None, timeout=30):
        """POST JSON and return (status, parsed JSON body, headers)."""
        data = json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            headers={"Content-Type": "application/json", **(headers or {})},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read()), response.headers
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read()), error.headers

    def get(self, path, timeout=30):
        """GET and return (status, parsed JSON body, headers)."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
                return response.status, json.loads(response.read()), response.headers
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read()), error.headers


class ServedApp(HttpService):
    """An app served by a threaded WSGI server on a loopback port (a real socket)."""

    def __init__(self, app, port: int = 0):
        """Start serving `app` in a background thread (on `port`; 0: any free one)."""
        self.server = make_server("127.0.0.1", port, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        """Stop the server."""
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture
def serve():
    """Serve apps over real sockets; stopped at teardown."""
    served = []

    def start(app, port=0):
        served.append(ServedApp(app, port))
        return served[-1]

    yield start
    for server in served:
        server.close()


class StaticServer:
    """Answers every GET on a loopback port with `body()` (a page, a JWKS); counts fetches."""

    def __init__(self, body, content_type: str):
        """Serve what `body()` returns at the moment of each request."""
        self.fetches = 0
        self.port = 0
        self._body, self._content_type = body, content_type
        self.start()

    @property
    def url(self) -> str:
        """The server's origin."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Listen (again, on the same port after `stop`)."""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                owner.fetches += 1
                owner.respond(self)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def respond(self, handler: BaseHTTPRequestHandler) -> None:
        """Answer one GET with `body()` (a subclass may answer otherwise)."""
        data = self._body().encode()
        handler.send_response(200)
        handler.send_header("Content-Type", self._content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def stop(self) -> None:
        """Stop listening: connections are refused."""
        self.server.shutdown()
        self.server.server_close()


ROOT = Path(__file__).resolve().parent.parent


def find_free_port() -> int:
    """Return a loopback port nothing listens on right now, below the kernel's ephemeral range
    (so no outgoing connection of the suite can take it before the server under test binds it)."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as handle:
        ephemeral_start = int(handle.read().split()[0])
    while True:
        port = random.randrange(10000, ephemeral_start)
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port


@pytest.fixture
def free_port():
    """A free loopback port."""
    return find_free_port()


class GunicornProcess(HttpService):
    """`gunicorn app:app` from the project root, with the shipped gunicorn.conf.py."""

    def __init__(self, env, port):
        """Start gunicorn and wait until it accepts connections."""
        base = {k: v for k, v in os.environ.items() if k not in environ_config(os.environ)}
        self.url = f"http://127.0.0.1:{port}"
        # A file, not a pipe: nobody reads while it runs, and a full pipe would block the workers.
        self.output = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "app:app"],
            cwd=ROOT,
            env={**base, "PORT": str(port), **env},
            stdout=self.output,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("gunicorn exited: " + self.read_output())
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        self.close()
        raise RuntimeError("gunicorn did not start listening within 30 s")

    def workers(self) -> list[int]:
        """The pids of gunicorn's worker processes (the master's children)."""
        pid = self.process.pid
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(child) for child in handle.read().split()]

    def read_output(self) -> str:
        """Everything gunicorn and the service printed so far."""
        self.output.seek(0)
        return self.output.read()

    def close(self):
        """Stop gunicorn gracefully and return what it printed."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        output = self.read_output()
        self.output.close()
        return output


def gunicorn_env(livekit, **settings):
    """The environment for the service under gunicorn on the emulator (2 workers), with
    make_app's defaults (a tenant key, AUTH_REQUIRED=false)."""
    return {
        **livekit_settings(livekit),
        "AUTH_JWT_SECRET": TENANT_SECRET,
        "AUTH_REQUIRED": "false",
        "WEB_CONCURRENCY": "2",
        **settings,
    }


@pytest.fixture
def make_gunicorn(livekit, storage_url):
    """Start the service under gunicorn with extra settings; stopped at teardown."""
    servers = []

    def start(**settings):
        env = gunicorn_env(livekit, STORAGE_URL=storage_url, **settings)
        servers.append(GunicornProcess(env, find_free_port()))
        return servers[-1]

    yield start
    for server in servers:
        if server.process.poll() is None:
            assert_no_secrets(server.close())


@pytest.fixture
def gunicorn(make_gunicorn):
    """The service under gunicorn (2 workers) on the emulator, authentication optional."""
    return make_gunicorn()


JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
SECRETS = (LIVEKIT_SECRET, TENANT_SECRET, "Bearer ey")


def assert_no_secrets(text: str) -> None:
    """No JWT (participant or tenant), API secret or bearer value appears in `text`."""
    assert not JWT.search(text), f"a JWT leaked: {JWT.search(text).group()[:40]}..."
    for secret in SECRETS:
        assert secret not in text, f"a secret leaked: {secret[:12]}..."


@pytest.fixture(autouse=True)
def no_secrets_in_logs(caplog):
    """Every test runs with logs captured at DEBUG; none may carry a token or a secret."""
    caplog.set_level(logging.DEBUG)
    yield
    for record in caplog.records:
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        assert_no_secrets(text)


GRANTS = {"roomJoin", "room", "canPublish", "canSubscribe", "canPublishData"}


def audit_token(token: str, room: str, identity: str, ttl: int, livekit) -> dict:
    """Check a minted token is least-privilege and useless on the server API; return its payload."""
    claims, raw = verify_token(token)
    assert set(raw["video"]) == GRANTS
    assert raw["video"]["room"] == room and raw["video"]["roomJoin"] is True
    assert claims.identity == identity
    assert raw["exp"] - raw["nbf"] == ttl
    assert set(raw) <= {"name", "video", "roomConfig", "sub", "iss", "nbf", "exp", "metadata",
                        "attributes"}

    async def try_server_api():
        refused = 0
        lkapi = api.LiveKitAPI.with_token(token, livekit.ws_url, failover=False)
        calls = (
            lambda: lkapi.room.list_rooms(api.ListRoomsRequest()),
            lambda: lkapi.room.create_room(api.CreateRoomRequest(name=room)),
            lambda: lkapi.room.delete_room(api.DeleteRoomRequest(room=room)),
            lambda: lkapi.room.update_room_metadata(
                api.UpdateRoomMetadataRequest(room=room, metadata='{"auth_id":"mallory"}')),
        )
        try:
            for call in calls:
                try:
                    await call()
                except api.ServerError as error:
                    refused += error.status == 401
        finally:
            await lkapi.aclose()
        return refused

    assert asyncio.run(try_server_api()) == 4
    return raw


class RedisServer:
    """A real redis-server on a loopback port, in a temporary directory, without persistence."""

    def __init__(self, binary: str, port: int):
        """Remember how to start it; `start()` starts it."""
        self.binary, self.port = binary, port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.directory = tempfile.mkdtemp(prefix="tokensvc-redis-")
        self.process = None

    def start(self) -> "RedisServer":
        """Start the server and wait until it answers PING."""
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.directory],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections are accepted and never answered."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server go on (SIGCONT)."""
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop the server (connections are refused afterwards)."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def redis_server():
    """A fresh redis-server for one test; `make test` installs it (Debian's redis-server)."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed (make test installs it)")
    server = RedisServer(binary, find_free_port()).start()
    yield server
    server.stop()
