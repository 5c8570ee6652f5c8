"""Benchmark tenants' webhooks, delivered by ONE worker process (`python -m
tokensvc.processes.worker`, as the Procfile runs it), on SQLite and on Redis (a real
redis-server).

Run: `python -m bench.webhooks [--storages sqlite,redis] [--rows latency,throughput,noisy,hanging]
[--setups 64:2:10000,1:64:5000,1:2:2000] [--cpu-seconds 25] [--rounds 3] ...` (`--help` for
all). Every figure is
printed as a line while it is measured, and all of them as Markdown tables at the end.

The service is built in this process on the LiveKit emulator and gets LiveKit-signed
`participant_joined` events for rooms its tenants hold; each row has a new storage, initialised
as a new deployment's (`tokensvc storage init`). Healthy endpoints are on
`bench/receiver.py`, a process of its own (asyncio, HTTP/1.1 kept alive) that verifies EVERY
signature with the `standardwebhooks` package and keeps when each event arrived; the worker's
settings are the deployment's defaults (TENANT_WEBHOOK_TIMEOUT 10 s, RETRY_DELAY 5 s,
ENDPOINT_CONCURRENCY 2, IN_FLIGHT 256) unless a row says otherwise.

- **latency**: one endpoint, the worker idle: 50 events one at a time (at random gaps, not in
  step with the worker's looks), from posting each to the service to the receiver holding its
  verified body (p50/p95).
- **throughput**: per setup `endpoints:concurrency:deliveries` (the endpoints spread over
  tenants, 8 each, all on the one receiver; TENANT_WEBHOOK_ENDPOINT_CONCURRENCY), the
  deliveries queued while the worker is stopped, then the worker started: first to last
  arrival, deliveries a second, with the worker's and the receiver's CPU meanwhile (the
  receiver is not the bottleneck while it stays well under a core). The default setups: 64
  endpoints of 8 tenants at the default concurrency (2), the target's row (>= 1,000/s); one
  endpoint at concurrency 64; one endpoint at 2 (what one endpoint gets by default).
- **noisy**: three noisy tenants with 10 endpoints each (8 on a listener that accepts and never
  answers, 1 answering 500, 1 on a closed port) beside tenant B's one healthy endpoint. The noisy
  tenants' queues are filled first (events for their rooms keep coming, one per tenant a
  second); then 200 events of B's room at 10 a second: B's p50/p99/max from event to verified
  delivery, and how many arrived. Then, B idle and only the noisy endpoints with work, the
  worker's CPU over `--cpu-seconds` (from /proc/<pid>/stat: CPU seconds / wall seconds). The
  store's pending deliveries (the queue) are sampled throughout: their most, against the
  deliveries created. Targets: p99 <= 1 s, CPU <= 0.1 core.
- **hanging** (first storage only): two services under gunicorn (the shipped gunicorn.conf.py),
  each on a storage of its own, driven by wrk (bench/run.py's `run_wrk` and bench/token.lua, 8
  connections) with an authenticated existing-room POST /livekit/token. One has no webhooks at
  all (no endpoint, no worker). On the other the tenant has 10 endpoints, 9 on a listener that
  accepts and never answers, its events keep deliveries pending, and a worker runs. The two are
  measured in interleaved rounds (the worker paused with SIGSTOP while the other is measured);
  the table gives the medians, their ratio, and how long after each event sent during the
  rounds the 10th (healthy) endpoint got it.

A run with the defaults takes about four minutes. The host's figures are shared with whatever
else runs: the worker's CPU is its own (/proc), the rest is wall time.
"""

import argparse
import base64
import hashlib
import json
import os
import random
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
from pathlib import Path
from statistics import median

import jwt

