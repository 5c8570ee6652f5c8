"""Benchmark the token route under gunicorn (shipped gunicorn.conf.py) on the emulator and the real
livekit-server, with kept-alive connections and with one connection per request.

Run: `make bench` (or `python -m bench.run`; needs `wrk` on PATH). Rows 1r, 2r and 4r run on the
real livekit-server when scripts/livekit-server finds it. Every row's server runs for the whole
benchmark and the rows are measured in interleaved rounds, so drift on a shared machine hits
every row alike; the tables show medians over the rounds. Everything is on loopback and bounded
in time: a warm-up until --warmup requests, then rounds sized from the warm-up's rate to reach
--requests in all, each wrk run capped at --seconds.
"""

import argparse
import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import jwt

from bench.openloop import percentile
from tokensvc.testing import LiveKitServer
from tokensvc.testing.processes import find_free_port, find_livekit_server, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
LUA = Path(__file__).resolve().parent / "token.lua"
API_KEY = "bench-key"
API_SECRET = "bench-livekit-secret-0123456789abcdef0123456789"
TENANT_SECRET = "bench-tenant-secret-0123456789abcdef0123456789ab"
#: The key sealing tenants' webhook secrets at rest (32 bytes, base64), for the bench only.
SECRETS_KEY = "YmVuY2gtd2ViaG9vay1zZWNyZXRzLWtleS0zMi1ieXQ="
TICKS = os.sysconf("SC_CLK_TCK")
NAIVE_CONFIG = "bench/naive_gunicorn.conf.py"
#: Row 2 makes a room per request; rooms that close after 2 s keep the LiveKit it shares with the
#: other rows from sweeping tens of thousands of idle rooms every second (which slowed every row).
SHORT_LIVED_ROOMS = (("ROOM_EMPTY_TIMEOUT", "2"),)


@dataclass(frozen=True)
class Row:
    """One benchmark row: which app, whether authenticated, which room, on which LiveKit."""

    key: str
    title: str
    app: str
    authenticated: bool
    room: str  # empty: a new room on every request
    livekit: str = "emulator"
    config: str = "gunicorn.conf.py"
    env: tuple = ()  # extra settings for this row's service
    storage: str = "sqlite"  # where the service keeps its ownership record: sqlite or redis


ROWS = (
    Row("1", "service, authenticated, existing room", "app:app", True, "bench-existing"),
    Row(
        "1s",
        "as 1, ownership record in Redis",
        "app:app",
        True,
        "bench-existing-redis",
        storage="redis",
    ),
    Row(
        "1t",
        "as 1, ROOM_NAMES=per-tenant",
        "app:app",
        True,
        "bench-existing-tenant",
        env=(("ROOM_NAMES", "per-tenant"),),
    ),
    Row(
        "1q",
        "as 1, with QUOTA_MAX_ROOMS and QUOTA_MAX_PARTICIPANTS",
        "app:app",
        True,
        "bench-existing-quota",
        env=(("QUOTA_MAX_ROOMS", "1000"), ("QUOTA_MAX_PARTICIPANTS", "1000")),
    ),
    Row(
        "2",
        "service, authenticated, new room each request",
        "app:app",
        True,
        "",
        env=SHORT_LIVED_ROOMS,
    ),
    Row(
        "2s",
        "as 2, ownership record in Redis",
        "app:app",
        True,
        "",
        env=SHORT_LIVED_ROOMS,
        storage="redis",
    ),
    Row("3", "service, unauthenticated", "app:app", False, "bench-open"),
    Row(
        "4",
        "naive asyncio.run + fresh LiveKitAPI, auth, existing room (gthread)",
        "bench.naive_app:app",
        True,
        "bench-existing-naive",
        config=NAIVE_CONFIG,
    ),
    Row(
        "5", "bare Flask route, constant JSON (floor)", "bench.floor_app:app", False, "bench-floor"
    ),
    Row(
        "6",
        "bare Flask route: verify one HS256 JWT, read one SQLite row, sign one (work floor)",
        "bench.work_floor_app:app",
        True,
        "bench-work-floor",
    ),
    Row("1r", "as 1, on livekit-server", "app:app", True, "bench-existing", "livekit-server"),
    Row(
        "2r",
        "as 2, on livekit-server",
        "app:app",
        True,
        "",
        "livekit-server",
        env=SHORT_LIVED_ROOMS,
    ),
    Row(
        "4r",
        "as 4, on livekit-server",
        "bench.naive_app:app",
        True,
        "bench-existing-naive",
        "livekit-server",
        NAIVE_CONFIG,
    ),
)
MODES = ("keep-alive", "close")  # close: one connection per request, as curl and some routers


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def children(pid: int) -> list[int]:
    """The direct children of a process (gunicorn's workers)."""
    with open(f"/proc/{pid}/task/{pid}/children") as handle:
        return [int(child) for child in handle.read().split()]


