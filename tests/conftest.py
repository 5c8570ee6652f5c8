"""Fixtures only: LiveKit (the emulator, or the real livekit-server), apps wired to it, tenant
tokens, servers. The helpers they use live in tests/support/.

Tests get the emulator as `livekit`. A test or module marked `livekit_server` runs twice, once on
the emulator and once on the real livekit-server; the real one is skipped with its reason when the
binary is missing, and fails instead under TOKENSVC_REQUIRE_LIVEKIT=1 (as CI sets it).
"""

import logging
import os
import shutil

import pytest

from support.cluster import Cluster
from support.livekit import MEDIA_IP, RealLiveKit, find_livekit_server
from support.logs import AccessLog
from support.participants import Call
from support.processes import (
    GunicornProcess,
    RedisServer,
    gunicorn_env,
    livekit_settings,
    unavailable,
)
from support.receivers import WebhookReceiver
from support.servers import ServedApp
from support.storage import initialise
from support.tokens import (
    LIVEKIT_KEY,
    LIVEKIT_SECRET,
    TENANT_SECRET,
    WEBHOOK_SECRETS_KEY,
    Tenants,
    assert_no_secrets,
)
from tokensvc import create_app
from tokensvc.context import service_state
from tokensvc.processes.worker import Worker, suspended_tenants
from tokensvc.testing import LiveKitEmulator, LiveKitServer
from tokensvc.testing.processes import find_free_port

# Every service a test builds beside a tenant key needs the key that seals tenants' webhook
# secrets (outside DEV_MODE it refuses to start without one): apps built from the environment
# get the tests' key from it, make_app and the processes' environments set it themselves.
os.environ.setdefault("TENANT_WEBHOOK_SECRETS_KEY", WEBHOOK_SECRETS_KEY)


@pytest.fixture(scope="session")
def emulator():
    """One LiveKit emulator for the whole run."""
    with LiveKitEmulator(keys={LIVEKIT_KEY: LIVEKIT_SECRET}) as server:
        yield server


@pytest.fixture(scope="session")
def real_livekit():
    """One real livekit-server (behind a recording proxy) for the whole run."""
    binary, reason = find_livekit_server()
    if binary is None:
        unavailable(f"the real livekit-server is not available: {reason}")
    server = RealLiveKit(
        binary, {LIVEKIT_KEY: LIVEKIT_SECRET}, lambda: tuple(find_free_port() for _ in range(3))
    )
    yield server
    server.stop()


@pytest.fixture
def call():
    """Real participants, disconnected at teardown."""
    participants = Call()
    yield participants
    participants.close()


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


@pytest.fixture
def storage_url(tmp_path):
    """This test's own embedded ownership record (a fresh SQLite file)."""
    return f"sqlite:///{tmp_path}/holds.sqlite3"


@pytest.fixture(params=["sqlite", "redis"])
def backend(request, storage_url):
    """A STORAGE_URL on each backend: this test's SQLite file, or a fresh redis-server."""
    if request.param == "sqlite":
        return storage_url
    return request.getfixturevalue("redis_server").url


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
            "TENANT_WEBHOOK_SECRETS_KEY": WEBHOOK_SECRETS_KEY,
            **settings,
        }
        app = create_app({k: v for k, v in config.items() if v is not None})
        apps.append(app)
        return app

    yield build
    for app in apps:
        service_state(app).close()


@pytest.fixture
def app(make_app):
    """The service with make_app's defaults (a tenant key, AUTH_REQUIRED=false)."""
    return make_app()


@pytest.fixture
def client(app):
    """A test client for `app`."""
    return app.test_client()


@pytest.fixture
def tenants():
    """The tenant-token helper."""
    return Tenants()


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


@pytest.fixture
def free_port():
    """A free loopback port."""
    return find_free_port()


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


@pytest.fixture(autouse=True)
def no_secrets_in_logs(caplog):
    """Every test runs with logs captured at DEBUG; none may carry a token or a secret."""
    caplog.set_level(logging.DEBUG)
    yield
    for record in caplog.records:
        text = record.getMessage() + str(getattr(record, "access", ""))
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        assert_no_secrets(text)


@pytest.fixture
def make_webhooked(make_app, serve):
    """make_webhooked(**settings) -> (app, server): a real livekit-server of its own whose
    webhooks go to the service (or to `hook_port`, a relay in front of it), served on a real
    socket (on `port` when given); stopped at teardown."""
    servers = []

    def start(port=None, hook_port=None, **settings):
        binary, reason = find_livekit_server()
        if binary is None:
            pytest.fail(f"the real livekit-server is not available: {reason}")
        port = port or find_free_port()
        webhook = {
            "webhook": {
                "api_key": LIVEKIT_KEY,
                "urls": [f"http://127.0.0.1:{hook_port or port}/livekit/webhook"],
            }
        }
        server = LiveKitServer(
            binary,
            {LIVEKIT_KEY: LIVEKIT_SECRET},
            tuple(find_free_port() for _ in range(3)),
            MEDIA_IP,
            extra=webhook,
        ).start()
        servers.append(server)
        app = make_app(**{**livekit_settings(server), "LIVEKIT_PUBLIC_URL": None}, **settings)
        serve(app, port)
        return app, server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def make_cluster():
    """make_cluster(extra=None, settings=None) -> two real livekit-server nodes on one real
    redis-server with a gunicorn instance each (`extra` config for both nodes, `settings` for
    both instances; support/cluster.py); the real parts are required where CI runs."""
    binary, reason = find_livekit_server()
    if binary is None:
        unavailable(f"the real livekit-server is not available: {reason}")
    redis_binary = shutil.which("redis-server")
    if redis_binary is None:
        unavailable("redis-server is not installed (make test installs it)")
    clusters = []

    def start(extra=None, settings=None):
        clusters.append(Cluster(binary, redis_binary, extra, settings))
        return clusters[-1]

    yield start
    for cluster in clusters:
        cluster.close()


@pytest.fixture
def redis_server():
    """A fresh redis-server for one test, initialised as a new deployment's storage (as `tokensvc
    storage init` does); `make test` installs it (Debian's redis-server)."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed (make test installs it)")
    server = RedisServer(binary, find_free_port()).start()
    initialise(server.url)
    yield server
    server.stop()


@pytest.fixture
def access_log(caplog):
    """The access records of the requests made so far, as the service's formatter renders
    them: `access_log.lines(style)` (one line each) or `access_log.fields()` (dicts)."""
    caplog.set_level(logging.INFO, "tokensvc.access")
    return AccessLog(caplog)


@pytest.fixture
def make_receiver():
    """make_receiver(**options) -> a tenant's webhook receiver on loopback that verifies
    signatures with the standardwebhooks package; stopped at teardown."""
    receivers = []

    def start(**options):
        receivers.append(WebhookReceiver(**options))
        return receivers[-1]

    yield start
    for receiver in receivers:
        receiver.stop()


@pytest.fixture
def make_worker():
    """make_worker(app, paused=None) -> the webhook worker (the delivery engine) of `app`, in a
    thread of this process, holding `paused(tenant)`'s deliveries (by default the suspended
    tenants', as the worker process does); stopped at teardown."""
    workers = []

    def start(app, paused=None, in_flight=None):
        state = service_state(app)
        if paused is None:  # as the worker process does: a suspended tenant's deliveries wait
            paused = suspended_tenants(state)
        workers.append(Worker(state.tenant_webhooks, paused, in_flight).start())
        return workers[-1]

    yield start
    for worker in workers:
        worker.stop()