from bench.openloop import percentile
from bench.run import run_wrk, start_redis
from tokensvc import create_app
from tokensvc.context import service_state
from tokensvc.roles import TENANT_ATTRIBUTE
from tokensvc.testing import LiveKitEmulator
from tokensvc.testing.processes import find_free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "bench-key"
API_SECRET = "bench-livekit-secret-0123456789abcdef0123456789"
TENANT_SECRET = "bench-tenant-secret-0123456789abcdef0123456789ab"
TENANT = "acme"
#: The noisy row: its noisy tenants, each with HANGING endpoints that never answer, one that
#: answers 500 and one on a closed port; and the tenant whose one endpoint is healthy.
NOISY, HANGING_EACH, QUIET = ("noisy1", "noisy2", "noisy3"), 8, "bravo"
#: The throughput row's endpoints are spread over tenants, this many each at most.
PER_TENANT = 8
#: Endpoints of the tenant in the hanging row, and how many of them hang.
ENDPOINTS, HANGING = 10, 9
#: wrk's connections and threads in the hanging row (bench.run's defaults).
CLIENTS, THREADS = 8, 2
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ReceiverProcess:
    """bench/receiver.py on a free loopback port: verifies every signature, keeps arrivals."""

    def __init__(self, log):
        """Start it (its output to the file `log`) and wait for its port."""
        self.port = find_free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.receiver", "--port", str(self.port)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port, self.process, 30, "the receiver")

    def url(self, name: str) -> str:
        """The URL of endpoint `name` (verified with the secret given for it)."""
        return f"{self.base}/hooks/{name}"

    def failing_url(self, name: str) -> str:
        """A URL that answers 500."""
        return f"{self.base}/fail/{name}"

    def _call(self, method: str, path: str, data: bytes | None = None) -> bytes:
        """One request to the receiver; its body."""
        request = urllib.request.Request(self.base + path, data, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read()

    def set_secret(self, name: str, secret: str) -> None:
        """Verify endpoint `name`'s deliveries with `secret`."""
        self._call("PUT", f"/secrets/{name}", secret.encode())

    def figures(self) -> dict:
        """What arrived: `arrived` ("name/identity" -> time.monotonic()), and the counts of
        requests verified, refused (signature) and failed (500 by design)."""
        return json.loads(self._call("GET", "/arrivals"))

    def count(self) -> int:
        """Deliveries verified so far."""
        return json.loads(self._call("GET", "/count"))["verified"]

    def wait_for(self, count: int, timeout: float, poll: float = 0.2) -> int:
        """Wait until `count` deliveries were verified; how many were."""
        deadline = time.monotonic() + timeout
        got = self.count()
        while got < count and time.monotonic() < deadline:
            time.sleep(poll)
            got = self.count()
        return got

    def stop(self) -> None:
        """Stop the receiver."""
        self.process.terminate()
        self.process.wait(10)


class HangingReceiver:
    """A listener on loopback that accepts every connection and never answers."""

    def __init__(self):
        """Listen on a free port; accept in a background thread."""
        self.socket = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}/hooks"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        """Accept connections and keep them open, unanswered, until `close`."""
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.held.append(connection)

    def wait_for(self, count: int, timeout: float) -> int:
        """Wait until `count` connections were accepted; return how many were."""
        deadline = time.monotonic() + timeout
        while len(self.held) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(self.held)

    def close(self) -> None:
        """Stop listening and drop every held connection."""
        self.socket.close()
        for connection in self.held:
            connection.close()


class WorkerProcess:
    """`python -m tokensvc.processes.worker` with the service's settings."""

    def __init__(self, settings: dict, log):
        """Start it (its output to the file `log`)."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tokensvc.processes.worker"],
            cwd=ROOT,
            env=service_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def cpu_seconds(self) -> float:
        """The CPU time it used so far."""
        return cpu_seconds(self.process.pid)

    def signal(self, number: int) -> None:
        """Send it a signal."""
        self.process.send_signal(number)

    def stop(self) -> None:
        """SIGTERM (attempts under way end within the timeout, or it is killed)."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGCONT)
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def cpu_seconds(pid: int) -> float:
    """The CPU time process `pid` used so far, user and system, every thread
    (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def signed_event(room: str, tenant: str, identity: str) -> tuple[str, dict]:
    """A participant_joined event of `room` for a participant of `tenant`'s, signed as LiveKit
    signs it."""
    body = json.dumps(
        {
            "event": "participant_joined",
            "id": "EV_" + os.urandom(6).hex(),
            "createdAt": str(int(time.time())),
            "room": {"name": room},
            "participant": {
                "identity": identity,
                "sid": "PA_" + identity,
                "attributes": {TENANT_ATTRIBUTE: tenant},
            },
        }
    )
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    now = int(time.time())
    auth = jwt.encode(
        {"iss": API_KEY, "sha256": digest, "nbf": now - 10, "exp": now + 300}, API_SECRET
    )
    return body, {"Content-Type": "application/webhook+json", "Authorization": auth}


def tenant_headers(tenant: str = TENANT) -> dict:
    """The Authorization header of a token of `tenant`, valid for an hour."""
    now = int(time.time())
    token = jwt.encode({"sub": tenant, "iat": now, "exp": now + 3600}, TENANT_SECRET)
    return {"Authorization": f"Bearer {token}"}


def service_env(settings: dict) -> dict:
    """A child process's environment: this one's, without its own LiveKit and tenant keys, and
    `settings`."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "AUTH_"))}
    return {**inherited, **settings}


