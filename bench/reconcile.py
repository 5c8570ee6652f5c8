"""Benchmark the reconciliation with LiveKit (tokensvc/reconcile.py): what one sweep costs at 100
and 1,000 live rooms, and the LiveKit events one instance takes in with the sweeper running.

Run: `python -m bench.reconcile [--storage sqlite|redis|both] [--rooms 100,1000] [--sweeps 7]
[--history 4000] [--seconds 8] [--rounds 3] [--interval 1] [--only sweep|events]`. Every figure
is printed as a line while it is measured, and all of them as Markdown tables at the end.

- The sweep: the service is built in this process (`create_app`) on the LiveKit emulator, which
  runs in a process of its own and is served over HTTP (the sweeper's client makes real calls;
  the emulator's CPU is not this process's). Each live room is held by one of 10 tenants through
  the service's own path: a tenant's token request creates it, a participant is seated in it and
  LiveKit's signed `participant_joined` for that participant is posted to `/livekit/webhook`, so
  the record agrees with what LiveKit lists. `Reconciler.sweep` is then timed on this process's
  CPU clock (every thread: the probes run in a pool) in several cases: steady state; the sweep
  that keeps every listed room's hold (a name's hold is kept at most once a minute, so one sweep
  in six at the default RECONCILE_INTERVAL); 1% of the rooms with a participant LiveKit lists
  and no event reported (seated afresh before each sweep); 1% of the rooms under watch (an
  identity removed from them), with the watch sweep that runs every WATCH_INTERVAL; the same
  after --history participants joined and left those rooms (their sessions closed). LiveKit
  calls by method are `Sweep.calls`, checked against the emulator's own counts; storage calls
  are the service's `tokensvc_storage_calls_total`. The tables give medians over the sweeps.
- Events per second: the service under gunicorn (the shipped gunicorn.conf.py) on the emulator,
  10 tenants each subscribed with one webhook endpoint on a fast loopback receiver (every event
  is fanned out into a delivery), 100 held rooms with a participant each, and wrk (bench/
  events.lua, 8 connections) posting pre-signed LiveKit webhooks (participant_joined and
  participant_left of a fresh participant, alternating; each with its sha256 and signed JWT as
  LiveKit sends them, each id used once). Three cases, measured in interleaved rounds on the
  same instance: no worker; the worker (`python -m tokensvc.processes.worker`) without LiveKit
  settings (deliveries only, no sweeper); the worker with them (deliveries and the sweeper, at
  RECONCILE_INTERVAL --interval). Each worker starts before its run and drains the deliveries
  left pending first; the sweeping one has swept once before its run starts.

With `--storage redis` (or both), a redis-server is started on a free port (Debian's
redis-server on PATH); wrk must be on PATH for the events rows.
"""

import argparse
import base64
import hashlib
import json
import multiprocessing
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from statistics import median

import jwt
from google.protobuf.json_format import MessageToDict, Parse
from livekit import api
from livekit.protocol import models

from bench.run import children, cpu_seconds, start_redis
from bench.webhooks import API_KEY, API_SECRET, TENANT_SECRET, Gunicorn
from tokensvc import create_app
from tokensvc.context import service_state
from tokensvc.processes.worker import reconciler_of
from tokensvc.roles import TENANT_ATTRIBUTE
from tokensvc.testing import LiveKitEmulator

ROOT = Path(__file__).resolve().parent.parent
LUA = Path(__file__).resolve().parent / "events.lua"
#: Tenants holding the rooms (round robin) and, in the events rows, each with one endpoint.
TENANTS = 10
#: Rooms held in the events rows, each with one participant the sweeper probes.
EVENT_ROOMS = 100
#: wrk's connections and threads in the events rows (bench.run's defaults).
CLIENTS, THREADS = 8, 2
#: The share of rooms that disagree with the record, or are under watch, in those cases.
SHARE = 0.01
#: The protobuf types the emulator's process sends back, by name.
MESSAGES = {"Room": models.Room, "ParticipantInfo": models.ParticipantInfo}


