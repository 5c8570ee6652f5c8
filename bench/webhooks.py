"""Benchmark tenants' webhooks: the latency from a LiveKit event reaching the service to the
tenant's receiver getting it (p50/p95), the throughput of one worker process to one fast local
receiver, and the token route's latency while a tenant's endpoints hang.

Run: `python -m bench.webhooks [--storage sqlite|redis] [--events 50] [--deliveries 1000]
[--hanging] [--hanging-seconds 10] [--rounds 3]`. Every figure is printed as a line while it is
measured, and all of them as Markdown tables at the end.

- Latency and throughput: the service is built in this process on the LiveKit emulator and gets
  LiveKit-signed events; the worker is `python -m tokensvc.processes.worker` as the Procfile runs it
  (up to TENANT_WEBHOOK_IN_FLIGHT attempts at once); the receiver answers 200 on loopback.
- The hanging row (alone with `--hanging`): two services under gunicorn (the shipped
  gunicorn.conf.py), each on a storage of its own, driven by wrk (bench/run.py's `run_wrk` and
  bench/token.lua, 8 connections) with an authenticated existing-room POST /livekit/token. One
  has no webhooks at all (no endpoint, no worker). On the other the tenant has 10 endpoints, 9
  on a receiver that accepts connections and never answers, its events keep deliveries pending,
  and a worker process runs. The two are measured in interleaved rounds (the worker paused with
  SIGSTOP while the other is measured); the table gives the medians, their ratio, and how long
  after each event sent during the rounds the 10th (healthy) endpoint got it.

With `--storage redis`, a redis-server is started on a free port (Debian's redis-server on PATH).
"""

import argparse
import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from statistics import median

import jwt

from bench.openloop import percentile
from bench.run import run_wrk
from tokensvc import create_app
from tokensvc.context import service_state
from tokensvc.testing import LiveKitEmulator
from tokensvc.testing.processes import find_free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "bench-key"
API_SECRET = "bench-livekit-secret-0123456789abcdef0123456789"
TENANT_SECRET = "bench-tenant-secret-0123456789abcdef0123456789ab"
ROOM = "bench-room"
TENANT = "acme"
#: Endpoints of the tenant in the hanging row, and how many of them hang.
ENDPOINTS, HANGING = 10, 9
#: wrk's connections and threads in the hanging row (bench.run's defaults).
CLIENTS, THREADS = 8, 2


class Receiver:
    """A fast receiver on loopback: 200 to everything, the arrival time of each participant
    identity kept."""

    def __init__(self):
        """Listen on a free port."""
        self.arrived, self.changed = {}, threading.Condition()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                at = time.perf_counter()
                identity = json.loads(body)["data"]["participant"]["identity"]
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with owner.changed:
                    owner.arrived.setdefault(identity, at)
                    owner.changed.notify_all()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float) -> None:
        """Wait until `count` identities arrived."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(self.arrived) < count and time.monotonic() < deadline:
                self.changed.wait(0.1)


class HangingReceiver:
    """A receiver on loopback that accepts every connection and never answers."""

    def __init__(self):
        """Listen on a free port; accept in a background thread."""
        self.socket = socket.create_server(("127.0.0.1", 0), backlog=256)
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


def signed_event(identity: str) -> tuple[str, dict]:
    """A participant_joined event for ROOM, signed as LiveKit signs it."""
    body = json.dumps(
        {
            "event": "participant_joined",
            "id": "EV_" + os.urandom(6).hex(),
            "createdAt": str(int(time.time())),
            "room": {"name": ROOM},
            "participant": {"identity": identity},
        }
    )
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    now = int(time.time())
    auth = jwt.encode(
        {"iss": API_KEY, "sha256": digest, "nbf": now - 10, "exp": now + 300}, API_SECRET
    )
    return body, {"Content-Type": "application/webhook+json", "Authorization": auth}


def tenant_headers() -> dict:
    """The Authorization header of a token of TENANT, valid for an hour."""
    now = int(time.time())
    token = jwt.encode({"sub": TENANT, "iat": now, "exp": now + 3600}, TENANT_SECRET)
    return {"Authorization": f"Bearer {token}"}


def service_env(settings: dict) -> dict:
    """A child process's environment: this one's, without its own LiveKit and tenant keys, and
    `settings`."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "AUTH_"))}
    return {**inherited, **settings}