def rss_mib(pid: int) -> float:
    """Resident set size of one process, MiB."""
    with open(f"/proc/{pid}/status") as handle:
        match = re.search(r"VmRSS:\s+(\d+) kB", handle.read())
    return int(match.group(1)) / 1024


def emulator_calls(url: str) -> int:
    """Total RoomService calls the emulator has answered."""
    with urllib.request.urlopen(url + "/emulator/state", timeout=10) as response:
        return sum(json.loads(response.read())["calls"].values())


def run_wrk(url, clients, threads, seconds, env, prefix=()) -> dict:
    """Run wrk with the token script for `seconds` (after `prefix`, e.g. taskset); return its
    summary."""
    command = [
        *prefix,
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(clients),
        "-d",
        f"{math.ceil(seconds)}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
    ]
    output = subprocess.run(
        command,
        env={**os.environ, **env, "BENCH_NONCE": str(time.time_ns())},
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    line = next(line for line in output.splitlines() if line.startswith("BENCH "))
    return json.loads(line[len("BENCH ") :])


def run_warmup(url, args, env) -> dict:
    """Warm up until at least --warmup requests were answered (bounded by --seconds)."""
    seconds, total = 1, None
    while True:
        result = run_wrk(url, args.clients, args.threads, seconds, env)
        if total is None:
            total = result
        else:
            total = {k: total[k] + result[k] for k in ("requests", "duration_us", "failed")}
        if total["requests"] >= args.warmup or total["duration_us"] / 1e6 >= args.seconds:
            return total
        seconds = min(args.seconds, 2 * seconds)


class Server:
    """One row's gunicorn, with the shipped config, and its measurements."""

    def __init__(self, row: Row, mode: str, livekit_url: str, redis_url: str | None):
        """Start gunicorn for `row` on a free port; wrk will use connection `mode`. The
        service's rows keep their ownership record in a SQLite file of their own or in the
        Redis at `redis_url`, and count storage calls in their /metrics."""
        self.row, self.mode = row, mode
        self.port = find_free_port()
        self.service = row.app == "app:app"
        scratch = tempfile.mkdtemp(prefix="tokensvc-bench-")
        # What the server printed: when a row has failed requests, the run says why.
        self.log = open(os.path.join(scratch, "gunicorn.log"), "w+")
        storage = redis_url if row.storage == "redis" else f"sqlite:///{scratch}/holds.sqlite3"
        service_env = (
            {"STORAGE_URL": storage, "METRICS_ENABLED": "true", "PROMETHEUS_MULTIPROC_DIR": scratch}
            if self.service
            else {}
        )
        env = {
            **os.environ,
            "PORT": str(self.port),
            "LIVEKIT_URL": livekit_url,
            "LIVEKIT_API_KEY": API_KEY,
            "LIVEKIT_API_SECRET": API_SECRET,
            # Unauthenticated rows run with no tenant key at all: the seed's open mode.
            "AUTH_JWT_SECRET": TENANT_SECRET if row.authenticated else "",
            # Tenants' webhook secrets are sealed at rest: a tenant key needs a sealing key.
            "TENANT_WEBHOOK_SECRETS_KEY": SECRETS_KEY,
            **service_env,
            **dict(row.env),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", row.config, row.app],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}/livekit/token"
        self.wrk_env = {
            "BENCH_ROOM": row.room,
            "BENCH_AUTH": "",
            "BENCH_CLOSE": "1" if mode == "close" else "",
        }
        if row.authenticated:
            now = int(time.time())
            token = jwt.encode(
                {"sub": "bench-tenant", "iat": now, "exp": now + 3600}, TENANT_SECRET, "HS256"
            )
            self.wrk_env["BENCH_AUTH"] = f"Bearer {token}"
        self.runs = []
        self.calls = 0
        self.storage_calls = 0.0
        self.cpu = 0.0

    def pids(self) -> list[int]:
        """The master and its workers."""
        return [self.process.pid, *children(self.process.pid)]

    def rss(self) -> float:
        """Total RSS of the workers, MiB."""
        return sum(rss_mib(pid) for pid in children(self.process.pid))

    def run(self, args, seconds, emulator_url) -> None:
        """One measured wrk run: latency, throughput, app CPU and LiveKit calls (emulator only)."""
        pids = self.pids()
        counted = self.row.livekit == "emulator"
        cpu_before = sum(cpu_seconds(pid) for pid in pids)
        calls_before = emulator_calls(emulator_url) if counted else 0
        storage_before = self.counted_storage_calls()
        self.runs.append(run_wrk(self.url, args.clients, args.threads, seconds, self.wrk_env))
        self.cpu += sum(cpu_seconds(pid) for pid in pids) - cpu_before
        self.calls += emulator_calls(emulator_url) - calls_before if counted else 0
        self.storage_calls += self.counted_storage_calls() - storage_before

    def counted_storage_calls(self) -> float:
        """Storage calls the service has made so far, from its /metrics (0 for other apps)."""
        if not self.service:
            return 0.0
        url = self.url.replace("/livekit/token", "/metrics")
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("tokensvc_storage_calls_total{")
        )

    def stop(self) -> None:
        """Stop gunicorn (once)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)

    def trouble(self, lines: int = 5) -> list[str]:
        """The first lines the server printed that are not an answered request or start-up."""
        self.log.seek(0)
        return [
            line.rstrip()
            for line in self.log
            if '"status":200' not in line and '"level":"info"' not in line
        ][:lines]


def summarise(server: Server, warm: dict, rss_before: float) -> dict:
    """Medians over the rounds; totals for CPU and LiveKit calls."""
    runs = server.runs
    requests = sum(run["requests"] for run in runs)
    return {
        "key": server.row.key,
        "row": f"{server.row.key}. {server.row.title}",
        "requests": requests,
        "total": warm["requests"] + requests,
        "rps": median(run["requests"] / (run["duration_us"] / 1e6) for run in runs),
        "p50_ms": median(run["p50_us"] for run in runs) / 1000,
        "p95_ms": median(run["p95_us"] for run in runs) / 1000,
        "p99_ms": median(run["p99_us"] for run in runs) / 1000,
        "calls_per_request": server.calls / requests if server.row.livekit == "emulator" else None,
        "storage_per_request": server.storage_calls / requests if server.service else None,
        "cpu_ms_per_request": server.cpu * 1000 / requests,
        "rss_before_mib": rss_before,
        "rss_after_mib": server.rss(),
        "failed": warm["failed"] + sum(run["failed"] + run["socket_errors"] for run in runs),
        "workers": len(children(server.process.pid)),
    }


def table(results) -> str:
    """The results as a Markdown table."""
    lines = [
        "| row | req/s | p50 ms | p95 ms | p99 ms | LiveKit calls/req | storage calls/req "
        "| app CPU ms/req | worker RSS MiB after 2k -> 20k | failed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['row']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} "
            f"| {r['p99_ms']:.2f} | {calls(r)} | {storage(r)} | {r['cpu_ms_per_request']:.3f} "
            f"| {r['rss_before_mib']:.1f} -> {r['rss_after_mib']:.1f} | {r['failed']} |"
        )
    return "\n".join(lines)


def calls(result) -> str:
    """LiveKit calls per request, counted by the emulator ("-" on the real server)."""
    per_request = result["calls_per_request"]
    return "-" if per_request is None else f"{per_request:.2f}"


def storage(result) -> str:
    """Storage calls per request, from the service's /metrics ("-" for the other apps)."""
    per_request = result["storage_per_request"]
    return "-" if per_request is None else f"{per_request:.2f}"


#: The bound on row 1's CPU per request over the floor's (row 5), by connection mode.
FLOOR_BOUND = {"keep-alive": 2.5, "close": 1.8}


def targets(rows: dict, mode: str, open_loop: dict) -> str:
    """The targets, as ratios of this run's rows (keyed "1" to "5") in one connection mode, and
    of the open-loop runs (row key -> summary)."""
    one, three, four, five = rows["1"], rows["3"], rows["4"], rows["5"]
    cpu = "cpu_ms_per_request"
    bound = FLOOR_BOUND[mode]
    checks = [
        ("row 1 req/s >= 1.8x row 4", one["rps"] / four["rps"], 1.8, True),
        ("row 1 CPU/req <= 0.5x row 4", one[cpu] / four[cpu], 0.5, False),
        (f"row 1 CPU/req <= {bound}x row 5 (the floor)", one[cpu] / five[cpu], bound, False),
        ("row 3 req/s >= 0.7x row 5", three["rps"] / five["rps"], 0.7, True),
        (
            "row 1 RSS after 20k within 10% of after 2k",
            one["rss_after_mib"] / one["rss_before_mib"],
            1.10,
            False,
        ),
        ("row 1 LiveKit calls/req <= 1", one["calls_per_request"], 1.0, False),
    ]
    if "1" in open_loop:
        tail = open_loop["1"]
        checks.append(
            (
                "row 1 p99 <= 2.5x its p50 (open loop, 50% of saturation)",
                tail["p99_ms"] / tail["p50_ms"],
                2.5,
                False,
            )
        )
    if "1t" in rows:
        checks.append(("row 1t CPU/req <= 1.3x row 3", rows["1t"][cpu] / three[cpu], 1.3, False))
    if "6" in rows:  # no target: how far the service is from the work it cannot skip
        checks.append(("row 1 CPU/req over row 6 (reference)", one[cpu] / rows["6"][cpu], 0, None))
    if "1s" in rows:
        checks.append(("row 1s CPU/req <= 0.5x row 4", rows["1s"][cpu] / four[cpu], 0.5, False))
        checks.append(
            ("row 1s LiveKit calls/req <= 1", rows["1s"]["calls_per_request"], 1.0, False)
        )
    for key in ("2", "2s"):
        if key in rows:
            # The emulator also counts the calls of the requests still in flight when a wrk run
            # stops (up to --clients x 2 a run), which wrk does not count as requests.
            checks.append(
                (
                    f"row {key} LiveKit calls/req <= 2 (+ in flight)",
                    rows[key]["calls_per_request"],
                    2.02,
                    False,
                )
            )
            checks.append(
                (
                    f"row {key} storage calls/req <= 2 (+ in flight)",
                    rows[key]["storage_per_request"],
                    2.02,
                    False,
                )
            )
    lines = []
    for name, ratio, bound, at_least in checks:
        if at_least is None:
            lines.append(f"- {name}: {ratio:.2f}")
            continue
        met = ratio >= bound if at_least else ratio <= bound
        lines.append(f"- {name}: {ratio:.2f} ({'met' if met else 'MISSED'})")
    return "\n".join(lines)


def start_redis() -> tuple[subprocess.Popen, int]:
    """A redis-server with no persistence on a free loopback port (Debian's, on PATH): the
    process and its port."""
    port = find_free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        + ["--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    wait_for_port(port, redis, 10, "redis-server")
    return redis, port


def main() -> None:
    """Run every row in one go and print the table and the target ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--requests", type=int, default=20000, help="requests per row, in all")
    parser.add_argument("--warmup", type=int, default=2000, help="of which warm-up")
    parser.add_argument("--seconds", type=float, default=60, help="time bound per wrk run")
    parser.add_argument(
        "--rows", default=",".join(row.key for row in ROWS), help="which rows, e.g. 1,4,1r"
    )
    parser.add_argument("--modes", default=",".join(MODES), help="keep-alive, close, or both")
    parser.add_argument(
        "--open-rows",
        default="1,5",
        help="rows measured open loop (kept-alive, on the emulator), e.g. 1,5",
    )
    parser.add_argument(
        "--open-seconds", type=float, default=10, help="length of each open-loop run"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="interleaved rounds over the rows; the tables show medians",
    )
    args = parser.parse_args()
    chosen = [row for row in ROWS if row.key in args.rows.split(",")]
    modes = [mode for mode in MODES if mode in args.modes.split(",")]
    real = real_livekit_server() if any(row.livekit != "emulator" for row in chosen) else None
    if real is None and any(row.livekit != "emulator" for row in chosen):
        print(
            "livekit-server not found (make livekit-server): rows 1r, 2r, 4r left out",
            file=sys.stderr,
        )
        chosen = [row for row in chosen if row.livekit == "emulator"]

    port = find_free_port()
    emulator_url = f"http://127.0.0.1:{port}"
    emulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tokensvc.testing",
            "--port",
            str(port),
            "--keys",
            f"{API_KEY}:{API_SECRET}",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    servers, redis = [], None
    if any(row.storage == "redis" for row in chosen):
        redis, redis_port = start_redis()
    redis_url = f"redis://127.0.0.1:{redis_port}/0" if redis else None
    try:
        wait_for_port(port, emulator)
        urls = {"emulator": f"ws://127.0.0.1:{port}"}
        if real is not None:
            urls["livekit-server"] = real.start().ws_url
        servers = [
            Server(row, mode, urls[row.livekit], redis_url) for mode in modes for row in chosen
        ]
        for server in servers:
            wait_for_port(server.port, server.process)
        warm, rss_before, seconds = {}, {}, {}
        for server in servers:
            warm[server] = run_warmup(server.url, args, server.wrk_env)
            rss_before[server] = server.rss()
            rate = warm[server]["requests"] / (warm[server]["duration_us"] / 1e6)
            left = args.requests - warm[server]["requests"]
            seconds[server] = min(args.seconds, max(2.0, 1.15 * left / rate / args.rounds))
        for round_no in range(args.rounds):
            for server in servers:
                server.run(args, seconds[server], emulator_url)
            print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        results = {
            server: summarise(server, warm[server], rss_before[server]) for server in servers
        }
        # The open loop measures one server on a core of its own: the others (and the real
        # LiveKit) stop first, so that their idle wake-ups do not land on that core.
        for server in servers:
            server.stop()
        if real is not None:
            real.stop()
            real = None
        open_loop, saturation = {}, {}
        for row in chosen:
            if row.key in args.open_rows.split(",") and row.livekit == "emulator":
                saturation[row.key], open_loop[row.key] = measure_open_loop(
                    row, args, urls[row.livekit], redis_url
                )
    finally:
        for server in servers:
            server.stop()
        emulator.send_signal(signal.SIGTERM)
        emulator.wait(30)
        if real is not None:
            real.stop()
        if redis is not None:
            redis.terminate()
            redis.wait(30)
    print(
        f"\n{os.cpu_count()} cores; {args.clients} concurrent clients; "
        f"{args.requests} requests per row ({args.warmup} warm-up), measured in "
        f"{args.rounds} interleaved rounds (medians); gunicorn.conf.py as shipped "
        f"({next(iter(results.values()))['workers']} workers)"
    )
    for mode in modes:
        rows = {r["key"]: r for server, r in results.items() if server.mode == mode}
        print(f"\n### {mode}\n\n" + table(rows.values()))
        if mode == "keep-alive" and open_loop:
            print("\n" + open_loop_table(open_loop, saturation))
        if {"1", "3", "4", "5"} <= set(rows):
            print("\nTargets:\n" + targets(rows, mode, open_loop if mode == "keep-alive" else {}))
    failed = sorted({r["key"] for r in results.values() if r["failed"]})
    failed += [f"{key} (open loop)" for key, run in open_loop.items() if run["failed"]]
    for server, result in results.items():
        if result["failed"]:
            print(
                f"row {result['key']} ({server.mode}): {result['failed']} failed; the server "
                f"said: {server.trouble() or 'nothing (socket errors in wrk)'}",
                file=sys.stderr,
            )
    if failed:  # a row whose requests failed measured something else than it says
        sys.exit(f"rows with failed requests: {', '.join(failed)}")


def pin(pids: list[int], cores: set[int]) -> None:
    """Run these processes on these cores only."""
    for pid in pids:
        os.sched_setaffinity(pid, cores)


def service_durations(server: "Server", start: int, end: int) -> list[float]:
    """The `duration_ms` of the access lines the server wrote between two sizes of its log."""
    with open(server.log.name, "rb") as handle:
        handle.seek(start)
        text = handle.read(end - start).decode(errors="replace")
    found = re.findall(r'duration_ms"?[:=]([0-9.]+)', text)
    return sorted(float(value) for value in found)


def measure_open_loop(row: Row, args, livekit_url: str, redis_url) -> tuple[float, dict]:
    """Saturation (a closed loop) and then an open loop at 50% of it, on a server of its own for
    `row`: one worker on the last core, the load generator (wrk, then bench.openloop) on the
    others when there are two or more. Returns the saturation req/s and the open loop's summary,
    with the service's own p50/p99 from its access lines when it writes them."""
    everything = os.sched_getaffinity(0)
    service_cores, client_cores = everything, everything
    if len(everything) >= 2:
        service_cores = {max(everything)}
        client_cores = everything - service_cores
    single = dataclasses.replace(row, env=(*row.env, ("WEB_CONCURRENCY", str(len(service_cores)))))
    server = Server(single, "keep-alive", livekit_url, redis_url)
    try:
        wait_for_port(server.port, server.process)
        pin(server.pids(), service_cores)
        client = ["taskset", "-c", ",".join(map(str, sorted(client_cores)))]
        run_wrk(server.url, args.clients, 1, 2, server.wrk_env, client)  # warm-up
        saturated = run_wrk(server.url, args.clients, 1, 3, server.wrk_env, client)
        rate = 0.5 * saturated["requests"] / (saturated["duration_us"] / 1e6)
        before = os.path.getsize(server.log.name)
        output = subprocess.run(
            [
                *client,
                sys.executable,
                "-m",
                "bench.openloop",
                "--url",
                server.url,
                "--rate",
                f"{rate:.1f}",
                "--seconds",
                str(args.open_seconds),
                "--auth",
                server.wrk_env["BENCH_AUTH"],
                "--room",
                server.row.room,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=args.open_seconds + 120,
            check=True,
        ).stdout
        time.sleep(0.5)  # the last access lines reach the log
        durations = service_durations(server, before, os.path.getsize(server.log.name))
    finally:
        server.stop()
    line = next(line for line in output.splitlines() if line.startswith("OPENLOOP "))
    summary = json.loads(line[len("OPENLOOP ") :])
    summary["rate"] = rate
    summary["service_p50_ms"] = percentile(durations, 0.50) if durations else None
    summary["service_p99_ms"] = percentile(durations, 0.99) if durations else None
    return rate / 0.5, summary


def open_loop_table(open_loop: dict, saturation: dict) -> str:
    """The open-loop runs as a Markdown table: client and service percentiles side by side."""
    lines = [
        "Open loop at 50% of saturation (the service with one worker on one core, the load "
        "generator on the others; latency from when each request was due):",
        "",
        "| row | saturation req/s | rate req/s | client p50 ms | client p99 ms | p99/p50 "
        "| service p50 ms | service p99 ms | sender late p99 ms | failed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, run in open_loop.items():
        service = (
            ("-", "-")
            if run["service_p50_ms"] is None
            else (f"{run['service_p50_ms']:.2f}", f"{run['service_p99_ms']:.2f}")
        )
        lines.append(
            f"| {key} | {saturation[key]:.0f} | {run['rate']:.0f} | {run['p50_ms']:.2f} "
            f"| {run['p99_ms']:.2f} | {run['p99_ms'] / run['p50_ms']:.2f} | {service[0]} "
            f"| {service[1]} | {run['sender_late_p99_ms']:.2f} | {run['failed']} |"
        )
    return "\n".join(lines)


def real_livekit_server():
    """The pinned livekit-server on free loopback ports (TOKENSVC_LIVEKIT_SERVER, or what
    scripts/livekit-server finds), or None."""
    binary, _ = find_livekit_server(ROOT / "scripts" / "livekit-server")
    if binary is None:
        return None
    ports = (find_free_port(), find_free_port(), find_free_port())
    return LiveKitServer(binary, {API_KEY: API_SECRET}, ports)


if __name__ == "__main__":
    main()