def serve_emulator(pipe, keys: dict) -> None:
    """A process's body: serve a LiveKit emulator, send its port, then run the method calls
    that come over `pipe` (None stops it). Protobuf answers go back serialized, errors as text."""
    with LiveKitEmulator(keys=keys) as emulator:
        pipe.send(emulator.port)
        while True:
            request = pipe.recv()
            if request is None:
                return
            name, args, kwargs = request
            try:
                if name == "calls":
                    answer = dict(emulator.calls)
                else:
                    answer = getattr(emulator, name)(*args, **kwargs)
                    if hasattr(answer, "SerializeToString"):
                        answer = ("message", answer.DESCRIPTOR.name, answer.SerializeToString())
            except Exception as exc:
                answer = ("error", f"{type(exc).__name__}: {exc}")
            pipe.send(answer)


class EmulatorProcess:
    """The LiveKit emulator in a process of its own (its CPU is not the sweeper's), with the
    emulator's methods that the bench uses called over a pipe."""

    def __init__(self, keys: dict):
        """Start it, accepting `keys` (API key -> secret), and wait for its port."""
        context = multiprocessing.get_context("spawn")
        self.pipe, theirs = context.Pipe()
        self.process = context.Process(
            target=serve_emulator, args=(theirs, keys), name="livekit-emulator", daemon=True
        )
        self.process.start()
        self.port = self.pipe.recv()
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.lock = threading.Lock()

    def call(self, name: str, *args, **kwargs):
        """Call the emulator's method `name` and return its answer."""
        with self.lock:
            self.pipe.send((name, args, kwargs))
            answer = self.pipe.recv()
        if isinstance(answer, tuple) and answer and answer[0] == "message":
            return MESSAGES[answer[1]].FromString(answer[2])
        if isinstance(answer, tuple) and answer and answer[0] == "error":
            raise RuntimeError(f"the emulator's {name}: {answer[1]}")
        return answer

    @property
    def calls(self) -> dict:
        """The RoomService calls it has answered so far, by method."""
        return self.call("calls")

    def add_participant(self, room, identity, state="ACTIVE", attributes=None):
        """Seat a participant (the emulator's `add_participant`)."""
        return self.call("add_participant", room, identity, state, attributes)

    def stored_room(self, name: str):
        """The store's entry of a room (the emulator's `stored_room`)."""
        return self.call("stored_room", name)

    def reset(self) -> None:
        """Forget every room and call count (each row starts on a LiveKit of its own)."""
        self.call("reset")

    def stop(self) -> None:
        """Stop it."""
        self.pipe.send(None)
        self.process.join(10)


def tenant_headers(tenant: str) -> dict:
    """The Authorization header of a token of `tenant`, valid for an hour."""
    now = int(time.time())
    token = jwt.encode({"sub": tenant, "iat": now, "exp": now + 3600}, TENANT_SECRET)
    return {"Authorization": f"Bearer {token}"}


def livekit_signed(body: str, key: str, secret: str, ttl: int = 300) -> dict:
    """The headers LiveKit sends a webhook `body` with: its sha256 in a JWT signed with the API
    key pair."""
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    now = int(time.time())
    auth = jwt.encode({"iss": key, "sha256": digest, "nbf": now - 10, "exp": now + ttl}, secret)
    return {"Content-Type": "application/webhook+json", "Authorization": auth}


def event_body(kind: str, room: dict, participant: dict) -> str:
    """A LiveKit webhook event's JSON, as LiveKit renders it (camelCase, a fresh id, created
    now), of `participant` in `room` (both in that rendering)."""
    return json.dumps(
        {
            "event": kind,
            "id": "EV_" + secrets.token_hex(8),
            "createdAt": str(int(time.time())),
            "room": room,
            "participant": participant,
        },
        separators=(",", ":"),
    )


def rendered(message) -> dict:
    """A LiveKit protobuf message as its webhooks render it."""
    return MessageToDict(message)


def initialise(app) -> None:
    """Say that the app's storage is a new deployment's, as `tokensvc storage init --force`
    does (--force: the bench's one LiveKit lists the rooms of its earlier rows); a fresh
    Redis is otherwise judged lost and its names quarantined."""
    result = app.test_cli_runner().invoke(args=["storage", "init", "--force"])
    assert result.exit_code == 0, result.output


def test_client_post(app):
    """`post(path, body, headers) -> status` through the app's test client."""
    client = app.test_client()
    return lambda path, body, headers: client.post(path, data=body, headers=headers).status_code