def measure_delivery(args, settings: dict) -> dict:
    """Event-to-receiver latency and one worker's throughput, with the service in this
    process; print each figure and return them."""
    app = create_app(settings)
    client = app.test_client()
    tenant = tenant_headers()
    receiver = Receiver()
    for path, body in (
        ("/livekit/webhook-endpoints", {"url": receiver.url}),
        (
            "/livekit/token",
            {"room_name": ROOM, "participant_name": "A", "participant_identity": "a"},
        ),
    ):
        answer = client.post(path, json=body, headers=tenant)
        assert answer.status_code < 300, answer.json
    env = service_env(settings)
    worker = subprocess.Popen(
        [sys.executable, "-m", "tokensvc.processes.worker"], cwd=ROOT, env=env
    )
    try:
        time.sleep(2.0)  # the worker starts
        sent = {}
        for number in range(args.events):
            identity = f"latency-{number}"
            body, headers = signed_event(identity)
            sent[identity] = time.perf_counter()
            client.post("/livekit/webhook", data=body, headers=headers)
            receiver.wait_for(number + 1, 10)
            time.sleep(0.02)
        lags = [
            (receiver.arrived[i] - at) * 1000 for i, at in sent.items() if i in receiver.arrived
        ]
        result = {
            "events": len(lags),
            "p50_ms": percentile(lags, 0.5),
            "p95_ms": percentile(lags, 0.95),
        }
        print(
            f"latency, event to receiver ({args.storage}, {len(lags)} events): "
            f"p50 {result['p50_ms']:.1f} ms, p95 {result['p95_ms']:.1f} ms",
            flush=True,
        )
        worker.terminate()
        worker.wait(30)
        for number in range(args.deliveries):
            body, headers = signed_event(f"throughput-{number}")
            client.post("/livekit/webhook", data=body, headers=headers)
        worker = subprocess.Popen(
            [sys.executable, "-m", "tokensvc.processes.worker"], cwd=ROOT, env=env
        )
        total = args.events + args.deliveries
        receiver.wait_for(total, 300)
        times = sorted(at for i, at in receiver.arrived.items() if i.startswith("throughput-"))
        state = service_state(app).settings
        result.update(
            deliveries=len(times),
            rate=(len(times) - 1) / (times[-1] - times[0]),
            in_flight=state.tenant_webhook_in_flight,
            concurrency=state.tenant_webhook_endpoint_concurrency,
        )
        print(
            f"throughput, one worker ({args.storage}, {result['in_flight']} in flight, "
            f"{len(times)} deliveries to one endpoint, at most {result['concurrency']} at once): "
            f"{result['rate']:.0f} deliveries/s",
            flush=True,
        )
        return result
    finally:
        worker.terminate()
        worker.wait(30)
        service_state(app).close()


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

    def post(self, path: str, data: bytes, headers: dict) -> int:
        """POST `data` and return the status."""
        request = urllib.request.Request(self.url + path, data, headers, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status

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


def measure_hanging(args, settings: dict, storages: tuple[str, str], folder: str) -> dict:
    """The token route's latency with no webhooks at all and with 9 of the tenant's 10 endpoints
    hanging, deliveries pending and the worker running, in interleaved rounds; and when the
    healthy endpoint got each event sent meanwhile. Print each round and return the medians."""
    log = open(os.path.join(folder, "hanging.log"), "w+")
    plain_settings = {**settings, "STORAGE_URL": storages[0], "METRICS_ENABLED": "true"}
    hooked_settings = {**plain_settings, "STORAGE_URL": storages[1]}
    plain, hooked = Gunicorn(plain_settings, log), Gunicorn(hooked_settings, log)
    hanging, healthy = HangingReceiver(), Receiver()
    tenant = tenant_headers()
    json_headers = {**tenant, "Content-Type": "application/json"}
    worker = None
    try:
        token_body = json.dumps(
            {"room_name": ROOM, "participant_name": "Bench", "participant_identity": "bench"}
        ).encode()
        for service in (plain, hooked):
            assert service.post("/livekit/token", token_body, json_headers) == 200
        for number in range(ENDPOINTS):
            url = healthy.url if number == ENDPOINTS - 1 else f"{hanging.url}/{number}"
            body = json.dumps({"url": url}).encode()
            assert hooked.post("/livekit/webhook-endpoints", body, json_headers) == 201
        worker = subprocess.Popen(
            [sys.executable, "-m", "tokensvc.processes.worker"],
            cwd=ROOT,
            env=service_env(hooked_settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        sent: dict[str, float] = {}

        def send(identity: str) -> None:
            """Post one event of the tenant's room to the hooked service."""
            body, headers = signed_event(identity)
            sent[identity] = time.perf_counter()
            assert hooked.post("/livekit/webhook", body.encode(), headers) == 200

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
        wrk_env = {"BENCH_ROOM": ROOM, "BENCH_AUTH": tenant["Authorization"], "BENCH_CLOSE": ""}
        for service in (plain, hooked):  # warm-up
            run_wrk(service.url + "/livekit/token", CLIENTS, THREADS, 2, wrk_env)
        runs: dict[str, list] = {"plain": [], "hooked": []}
        for round_no in range(args.rounds):
            worker.send_signal(signal.SIGSTOP)  # no webhooks at all: nothing of them runs
            runs["plain"].append(
                run_wrk(
                    plain.url + "/livekit/token", CLIENTS, THREADS, args.hanging_seconds, wrk_env
                )
            )
            worker.send_signal(signal.SIGCONT)
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
                file=sys.stderr,
                flush=True,
            )
        healthy.wait_for(len(sent), 30)
        during = {i: at for i, at in sent.items() if i.startswith("during-")}
        lags = [
            (healthy.arrived[i] - at) * 1000 for i, at in during.items() if i in healthy.arrived
        ]
        result = {
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
            worker.send_signal(signal.SIGCONT)
            worker.terminate()
            worker.wait(30)
        plain.stop()
        hooked.stop()
        log.close()


def p50_p99(run: dict) -> str:
    """A wrk run's p50 and p99, in ms."""
    return f"{run['p50_us'] / 1000:.2f}/{run['p99_us'] / 1000:.2f}"


def delivery_table(storage: str, result: dict) -> str:
    """The latency and throughput as a Markdown table."""
    return "\n".join(
        [
            "| storage | latency p50 | latency p95 | one worker, one endpoint |",
            "|---|---:|---:|---:|",
            f"| {storage} | {result['p50_ms']:.1f} ms | {result['p95_ms']:.1f} ms "
            f"| {result['rate']:.0f} deliveries/s |",
        ]
    )


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
    parser.add_argument("--storage", choices=("sqlite", "redis"), default="sqlite")
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument(
        "--hanging", action="store_true", help="only the token route beside hanging endpoints"
    )
    parser.add_argument(
        "--hanging-seconds", type=float, default=10, help="each wrk run of the hanging row"
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds, hanging row")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="bench-webhooks-")
    redis = None
    storages = [f"sqlite:///{folder}/{name}.sqlite3" for name in ("holds", "plain", "hooked")]
    if args.storage == "redis":
        port = find_free_port()
        redis = subprocess.Popen(
            [shutil.which("redis-server"), "--port", str(port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(port, redis, 10, "redis-server")
        storages = [f"redis://127.0.0.1:{port}/{db}" for db in range(3)]
    tables = []
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
            if not args.hanging:
                result = measure_delivery(args, {**settings, "STORAGE_URL": storages[0]})
                tables.append(delivery_table(args.storage, result))
            result = measure_hanging(args, settings, (storages[1], storages[2]), folder)
            tables.append(hanging_table(args.storage, args, result))
    finally:
        if redis is not None:
            redis.terminate()
            redis.wait(10)
        shutil.rmtree(folder, ignore_errors=True)
    print("\n" + "\n\n".join(tables))


if __name__ == "__main__":
    main()
