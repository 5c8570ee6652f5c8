"""Benchmark tenants' webhooks: the latency from a LiveKit event reaching the service to the
tenant's receiver getting it (p50/p95), and the throughput of one worker process to one fast
local receiver.

Run: `python -m bench.webhooks [--storage sqlite|redis] [--events 50] [--deliveries 1000]`.
The service is built in this process on the LiveKit emulator and gets LiveKit-signed events;
the worker is `python -m tokensvc.worker` as the Procfile runs it (TENANT_WEBHOOK_WORKERS
threads); the receiver answers 200 on loopback. With `--storage redis`, a redis-server is started
on a free port (Debian's redis-server on PATH).
"""

import argparse
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt

from tokensvc import create_app
from tokensvc.context import service_state
from tokensvc.testing import LiveKitEmulator
from tokensvc.testing.processes import find_free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "bench-key"
API_SECRET = "bench-livekit-secret-0123456789abcdef0123456789"
TENANT_SECRET = "bench-tenant-secret-0123456789abcdef0123456789ab"
ROOM = "bench-room"


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


def percentile(values: list[float], share: float) -> float:
    """The value below which `share` of `values` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def main() -> None:
    """Measure, print one line per figure."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--storage", choices=("sqlite", "redis"), default="sqlite")
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--deliveries", type=int, default=1000)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="bench-webhooks-")
    redis = None
    storage = f"sqlite:///{folder}/holds.sqlite3"
    if args.storage == "redis":
        port = find_free_port()
        redis = subprocess.Popen(
            [shutil.which("redis-server"), "--port", str(port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(port, redis, 10, "redis-server")
        storage = f"redis://127.0.0.1:{port}/0"
    with LiveKitEmulator(keys={API_KEY: API_SECRET}) as livekit:
        settings = {
            "LIVEKIT_URL": livekit.ws_url,
            "LIVEKIT_API_KEY": API_KEY,
            "LIVEKIT_API_SECRET": API_SECRET,
            "AUTH_JWT_SECRET": TENANT_SECRET,
            "STORAGE_URL": storage,
            "TENANT_WEBHOOKS_ALLOW_PRIVATE": "true",
            "LOG_LEVEL": "WARNING",
        }
        app = create_app(settings)
        client = app.test_client()
        now = int(time.time())
        tenant = {
            "Authorization": "Bearer "
            + jwt.encode({"sub": "acme", "iat": now, "exp": now + 3600}, TENANT_SECRET)
        }
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
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "AUTH_"))},
            **settings,
        }
        worker = subprocess.Popen([sys.executable, "-m", "tokensvc.worker"], cwd=ROOT, env=env)
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
            print(
                f"latency, event to receiver ({args.storage}, {len(lags)} events): "
                f"p50 {percentile(lags, 0.5):.1f} ms, p95 {percentile(lags, 0.95):.1f} ms"
            )
            worker.terminate()
            worker.wait(30)
            for number in range(args.deliveries):
                body, headers = signed_event(f"throughput-{number}")
                client.post("/livekit/webhook", data=body, headers=headers)
            worker = subprocess.Popen([sys.executable, "-m", "tokensvc.worker"], cwd=ROOT, env=env)
            total = args.events + args.deliveries
            receiver.wait_for(total, 300)
            times = sorted(at for i, at in receiver.arrived.items() if i.startswith("throughput-"))
            rate = (len(times) - 1) / (times[-1] - times[0])
            print(
                f"throughput, one worker ({args.storage}, "
                f"{service_state(app).settings.tenant_webhook_workers} threads, "
                f"{len(times)} deliveries to one endpoint, at most "
                f"{service_state(app).settings.tenant_webhook_endpoint_concurrency} at once): "
                f"{rate:.0f} deliveries/s"
            )
        finally:
            worker.terminate()
            worker.wait(30)
            service_state(app).close()
            if redis is not None:
                redis.terminate()
                redis.wait(10)
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