def initialise(app) -> None:
    """`tokensvc storage init`, as a new deployment runs it once (app.json's postdeploy): a
    fresh storage is otherwise judged lost, and its shared names quarantined. `--force`: the
    rooms the emulator lists are the earlier rows', whose storages no token refers to."""
    outcome = app.test_cli_runner().invoke(args=["storage", "init", "--force"])
    assert outcome.exit_code == 0, outcome.output


class Service:
    """The service in this process (a test client of the app), as tenants and LiveKit use it."""

    def __init__(self, settings: dict):
        """Build the app with `settings` on a new deployment's storage."""
        self.app = create_app(settings)
        initialise(self.app)
        self.client = self.app.test_client()
        self.state = service_state(self.app)

    def own_room(self, tenant: str) -> str:
        """Mint a token for `<tenant>-room`, so that the tenant holds it; the room's name."""
        room = f"{tenant}-room"
        answer = self.client.post(
            "/livekit/token",
            json={"room_name": room, "participant_name": "A", "participant_identity": "a"},
            headers=tenant_headers(tenant),
        )
        assert answer.status_code == 200, answer.json
        return room

    def subscribe(self, tenant: str, url: str) -> str:
        """Subscribe `url` for `tenant`; the endpoint's secret."""
        answer = self.client.post(
            "/livekit/webhook-endpoints", json={"url": url}, headers=tenant_headers(tenant)
        )
        assert answer.status_code == 201, answer.json
        return answer.json["secret"]

    def event(self, room: str, tenant: str, identity: str) -> None:
        """Post one LiveKit event of `room` (held by `tenant`) to the service."""
        body, headers = signed_event(room, tenant, identity)
        answer = self.client.post("/livekit/webhook", data=body, headers=headers)
        assert answer.status_code == 200, answer.json

    def pending(self) -> int:
        """Deliveries pending in the store (claimed or not): the queue's length."""
        assert self.state.tenant_webhooks is not None
        return self.state.tenant_webhooks.stats().pending

    def close(self) -> None:
        """Close the storage."""
        self.state.close()