def hold_rooms(
    post, livekit, names: list[str], key: str = API_KEY, secret: str = API_SECRET
) -> list[tuple[dict, str]]:
    """Make each room held by a tenant (round robin over TENANTS) through the service's own
    path, with `post(path, body, headers) -> status`: the tenant's token request creates it; a
    participant of that tenant is seated in it, and LiveKit's signed participant_joined is
    posted (signed with LiveKit's API `key` and `secret`), so the record agrees with LiveKit.
    Each room's rendering and tenant."""
    held = []
    for index, name in enumerate(names):
        tenant = f"tenant-{index % TENANTS}"
        identity = f"member-{index}"
        body = {"room_name": name, "participant_name": "Member", "participant_identity": identity}
        headers = {**tenant_headers(tenant), "Content-Type": "application/json"}
        status = post("/livekit/token", json.dumps(body).encode(), headers)
        assert status == 200, f"token request for {name}: {status}"
        participant = livekit.add_participant(name, identity, "ACTIVE", {TENANT_ATTRIBUTE: tenant})
        room = rendered(livekit.stored_room(name))
        event = event_body("participant_joined", room, rendered(participant))
        status = post("/livekit/webhook", event.encode(), livekit_signed(event, key, secret))
        assert status == 200, f"participant_joined of {name}: {status}"
        held.append((room, tenant))
    return held


