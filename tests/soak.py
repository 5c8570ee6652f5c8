"""Tenant-isolation soak: many threads, several tenants, a few shared room names whose rooms keep
closing and being re-created by joins (the emulator's `add_room` with a token's roomConfig, as a
participant's join does).

Run: `make soak` (or `python tests/soak.py --seconds 120`). Loopback only, bounded in time.
Every token returned is decoded and checked: its owner is its tenant, no life of the room while
the request was in flight (from the emulator's room history) was another tenant's, and no name
ever gives tokens to two tenants. Prints the counts; exits non-zero on any violation.
"""

import argparse
import json
import random
import sys
import tempfile
import threading
import time
import urllib.error
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from support.processes import GunicornProcess, gunicorn_env  # noqa: E402
from tokensvc.testing.processes import find_free_port  # noqa: E402
from support.tokens import GRANTS, LIVEKIT_KEY, LIVEKIT_SECRET, Tenants, verify_token  # noqa: E402
from tokensvc.testing import LiveKitEmulator  # noqa: E402


def worker_rss_mib(server) -> float:
    """Total RSS of the gunicorn workers, MiB."""
    total = 0
    for child in server.workers():
        with open(f"/proc/{child}/status") as handle:
            total += next(int(line.split()[1]) for line in handle if line.startswith("VmRSS"))
    return total / 1024


def warm_up(server, names, header, workers=2, seconds=30) -> None:
    """Wait for every worker, then send enough concurrent requests to start each one's client."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and len(server.workers()) < workers:
        time.sleep(0.1)

    def burst():
        for name in names * 10:
            server.post(
                "/livekit/token",
                {"room_name": name, "participant_name": "w", "participant_identity": "w"},
                header,
            )

    threads = [threading.Thread(target=burst) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds)


def check_token(body, tenant, room, livekit, started, finished) -> str | None:
    """Return what is wrong with a token issued to `tenant` for `room`, or None."""
    claims, raw = verify_token(body["token"])
    if set(raw["video"]) != GRANTS or raw["video"]["room"] != room:
        return "grants"
    if json.loads(raw.get("roomConfig", {}).get("metadata", "{}")).get("auth_id") != tenant:
        return "token names another owner"
    owners = [json.loads(m).get("auth_id") for m in livekit.owners_between(room, started, finished)]
    if any(owner != tenant for owner in owners):
        return "room was another tenant's"
    return None


def soak(seconds=60.0, threads=16, tenants=4, rooms=5, close_every=0.05, out=sys.stdout) -> Counter:
    """Run the soak and return its counts."""
    counts = Counter()
    helper = Tenants()
    names = [f"shared-{n}" for n in range(rooms)]
    tenant_ids = [f"tenant-{n}" for n in range(tenants)]
    headers = {t: helper.headers(t, ttl=int(seconds) + 600) for t in tenant_ids}
    with LiveKitEmulator(keys={LIVEKIT_KEY: LIVEKIT_SECRET}) as livekit:
        storage = tempfile.mkdtemp(prefix="tokensvc-soak-")
        env = gunicorn_env(livekit, STORAGE_URL=f"sqlite:///{storage}/holds.sqlite3")
        server = GunicornProcess(env, find_free_port())
        try:
            warm_up(server, names, headers[tenant_ids[0]])
            rss_before = worker_rss_mib(server)
            deadline = time.monotonic() + seconds
            lock = threading.Lock()
            holders, joinable = {}, []

            def client(number):
                rng = random.Random(number)
                while time.monotonic() < deadline:
                    tenant, room = rng.choice(tenant_ids), rng.choice(names)
                    body = {
                        "room_name": room,
                        "participant_name": tenant,
                        "participant_identity": f"{tenant}-{number}",
                    }
                    started = time.time()
                    try:
                        status, answer, _ = server.post("/livekit/token", body, headers[tenant])
                    except (urllib.error.URLError, OSError):
                        status, answer = "transport", {}
                    finished = time.time()
                    problem = None
                    if status == 200:
                        problem = check_token(answer, tenant, room, livekit, started, finished)
                    with lock:
                        if status == 200:
                            if holders.setdefault(room, tenant) != tenant:
                                problem = problem or "a name gave tokens to two tenants"
                            joinable.append((room, verify_token(answer["token"])[0]))
                            del joinable[:-50]
                        counts["requests"] += 1
                        counts[
                            {200: "tokens", 403: "forbidden"}.get(status, f"status {status}")
                        ] += 1
                        if problem:
                            counts["violations"] += 1
                            counts[f"violation: {problem}"] += 1

            def closer():
                rng = random.Random(0)
                while time.monotonic() < deadline:
                    if livekit.close_room(rng.choice(names)):
                        counts["rooms closed"] += 1
                    with lock:
                        chosen = rng.choice(joinable) if joinable else None
                    if chosen is not None:  # a participant joins with a token it was given
                        room, claims = chosen
                        livekit.add_room(room, claims.room_config.metadata)
                    time.sleep(close_every)

            pool = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
            pool.append(threading.Thread(target=closer))
            for thread in pool:
                thread.start()
            for thread in pool:
                thread.join(seconds + 60)
            rss_after = worker_rss_mib(server)
        finally:
            server.close()
    counts["5xx"] = sum(v for k, v in counts.items() if k.startswith("status 5"))
    counts["violations"] += 0
    print(f"soak: {seconds:g} s, {threads} threads, {tenants} tenants, {rooms} rooms", file=out)
    for key in sorted(counts):
        print(f"  {key}: {counts[key]}", file=out)
    print(f"  worker RSS MiB: {rss_before:.1f} -> {rss_after:.1f}", file=out)
    counts["rss_before_kib"] = int(rss_before * 1024)
    counts["rss_after_kib"] = int(rss_after * 1024)
    return counts


def main() -> None:
    """Parse arguments, run, and exit 1 on any violation or 5xx."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--tenants", type=int, default=4)
    parser.add_argument("--rooms", type=int, default=5)
    args = parser.parse_args()
    counts = soak(args.seconds, args.threads, args.tenants, args.rooms)
    sys.exit(1 if counts["violations"] or counts["5xx"] else 0)


if __name__ == "__main__":
    main()