def measure_delivery(
    args, storage: str, settings: dict, log, setup: tuple[int, ...], latency: bool
) -> dict:
    """With `setup` = (endpoints, TENANT_WEBHOOK_ENDPOINT_CONCURRENCY, deliveries): the latency
    from event to receiver with the worker idle (when `latency`) and one worker's throughput;
    print each figure and return them. The endpoints are spread over tenants, at most PER_TENANT
    each."""
    endpoints, concurrency, deliveries = setup
    settings = {
        **settings,
        "TENANT_WEBHOOK_ENDPOINT_CONCURRENCY": str(concurrency),
        "TENANT_WEBHOOK_IN_FLIGHT": str(args.in_flight),
    }
    service = Service(settings)
    receiver = ReceiverProcess(log)
    worker = None
    result: dict = {"storage": storage, "endpoints": endpoints, "concurrency": concurrency}
    try:
        tenants: dict[str, list[str]] = {}
        for number in range(endpoints):
            tenant = f"tenant{number // PER_TENANT}"
            name = f"{tenant}-{number % PER_TENANT}"
            receiver.set_secret(name, service.subscribe(tenant, receiver.url(name)))
            tenants.setdefault(tenant, []).append(name)
        rooms = {tenant: service.own_room(tenant) for tenant in tenants}
        first, names = next(iter(tenants.items()))
        worker = WorkerProcess(settings, log)
        # The worker is up once a first event reaches the receiver.
        service.event(rooms[first], first, "warm-up")
        assert receiver.wait_for(len(names), 60, 0.05) >= len(names), "no delivery"
        if latency:
            sent = {}
            for number in range(args.events):
                identity = f"latency-{number}"
                sent[identity] = time.monotonic()
                service.event(rooms[first], first, identity)
                receiver.wait_for(len(names) * (number + 2), 10, 0.005)
                time.sleep(random.uniform(0.02, 0.12))  # not in step with the worker's looks
            arrived = receiver.figures()["arrived"]
            lags = [(arrived[f"{names[0]}/{i}"] - at) * 1000 for i, at in sent.items()]
            result.update(events=len(lags), p50_ms=percentile(lags, 0.5))
            result["p95_ms"] = percentile(lags, 0.95)
            print(
                f"latency, event to verified delivery ({storage}, {len(lags)} of "
                f"{args.events} events, worker idle): p50 {result['p50_ms']:.1f} ms, "
                f"p95 {result['p95_ms']:.1f} ms",
                flush=True,
            )
        if "throughput" not in args.rows:
            return result
        worker.stop()
        before = receiver.count()
        queued_at = time.monotonic()
        created = number = 0
        while created < deliveries:
            for tenant, names in tenants.items():
                service.event(rooms[tenant], tenant, f"throughput-{number}")
                created += len(names)
            number += 1
        queued_s = time.monotonic() - queued_at
        queued = service.pending()
        worker = WorkerProcess(settings, log)
        # Both processes' CPU from the first arrival (the worker started) to the last.
        receiver.wait_for(before + 1, 60, 0.01)
        started = (
            time.monotonic(),
            worker.cpu_seconds(),
            cpu_seconds(receiver.process.pid),
        )
        got = receiver.wait_for(before + created, 300, 0.05) - before
        wall = time.monotonic() - started[0]
        result["worker_cores"] = (worker.cpu_seconds() - started[1]) / wall
        result["receiver_cores"] = (cpu_seconds(receiver.process.pid) - started[2]) / wall
        figures = receiver.figures()
        times = sorted(at for key, at in figures["arrived"].items() if "/throughput-" in key)
        result.update(
            deliveries=len(times),
            queued=queued,
            rate=(len(times) - 1) / (times[-1] - times[0]),
            refused=figures["refused"],
            verified=got,
        )
        print(
            f"throughput, one worker ({storage}; {len(times)} of {queued} deliveries queued in "
            f"{queued_s:.1f} s, to {endpoints} endpoint(s) of {len(tenants)} tenant(s) on one "
            f"receiver verifying every signature; endpoint concurrency {concurrency}, "
            f"{args.in_flight} in flight): {result['rate']:.0f} deliveries/s "
            f"({figures['refused']} signatures refused; the worker used "
            f"{result['worker_cores']:.2f} cores, the receiver {result['receiver_cores']:.2f})",
            flush=True,
        )
        return result
    finally:
        if worker is not None:
            worker.stop()
        receiver.stop()
        service.close()