def storage_calls(state) -> float:
    """The storage calls this process's service made so far (its metrics' counter)."""
    return sum(
        sample.value
        for metric in state.metrics.storage_calls.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


def difference(after: dict, before: dict) -> dict:
    """Calls by method between two counts, the methods called only."""
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def timed_sweep(sweep, state, livekit) -> dict:
    """Run one sweep (`sweep()`, returning a `Sweep`): its LiveKit calls (the sweeper's count
    and the emulator's), repairs, storage calls, this process's CPU ms and wall ms."""
    calls_before, stored_before = dict(livekit.calls), storage_calls(state)
    cpu, wall = time.process_time(), time.perf_counter()
    done = sweep()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    stored = storage_calls(state) - stored_before
    return {
        "calls": dict(done.calls),
        "seen": difference(dict(livekit.calls), calls_before),
        "repairs": dict(done.repairs),
        "storage": stored,
        "cpu_ms": cpu * 1000,
        "wall_ms": wall * 1000,
    }


def summary(runs: list[dict]) -> dict:
    """Medians over several timed sweeps (calls, storage calls, CPU, wall), whether every
    sweep's own count of calls was the emulator's, and the repairs of all of them."""
    methods = sorted(
        {m for run in runs for m in run["calls"]} | {m for r in runs for m in r["seen"]}
    )
    repairs: dict[str, int] = {}
    for run in runs:
        for kind, n in run["repairs"].items():
            repairs[kind] = repairs.get(kind, 0) + n
    return {
        "sweeps": len(runs),
        "calls": {m: median(run["calls"].get(m, 0) for run in runs) for m in methods},
        "agree": all(run["calls"] == run["seen"] for run in runs),
        "storage": median(run["storage"] for run in runs),
        "cpu_ms": median(run["cpu_ms"] for run in runs),
        "cpu_max_ms": max(run["cpu_ms"] for run in runs),
        "wall_ms": median(run["wall_ms"] for run in runs),
        "repairs": repairs,
    }


def sweep_cases(
    app, livekit, names: list[str], sweeps: int, emit, history: int = 0
) -> list[tuple[str, dict]]:
    """Time the sweeps of the held rooms `names` in each case (see the module's docstring);
    `emit(case, result)` is told of each as it is measured; the (case, result) pairs."""
    state = service_state(app)
    reconciler = reconciler_of(state)
    assert reconciler is not None
    reconciler.sweep()  # the first sweep keeps every hold; later ones, once a minute per name
    some = max(1, round(len(names) * SHARE))
    results = []

    def case(title: str, sweep, before=None) -> None:
        runs = []
        for number in range(sweeps):
            if before is not None:
                before(number)
            runs.append(timed_sweep(sweep, state, livekit))
        results.append((title, summary(runs)))
        emit(title, results[-1][1])

    case("steady state: the record agrees", reconciler.sweep)
    case(
        "steady state, every hold due (one sweep a minute)",
        reconciler.sweep,
        lambda number: reconciler.kept.clear(),
    )

    def seat_unreported(number: int) -> None:
        """Seat a participant no event reports in `some` rooms (others at each sweep)."""
        for index in range(some):
            name = names[(number * some + index) % len(names)]
            tenant = f"tenant-{names.index(name) % TENANTS}"
            identity = f"unreported-{number}-{index}"
            livekit.add_participant(name, identity, "ACTIVE", {TENANT_ATTRIBUTE: tenant})

    case(f"{some} room(s) with a participant never reported", reconciler.sweep, seat_unreported)
    for name in names[-some:]:
        state.issuer.ownership.remove(name, "removed-identity")
    case(f"{some} room(s) under watch", reconciler.sweep)
    case(f"watch sweep, {some} room(s) under watch", reconciler.watch_sweep)
    if history:
        past_sessions(state, livekit, names, history)
        case(f"{some} room(s) under watch, after {history} past sessions", reconciler.sweep)
    return results


def past_sessions(state, livekit, names: list[str], count: int) -> None:
    """`count` participants join and leave the rooms `names` (in turn) as LiveKit's events
    tell the service (`Ownership.on_event`, what /livekit/webhook calls once it verified an
    event): the record of each room's life keeps their closed sessions."""
    rooms = [rendered(livekit.stored_room(name)) for name in names]
    nonce = secrets.token_hex(3)
    for number in range(count):
        index = number % len(names)
        participant = {
            "sid": f"PA_past{nonce}{number}",
            "identity": f"past-{nonce}-{number}",
            "joinedAt": str(int(time.time())),
            "attributes": {TENANT_ATTRIBUTE: f"tenant-{index % TENANTS}"},
        }
        for kind in ("participant_joined", "participant_left"):
            event = Parse(event_body(kind, rooms[index], participant), api.WebhookEvent())
            state.issuer.ownership.on_event(event)


def measure_sweep(args, storage: str, storage_url: str, livekit, count: int) -> list:
    """Hold `count` rooms on a fresh service and time its sweeps; print each case's figures
    and return the (case, result) pairs."""
    settings = {
        "LIVEKIT_URL": livekit.ws_url,
        "LIVEKIT_API_KEY": API_KEY,
        "LIVEKIT_API_SECRET": API_SECRET,
        "AUTH_JWT_SECRET": TENANT_SECRET,
        "TENANT_WEBHOOK_SECRETS_KEY": base64.b64encode(os.urandom(32)).decode(),
        "STORAGE_URL": storage_url,
        "METRICS_ENABLED": "true",
        "LOG_LEVEL": "WARNING",
    }
    livekit.reset()  # a room listed with no record would cost a ListParticipants each sweep
    app = create_app(settings)
    initialise(app)
    prefix = f"sweep-{count}-{secrets.token_hex(3)}"
    names = [f"{prefix}-{index}" for index in range(count)]
    started = time.perf_counter()
    try:
        hold_rooms(test_client_post(app), livekit, names)
        print(
            f"sweep ({storage}, {count} live rooms): held in {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
            flush=True,
        )

        def emit(title: str, result: dict) -> None:
            print(
                f"sweep ({storage}, {count} live rooms, {title}): "
                f"LiveKit calls {calls_text(result['calls'])}"
                f"{'' if result['agree'] else ' (NOT the emulator count)'}, "
                f"{result['storage']:.0f} storage calls, CPU {result['cpu_ms']:.1f} ms "
                f"(max {result['cpu_max_ms']:.1f}), wall {result['wall_ms']:.1f} ms, "
                f"repairs {result['repairs'] or 'none'}",
                flush=True,
            )

        return sweep_cases(app, livekit, names, args.sweeps, emit, args.history)
    finally:
        service_state(app).close()


def calls_text(calls: dict) -> str:
    """LiveKit calls by method, in a few words."""
    return ", ".join(f"{n:g} {method}" for method, n in sorted(calls.items())) or "none"


class CountingReceiver:
    """A fast webhook receiver on loopback: 204 to every POST, kept-alive, counted."""

    def __init__(self):
        """Listen on a free port."""
        self.received = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(204)
                self.end_headers()
                owner.received += 1

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop listening."""
        self.server.shutdown()
        self.server.server_close()


class Events:
    """The rooms the events rows' events are of: each held room's rendering, its tenant."""

    def __init__(self, rooms: list[tuple[dict, str]]):
        """Keep (room rendering, tenant) pairs."""
        self.rooms = rooms
        self.made = 0

    def write(self, path: str, count: int, key: str, secret: str) -> None:
        """Write `count` LiveKit-signed events to `path`, one `Authorization<TAB>body` a line:
        participant_joined then participant_left of each fresh participant, in the held rooms
        in turn, ids never used before."""
        now = int(time.time())
        with open(path, "w") as handle:
            for number in range(count):
                pair = self.made + number // 2
                room, tenant = self.rooms[pair % len(self.rooms)]
                participant = {
                    "sid": f"PA_guest{pair}",
                    "identity": f"guest-{pair}",
                    "state": "ACTIVE" if number % 2 == 0 else "DISCONNECTED",
                    "joinedAt": str(now),
                    "joinedAtMs": str(now * 1000),
                    "attributes": {TENANT_ATTRIBUTE: tenant},
                }
                kind = "participant_joined" if number % 2 == 0 else "participant_left"
                body = event_body(kind, room, participant)
                auth = livekit_signed(body, key, secret, ttl=900)["Authorization"]
                handle.write(f"{auth}\t{body}\n")
        self.made += (count + 1) // 2


def run_events(url: str, path: str, seconds: float) -> dict:
    """wrk with bench/events.lua posting the events of `path` for `seconds`; its summary."""
    output = subprocess.run(
        [
            "wrk",
            "-t",
            str(THREADS),
            "-c",
            str(CLIENTS),
            "-d",
            f"{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            url + "/livekit/webhook",
        ],
        env={**os.environ, "BENCH_EVENTS": path, "BENCH_THREADS": str(THREADS)},
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=True,
    ).stdout
    line = next(line for line in output.splitlines() if line.startswith("BENCH "))
    return json.loads(line[len("BENCH ") :])


class WorkerProcess:
    """`python -m tokensvc.processes.worker` on the service's storage, started for one run."""

    def __init__(self, settings: dict, log, sweeping: bool, interval: float):
        """Start it; without `sweeping` it gets no LiveKit settings (deliveries only)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "AUTH_"))}
        env.update(settings)
        env["RECONCILE_INTERVAL"] = f"{interval:g}"
        if not sweeping:
            env = {k: v for k, v in env.items() if not k.startswith("LIVEKIT_")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tokensvc.processes.worker"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def cpu(self) -> float:
        """Its CPU seconds so far."""
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        """Stop it gracefully."""
        self.process.terminate()
        self.process.wait(30)


def wait_until(check, seconds: float, what: str) -> None:
    """Wait until `check()` is true; RuntimeError after `seconds`."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {seconds:g} s")
        time.sleep(0.2)


