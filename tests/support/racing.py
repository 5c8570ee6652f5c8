"""Tenants racing for rooms: requests fired at the same moment, and a tally of who got what."""

import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from support.tokens import BODY


def ask_at_once(asks, tenants):
    """Send every (server, tenant, room) request at the same moment; return
    ([(tenant, room, status, body)], whether all of them were in the service at once)."""
    barrier = threading.Barrier(len(asks))
    spans = []

    def ask(server, tenant, room):
        headers = tenants.headers(tenant)
        barrier.wait()
        started = time.monotonic()
        status, body, _ = server.post("/livekit/token", {**BODY, "room_name": room}, headers)
        spans.append((started, time.monotonic()))
        return tenant, room, status, body

    with ThreadPoolExecutor(len(asks)) as pool:
        results = list(pool.map(lambda ask_args: ask(*ask_args), asks))
    overlapped = max(start for start, _ in spans) < min(end for _, end in spans)
    return results, overlapped


class Tally:
    """Which tenants got a 200 for which room, and the first token of each room's winner."""

    def __init__(self):
        """Nothing granted yet."""
        self.granted = defaultdict(set)
        self.tokens = {}

    def record(self, results) -> None:
        """Count answers; anything but 200 or 403 is a failure of the test."""
        for tenant, room, status, body in results:
            assert status in (200, 403), body
            if status == 200:
                self.granted[room].add(tenant)
                self.tokens.setdefault(room, (tenant, body["token"]))

    def shared(self) -> dict:
        """Rooms that gave tokens to more than one tenant."""
        return {room: sorted(who) for room, who in self.granted.items() if len(who) > 1}


def race(server, tenants, room):
    """Fire acme and globex at `room` together; return {tenant: (status, body)}."""
    barrier = threading.Barrier(2)
    results = {}

    def ask(tenant):
        headers = tenants.headers(tenant)
        barrier.wait()
        started = time.monotonic()
        results[tenant] = server.post("/livekit/token", {**BODY, "room_name": room}, headers)[:2]
        spans[tenant] = (started, time.monotonic())

    spans = {}

    threads = [threading.Thread(target=ask, args=(tenant,)) for tenant in ("acme", "globex")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # Whether the two requests were in the service at the same time.
    results["overlapped"] = max(s for s, _ in spans.values()) < min(e for _, e in spans.values())
    return results