def measure_noisy(args, storage: str, settings: dict, log) -> dict:
    """Three noisy tenants beside B's healthy endpoint: B's latency, the worker's CPU while
    only the noisy endpoints have work, the queue's length; print each figure and return
    them."""
    service = Service(settings)
    receiver = ReceiverProcess(log)
    hanging = HangingReceiver()
    closed = f"http://127.0.0.1:{find_free_port()}/hooks"
    worker = None
    samples: list[int] = []
    created = noisy_created = 0
    try:
        rooms = {}
        for tenant in NOISY:
            for number in range(HANGING_EACH):
                service.subscribe(tenant, f"{hanging.url}/{tenant}/{number}")
            service.subscribe(tenant, receiver.failing_url(tenant))
            service.subscribe(tenant, f"{closed}/{tenant}")
            rooms[tenant] = service.own_room(tenant)
        receiver.set_secret(QUIET, service.subscribe(QUIET, receiver.url(QUIET)))
        rooms[QUIET] = service.own_room(QUIET)
        per_event = HANGING_EACH + 2

        def noisy_events(label: str) -> None:
            """One event of each noisy tenant's room."""
            nonlocal created, noisy_created
            for tenant in NOISY:
                service.event(rooms[tenant], tenant, f"{tenant}-{label}")
                created += per_event
                noisy_created += per_event

        for number in range(args.noisy_backlog):
            noisy_events(f"backlog-{number}")
        samples.append(service.pending())
        worker = WorkerProcess(settings, log)
        concurrency = int(settings.get("TENANT_WEBHOOK_ENDPOINT_CONCURRENCY", "2"))
        held = hanging.wait_for(len(NOISY) * HANGING_EACH * concurrency, 60)
        sent: dict[str, float] = {}
        start = time.monotonic()
        busy_cpu = worker.cpu_seconds()
        interval = 1 / args.rate
        for number in range(args.quiet_events):
            due = start + number * interval
            time.sleep(max(0.0, due - time.monotonic()))
            identity = f"{QUIET}-{number}"
            sent[identity] = time.monotonic()
            service.event(rooms[QUIET], QUIET, identity)
            created += 1
            if number % round(args.rate) == 0:  # the noisy ones keep coming, one a second each
                noisy_events(f"during-{number}")
            samples.append(service.pending())
        busy_cores = (worker.cpu_seconds() - busy_cpu) / (time.monotonic() - start)
        got = receiver.wait_for(len(sent), 30)
        figures = receiver.figures()
        lags = [
            (figures["arrived"][f"{QUIET}/{i}"] - at) * 1000
            for i, at in sent.items()
            if f"{QUIET}/{i}" in figures["arrived"]
        ]
        result = {
            "storage": storage,
            "created": created,
            "noisy_created": noisy_created,
            "held": held,
            "sent": len(sent),
            "delivered": len(lags),
            "verified": got,
            "p50_ms": percentile(lags, 0.5) if lags else float("nan"),
            "p99_ms": percentile(lags, 0.99) if lags else float("nan"),
            "max_ms": max(lags) if lags else float("nan"),
            "busy_cores": busy_cores,
        }
        print(
            f"noisy neighbours ({storage}): {QUIET}'s {len(lags)} of {len(sent)} events at "
            f"{args.rate:g}/s, event to verified delivery p50 {result['p50_ms']:.1f} ms, p99 "
            f"{result['p99_ms']:.1f} ms, max {result['max_ms']:.1f} ms ({held} attempts held "
            f"by the hanging endpoints at the start; the worker meanwhile {busy_cores:.3f} "
            f"cores)",
            flush=True,
        )
        # Only the noisy endpoints have work now: the worker's CPU, the queue meanwhile.
        accepted_before = len(hanging.held)
        cpu_before, wall_before = worker.cpu_seconds(), time.monotonic()
        deadline = wall_before + args.cpu_seconds
        while time.monotonic() < deadline:
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
            samples.append(service.pending())
        cpu, wall = worker.cpu_seconds() - cpu_before, time.monotonic() - wall_before
        result.update(
            cores=cpu / wall,
            cpu_s=cpu,
            wall_s=wall,
            attempts_hanging=len(hanging.held) - accepted_before,
            failed_answers=receiver.figures()["failed"] - figures["failed"],
            max_pending=max(samples),
            end_pending=samples[-1],
            samples=len(samples),
        )
        print(
            f"noisy neighbours ({storage}), only the noisy endpoints with work: the worker used "
            f"{cpu:.2f} CPU s in {wall:.1f} s = {result['cores']:.3f} cores "
            f"({result['attempts_hanging']} new attempts hung, {result['failed_answers']} "
            f"answered 500); deliveries pending at most {result['max_pending']} of the "
            f"{created} created, {noisy_created} of them the noisy tenants' ({len(samples)} "
            f"samples), {samples[-1]} at the end",
            flush=True,
        )
        return result
    finally:
        hanging.close()  # the attempts hanging there end at once
        if worker is not None:
            worker.stop()
        receiver.stop()
        service.close()