CASES = (
    ("no worker", None),
    ("worker, no sweeper (deliveries only)", False),
    ("worker with the sweeper", True),
)


def measure_events(args, storage: str, storage_url: str, livekit, folder: str) -> dict:
    """Events per second one instance takes in, in each case of CASES (interleaved rounds);
    print each run and return the medians by case."""
    log = open(os.path.join(folder, "events.log"), "w+")
    settings = {
        "LIVEKIT_URL": livekit.ws_url,
        "LIVEKIT_API_KEY": API_KEY,
        "LIVEKIT_API_SECRET": API_SECRET,
        "AUTH_JWT_SECRET": TENANT_SECRET,
        "TENANT_WEBHOOK_SECRETS_KEY": base64.b64encode(os.urandom(32)).decode(),
        "TENANT_WEBHOOKS_ALLOW_PRIVATE": "true",
        "STORAGE_URL": storage_url,
        "METRICS_ENABLED": "true",
        "LOG_LEVEL": "WARNING",
    }
    livekit.reset()
    first = create_app(settings)
    initialise(first)
    service_state(first).close()
    service = Gunicorn(settings, log)
    receiver = CountingReceiver()
    worker = None
    try:
        for index in range(TENANTS):
            body = json.dumps({"url": receiver.url}).encode()
            headers = {**tenant_headers(f"tenant-{index}"), "Content-Type": "application/json"}
            assert service.status("/livekit/webhook-endpoints", body, headers) == 201
        prefix = f"events-{secrets.token_hex(3)}"
        held = hold_rooms(service.status, livekit, [f"{prefix}-{n}" for n in range(EVENT_ROOMS)])
        events = Events(held)
        path = os.path.join(folder, "events.txt")
        pending = lambda: service.metric("tokensvc_webhook_deliveries_pending")  # noqa: E731
        # Warm-up, and the rate that sizes each run's events (each id is posted once).
        events.write(path, 4000, API_KEY, API_SECRET)
        warm = run_events(service.url, path, 2)
        rate = warm["requests"] / (warm["duration_us"] / 1e6)
        needed = int(rate * args.seconds * 2.5) + 2000
        print(
            f"events ({storage}): warm-up {rate:.0f} events/s; {needed} events per run",
            file=sys.stderr,
            flush=True,
        )
        runs: dict[str, list] = {title: [] for title, _ in CASES}
        pids = [service.process.pid, *children(service.process.pid)]
        for round_no in range(args.rounds):
            for title, sweeping in CASES:
                if sweeping is not None:
                    worker = WorkerProcess(settings, log, sweeping, args.interval)
                    wait_until(lambda: pending() == 0, 300, "the worker drains the deliveries")
                    if sweeping:
                        listed = livekit.calls.get("ListRooms", 0)
                        wait_until(
                            lambda listed=listed: livekit.calls.get("ListRooms", 0) > listed,
                            30,
                            "the sweeper sweeps",
                        )
                events.write(path, needed, API_KEY, API_SECRET)
                calls_before, received = livekit.calls, receiver.received
                cpu = sum(cpu_seconds(pid) for pid in pids)
                worker_cpu = worker.cpu() if worker is not None else 0.0
                run = run_events(service.url, path, args.seconds)
                run["service_cpu_s"] = sum(cpu_seconds(pid) for pid in pids) - cpu
                run["worker_cpu_s"] = worker.cpu() - worker_cpu if worker is not None else 0.0
                run["livekit"] = difference(livekit.calls, calls_before)
                run["delivered"] = receiver.received - received
                run["pending"] = pending()
                run["rate"] = run["requests"] / (run["duration_us"] / 1e6)
                if worker is not None:
                    worker.stop()
                    worker = None
                runs[title].append(run)
                print(
                    f"events ({storage}, round {round_no + 1}/{args.rounds}, {title}): "
                    f"{run['rate']:.0f} events/s, p50/p99 {run['p50_us'] / 1000:.1f}/"
                    f"{run['p99_us'] / 1000:.1f} ms, {run['failed']} non-2xx, "
                    f"{run['socket_errors']} socket errors, {run['reused']} reused, "
                    f"{run['delivered']} delivered meanwhile ({run['pending']:.0f} pending), "
                    f"service CPU {run['service_cpu_s']:.1f} s, worker CPU "
                    f"{run['worker_cpu_s']:.1f} s, LiveKit calls {calls_text(run['livekit'])}",
                    flush=True,
                )
        return {title: events_summary(measured) for title, measured in runs.items()}
    finally:
        if worker is not None:
            worker.stop()
        service.stop()
        receiver.stop()
        log.close()


def events_summary(runs: list[dict]) -> dict:
    """Medians over a case's runs, failures summed."""
    return {
        "rate": median(run["rate"] for run in runs),
        "p50_ms": median(run["p50_us"] for run in runs) / 1000,
        "p99_ms": median(run["p99_us"] for run in runs) / 1000,
        "events": sum(run["requests"] for run in runs),
        "failed": sum(run["failed"] + run["socket_errors"] for run in runs),
        "reused": sum(run["reused"] for run in runs),
        "service_cpu_ms": median(
            1000 * run["service_cpu_s"] / max(1, run["requests"]) for run in runs
        ),
        "worker_cpu": median(run["worker_cpu_s"] / (run["duration_us"] / 1e6) for run in runs),
        "delivered": median(run["delivered"] / (run["duration_us"] / 1e6) for run in runs),
        "sweeps": median(run["livekit"].get("ListRooms", 0) for run in runs),
        "livekit": median(sum(run["livekit"].values()) for run in runs),
    }


def sweep_table(results: list[tuple[str, int, str, dict]]) -> str:
    """The sweep rows as a Markdown table."""
    lines = [
        "| storage | live rooms | case | ListRooms | SendData | ListParticipants | other "
        "LiveKit calls | = emulator's count | storage calls | CPU ms | wall ms |",
        "|---|---:|---|---:|---:|---:|---|:-:|---:|---:|---:|",
    ]
    for storage, count, title, result in results:
        calls = dict(result["calls"])
        main = [calls.pop(m, 0) for m in ("ListRooms", "SendData", "ListParticipants")]
        lines.append(
            f"| {storage} | {count} | {title} | {main[0]:g} | {main[1]:g} | {main[2]:g} "
            f"| {calls_text(calls) if calls else ''} | {'yes' if result['agree'] else 'NO'} "
            f"| {result['storage']:.0f} | {result['cpu_ms']:.1f} | {result['wall_ms']:.1f} |"
        )
    return "\n".join(lines)