class Gunicorn:
    """The service under gunicorn with the shipped gunicorn.conf.py, on a free port."""

    def __init__(self, settings: dict, log):
        """Start it with `settings` (its output to the file `log`) and wait for its port."""
        self.port = find_free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "app:app"],
            cwd=ROOT,
            env=service_env({**settings, "PORT": str(self.port)}),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port, self.process, 30, "gunicorn")

    def post(self, path: str, data: bytes, headers: dict) -> dict:
        """POST `data` and return the answer's JSON."""
        request = urllib.request.Request(self.url + path, data, headers, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    def status(self, path: str, data: bytes, headers: dict) -> int:
        """POST `data` and return the answer's HTTP status (an error status too)."""
        request = urllib.request.Request(self.url + path, data, headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    def metric(self, name: str) -> float:
        """One unlabelled figure of its /metrics."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=30) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        raise LookupError(name)

    def stop(self) -> None:
        """Stop gunicorn."""
        self.process.terminate()
        self.process.wait(30)


def measure_hanging(args, settings: dict, storages: tuple[str, str], log) -> dict:
    """The token route's latency with no webhooks at all and with 9 of the tenant's 10 endpoints
    hanging, deliveries pending and the worker running, in interleaved rounds; and when the
    healthy endpoint got each event sent meanwhile. Print each round and return the medians."""
    plain_settings = {**settings, "STORAGE_URL": storages[0], "METRICS_ENABLED": "true"}
    hooked_settings = {**plain_settings, "STORAGE_URL": storages[1]}
    for each in (plain_settings, hooked_settings):
        Service(each).close()  # a new deployment's storage, initialised
    plain, hooked = Gunicorn(plain_settings, log), Gunicorn(hooked_settings, log)
    hanging, healthy = HangingReceiver(), ReceiverProcess(log)
    tenant = tenant_headers()
    json_headers = {**tenant, "Content-Type": "application/json"}
    room = f"{TENANT}-room"
    worker = None
    try:
        token_body = json.dumps(
            {"room_name": room, "participant_name": "Bench", "participant_identity": "bench"}
        ).encode()
        for service in (plain, hooked):
            assert service.post("/livekit/token", token_body, json_headers)["token"]
        for number in range(ENDPOINTS):
            url = healthy.url(TENANT) if number == ENDPOINTS - 1 else f"{hanging.url}/{number}"
            body = json.dumps({"url": url}).encode()
            secret = hooked.post("/livekit/webhook-endpoints", body, json_headers)["secret"]
            if number == ENDPOINTS - 1:
                healthy.set_secret(TENANT, secret)
        worker = WorkerProcess(hooked_settings, log)
        sent: dict[str, float] = {}

        def send(identity: str) -> None:
            """Post one event of the tenant's room to the hooked service."""
            body, headers = signed_event(room, TENANT, identity)
            sent[identity] = time.monotonic()
            hooked.post("/livekit/webhook", body.encode(), headers)

        def send_each_second(round_no: int) -> None:
            """Send one event a second until the round's wrk run ends."""
            number = 0
            while not stop_sending.wait(1.0):
                send(f"during-{round_no}-{number}")
                number += 1

        stop_sending = threading.Event()
        for number in range(3):  # every hanging endpoint gets its most attempts at once, and more
            send(f"before-{number}")
        concurrency = int(settings.get("TENANT_WEBHOOK_ENDPOINT_CONCURRENCY", "2"))
        held = hanging.wait_for(HANGING * concurrency, 30)
        wrk_env = {"BENCH_ROOM": room, "BENCH_AUTH": tenant["Authorization"], "BENCH_CLOSE": ""}
        for service in (plain, hooked):  # warm-up
            run_wrk(service.url + "/livekit/token", CLIENTS, THREADS, 2, wrk_env)
        runs: dict[str, list] = {"plain": [], "hooked": []}
        pending = 0.0
        for round_no in range(args.rounds):
            worker.signal(signal.SIGSTOP)  # no webhooks at all: nothing of them runs
            runs["plain"].append(
                run_wrk(
                    plain.url + "/livekit/token", CLIENTS, THREADS, args.hanging_seconds, wrk_env
                )
            )
            worker.signal(signal.SIGCONT)
            stop_sending.clear()
            sender = threading.Thread(target=send_each_second, args=(round_no,), daemon=True)
            sender.start()
            runs["hooked"].append(
                run_wrk(
                    hooked.url + "/livekit/token", CLIENTS, THREADS, args.hanging_seconds, wrk_env
                )
            )
            stop_sending.set()
            sender.join(10)
            pending = hooked.metric("tokensvc_webhook_deliveries_pending")
            print(
                f"hanging row, round {round_no + 1}/{args.rounds}: token p50/p99 "
                f"{p50_p99(runs['plain'][-1])} ms with no webhooks, "
                f"{p50_p99(runs['hooked'][-1])} ms with {HANGING} of {ENDPOINTS} endpoints "
                f"hanging ({pending:.0f} deliveries pending)",
                flush=True,
            )
        during = {i: at for i, at in sent.items() if i.startswith("during-")}
        healthy.wait_for(len(sent), 30)
        arrived = healthy.figures()["arrived"]
        lags = [
            (arrived[f"{TENANT}/{i}"] - at) * 1000
            for i, at in during.items()
            if f"{TENANT}/{i}" in arrived
        ]
        result: dict = {
            name: {
                "p50_ms": median(run["p50_us"] for run in measured) / 1000,
                "p99_ms": median(run["p99_us"] for run in measured) / 1000,
                "requests": sum(run["requests"] for run in measured),
                "failed": sum(run["failed"] + run["socket_errors"] for run in measured),
            }
            for name, measured in runs.items()
        }
        result.update(
            held=held,
            pending=pending,
            events=len(during),
            delivered=len(lags),
            lag_p50_ms=percentile(lags, 0.5) if lags else float("nan"),
            lag_max_ms=max(lags) if lags else float("nan"),
        )
        return result
    finally:
        hanging.close()  # the attempts hanging there end at once, and the worker with them
        if worker is not None:
            worker.stop()
        healthy.stop()
        plain.stop()
        hooked.stop()


def p50_p99(run: dict) -> str:
    """A wrk run's p50 and p99, in ms."""
    return f"{run['p50_us'] / 1000:.2f}/{run['p99_us'] / 1000:.2f}"


def met(value: float, target: float, above: bool = False) -> str:
    """Whether `value` meets `target` (at most it, or with `above` at least it)."""
    return "met" if (value >= target if above else value <= target) else "MISSED"


def delivery_table(args, results: list[dict]) -> str:
    """The latency and throughput rows as a Markdown table."""
    lines = [
        f"One worker, TENANT_WEBHOOK_IN_FLIGHT {args.in_flight}; one receiver verifying every "
        f"signature; latency over {args.events} events, one at a time, the worker idle; "
        "throughput of the deliveries queued before the worker starts, first to last arrival:",
        "",
        "| storage | endpoints (tenants) | concurrency per endpoint | latency p50 | latency p95 "
        "| throughput | deliveries | worker CPU | receiver CPU | target >= 1,000/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        tenants = -(-r["endpoints"] // PER_TENANT)
        latency = f"{r['p50_ms']:.1f} ms | {r['p95_ms']:.1f} ms" if "p50_ms" in r else " | "
        rate = r.get("rate")
        if rate is None:
            throughput = " | | | | "
        else:
            target = (
                f"(one endpoint, {r['concurrency']} at once: its cap, not the worker's)"
                if r["endpoints"] * r["concurrency"] <= 2
                else met(rate, 1000, above=True)
            )
            throughput = (
                f"{rate:.0f} deliveries/s | {r['deliveries']} | {r['worker_cores']:.2f} cores "
                f"| {r['receiver_cores']:.2f} cores | {target}"
            )
        lines.append(
            f"| {r['storage']} | {r['endpoints']} ({tenants}) | {r['concurrency']} | {latency} "
            f"| {throughput} |"
        )
    return "\n".join(lines)


def noisy_table(args, results: list[dict]) -> str:
    """The noisy neighbours row as Markdown tables."""
    lines = [
        f"Three noisy tenants, 10 endpoints each ({HANGING_EACH} hanging, 1 answering 500, 1 "
        f"refusing), {args.noisy_backlog} events each queued first and one a second each after; "
        f"{QUIET}'s one healthy endpoint gets {args.quiet_events} events at {args.rate:g}/s; one "
        f"worker, the deployment's defaults:",
        "",
        f"| storage | {QUIET}: p50 | p99 | max | delivered | p99 <= 1 s |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['storage']} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | "
            f"{r['max_ms']:.1f} ms | {r['delivered']} of {r['sent']} | "
            f"{met(r['p99_ms'], 1000) if r['delivered'] == r['sent'] else 'MISSED'} |"
        )
    lines += [
        "",
        f"| storage | worker CPU, only noisy endpoints with work ({args.cpu_seconds:g} s) "
        f"| <= 0.1 core | worker CPU while {QUIET}'s events came | deliveries pending, most "
        "| deliveries created |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['storage']} | {r['cores']:.3f} cores | {met(r['cores'], 0.1)} | "
            f"{r['busy_cores']:.3f} cores | {r['max_pending']} | {r['created']} "
            f"({r['noisy_created']} noisy) |"
        )
    return "\n".join(lines)


def hanging_table(storage: str, args, result: dict) -> str:
    """The hanging row as a Markdown table: both latencies, their ratio, the healthy
    endpoint's delivery time."""
    plain, hooked = result["plain"], result["hooked"]
    return "\n".join(
        [
            f"POST /livekit/token, authenticated, existing room ({storage}; wrk, {CLIENTS} "
            f"connections; medians of {args.rounds} rounds of {args.hanging_seconds:g} s):",
            "",
            "| token route | p50 ms | p99 ms | requests | failed |",
            "|---|---:|---:|---:|---:|",
            f"| no webhooks at all | {plain['p50_ms']:.2f} | {plain['p99_ms']:.2f} "
            f"| {plain['requests']} | {plain['failed']} |",
            f"| {ENDPOINTS} endpoints, {HANGING} hanging, {result['pending']:.0f} deliveries "
            f"pending, worker running | {hooked['p50_ms']:.2f} | {hooked['p99_ms']:.2f} "
            f"| {hooked['requests']} | {hooked['failed']} |",
            f"| ratio, hanging / none | {hooked['p50_ms'] / plain['p50_ms']:.2f}x "
            f"| {hooked['p99_ms'] / plain['p99_ms']:.2f}x | | |",
            "",
            "| the healthy endpoint, event to delivery | p50 ms | max ms | delivered |",
            "|---|---:|---:|---:|",
            f"| while {result['held']} attempts hang on the other {HANGING} | "
            f"{result['lag_p50_ms']:.1f} | {result['lag_max_ms']:.1f} "
            f"| {result['delivered']} of {result['events']} |",
        ]
    )


def main() -> None:
    """Measure, print one line per figure, then the Markdown tables."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--storages", default="sqlite,redis", help="sqlite, redis or both")
    parser.add_argument("--rows", default="latency,throughput,noisy,hanging")
    parser.add_argument("--events", type=int, default=50, help="latency row")
    parser.add_argument(
        "--setups",
        default="64:2:10000,1:64:5000,1:2:2000",
        help="the throughput row's endpoints:TENANT_WEBHOOK_ENDPOINT_CONCURRENCY:deliveries, "
        "comma-separated (the latency row uses the first)",
    )
    parser.add_argument("--in-flight", type=int, default=256, help="TENANT_WEBHOOK_IN_FLIGHT there")
    parser.add_argument("--noisy-backlog", type=int, default=30, help="events per noisy tenant")
    parser.add_argument("--quiet-events", type=int, default=200, help=f"{QUIET}'s events")
    parser.add_argument("--rate", type=float, default=10, help=f"{QUIET}'s events a second")
    parser.add_argument("--cpu-seconds", type=float, default=25, help="the noisy row's CPU")
    parser.add_argument(
        "--hanging-seconds", type=float, default=10, help="each wrk run of the hanging row"
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds, hanging row")
    args = parser.parse_args()
    args.rows = set(args.rows.split(","))
    args.setups = [tuple(int(n) for n in setup.split(":")) for setup in args.setups.split(",")]
    folder = tempfile.mkdtemp(prefix="bench-webhooks-")
    log = open(os.path.join(folder, "processes.log"), "w+")
    redis = None
    redis_db = iter(range(16))
    sqlite_db = iter(range(1000))

    def storage_url(kind: str) -> str:
        """A fresh storage of `kind`."""
        if kind == "redis":
            return f"redis://127.0.0.1:{redis_port}/{next(redis_db)}"
        return f"sqlite:///{folder}/{next(sqlite_db)}.sqlite3"

    storages = args.storages.split(",")
    if "redis" in storages:
        redis, redis_port = start_redis()
    tables = []
    started = time.monotonic()
    try:
        with LiveKitEmulator(keys={API_KEY: API_SECRET}) as livekit:
            settings = {
                "LIVEKIT_URL": livekit.ws_url,
                "LIVEKIT_API_KEY": API_KEY,
                "LIVEKIT_API_SECRET": API_SECRET,
                "AUTH_JWT_SECRET": TENANT_SECRET,
                "TENANT_WEBHOOK_SECRETS_KEY": base64.b64encode(os.urandom(32)).decode(),
                "TENANT_WEBHOOKS_ALLOW_PRIVATE": "true",
                "LOG_LEVEL": "WARNING",
            }
            if args.rows & {"latency", "throughput"}:
                results = [
                    measure_delivery(
                        args,
                        kind,
                        {**settings, "STORAGE_URL": storage_url(kind)},
                        log,
                        setup,
                        "latency" in args.rows and number == 0,
                    )
                    for number, setup in enumerate(args.setups)
                    for kind in storages
                ]
                tables.append(delivery_table(args, results))
            if "noisy" in args.rows:
                results = [
                    measure_noisy(args, kind, {**settings, "STORAGE_URL": storage_url(kind)}, log)
                    for kind in storages
                ]
                tables.append(noisy_table(args, results))
            if "hanging" in args.rows:
                kind = storages[0]
                result = measure_hanging(
                    args, settings, (storage_url(kind), storage_url(kind)), log
                )
                tables.append(hanging_table(kind, args, result))
    finally:
        if redis is not None:
            redis.terminate()
            redis.wait(10)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)
    print("\n" + "\n\n".join(tables))
    print(f"\n(bench.webhooks took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