def events_table(storage: str, args, results: dict) -> str:
    """The events rows of one storage as a Markdown table."""
    lines = [
        f"LiveKit events into one instance ({storage}; gunicorn.conf.py as shipped; wrk, "
        f"{CLIENTS} connections; {TENANTS} tenants with one endpoint each, {EVENT_ROOMS} held "
        f"rooms; medians of {args.rounds} interleaved rounds of {args.seconds:g} s; sweeper "
        f"every {args.interval:g} s):",
        "",
        "| case | events/s | p50 ms | p99 ms | failed | service CPU ms/event | worker CPU "
        "(cores) | delivered/s | sweeps per run |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for title, result in results.items():
        failed = str(result["failed"])
        if result["reused"]:
            failed += f" ({result['reused']} ids reused)"
        lines.append(
            f"| {title} | {result['rate']:.0f} | {result['p50_ms']:.1f} | {result['p99_ms']:.1f} "
            f"| {failed} | {result['service_cpu_ms']:.2f} | {result['worker_cpu']:.2f} "
            f"| {result['delivered']:.0f} | {result['sweeps']:g} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Measure, print one line per figure, then the Markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", choices=("sqlite", "redis", "both"), default="both")
    parser.add_argument("--rooms", default="100,1000", help="live rooms of the sweep rows")
    parser.add_argument("--sweeps", type=int, default=7, help="timed sweeps per case")
    parser.add_argument(
        "--history",
        type=int,
        default=4000,
        help="past sessions (a join and a leave each) in the rooms of the last sweep case",
    )
    parser.add_argument("--seconds", type=float, default=8, help="each wrk run, events rows")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds, events rows")
    parser.add_argument(
        "--interval", type=float, default=1.0, help="the worker's RECONCILE_INTERVAL, s"
    )
    parser.add_argument("--only", choices=("sweep", "events"), help="one kind of row only")
    args = parser.parse_args()
    storages = ("sqlite", "redis") if args.storage == "both" else (args.storage,)
    counts = [int(count) for count in args.rooms.split(",") if count]
    folder = tempfile.mkdtemp(prefix="bench-reconcile-")
    livekit = EmulatorProcess({API_KEY: API_SECRET})
    redis = None
    swept: list[tuple[str, int, str, dict]] = []
    taken: dict[str, dict] = {}
    started = time.perf_counter()
    try:
        for storage in storages:
            if storage == "redis":
                redis, port = start_redis()
            urls = iter(
                [f"redis://127.0.0.1:{port}/{db}" for db in range(16)]
                if storage == "redis"
                else [f"sqlite:///{folder}/{storage}-{n}.sqlite3" for n in range(16)]
            )
            if args.only != "events":
                for count in counts:
                    for title, result in measure_sweep(args, storage, next(urls), livekit, count):
                        swept.append((storage, count, title, result))
            if args.only != "sweep":
                taken[storage] = measure_events(args, storage, next(urls), livekit, folder)
            if redis is not None:
                redis.terminate()
                redis.wait(10)
                redis = None
    finally:
        livekit.stop()
        if redis is not None:
            redis.terminate()
            redis.wait(10)
        shutil.rmtree(folder, ignore_errors=True)
    tables = []
    if swept:
        tables.append(
            f"One sweep (Reconciler.sweep; medians of {args.sweeps} sweeps; CPU: the sweeping "
            "process's, the emulator's own excluded; LiveKit over HTTP on loopback):\n\n"
            + sweep_table(swept)
        )
    for storage, results in taken.items():
        tables.append(events_table(storage, args, results))
    print(f"\n{os.cpu_count()} cores; {time.perf_counter() - started:.0f} s in all\n")
    print("\n\n".join(tables))
    if any(not result["agree"] for *_, result in swept):
        sys.exit("a sweep's own count of LiveKit calls is not the emulator's")
    if any(result["failed"] for results in taken.values() for result in results.values()):
        sys.exit("events were refused (non-2xx or socket errors)")


if __name__ == "__main__":
    main()
