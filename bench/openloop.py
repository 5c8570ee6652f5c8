"""An open-loop load generator: POST /livekit/token at a fixed rate on a fixed schedule, whatever
the service's answers take, and each request's latency counted from when it was due (so a
stall shows in the tail rather than slowing the sender, as a closed loop like wrk's would).

Run: `python -m bench.openloop --url URL --rate 800 --seconds 10 [--auth "Bearer ..."]
[--room R] [--cpu 0]`; prints one line `OPENLOOP {json}` with the latencies' percentiles (ms),
the requests sent, answered and failed, and how late the sender itself ran (its p99, ms).
Kept-alive connections, as many as are busy at once (up to --connections).
"""

import argparse
import asyncio
import gc
import json
import os
import re
import time
from urllib.parse import urlsplit

CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")


def percentile(values: list, share: float) -> float:
    """The value below which `share` of `values` lie (nearest rank); NaN for none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


class Generator:
    """Sends requests on a schedule over a pool of kept-alive connections."""

    def __init__(self, url: str, auth: str, room: str, connections: int):
        """Aim at `url` (http://host:port/path), with an Authorization value or none."""
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname, parts.port or 80, parts.path
        self.auth, self.room = auth, room
        self.idle: list = []
        self.open = 0
        self.most = connections
        self.freed = asyncio.Condition()
        self.latencies: list[float] = []
        self.lateness: list[float] = []
        self.failed = 0

    def request(self, number: int) -> bytes:
        """One token request, as bench/token.lua makes it."""
        body = (
            f'{{"room_name":"{self.room}","participant_name":"Bench User",'
            f'"participant_identity":"open-{number}"}}'
        ).encode()
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        )
        if self.auth:
            head += f"Authorization: {self.auth}\r\n"
        return head.encode() + b"\r\n" + body

    async def connection(self):
        """An idle connection, a new one while under the bound, or the next one freed."""
        async with self.freed:
            while not self.idle and self.open >= self.most:
                await self.freed.wait()
            if self.idle:
                return self.idle.pop()
            self.open += 1
        return await asyncio.open_connection(self.host, self.port)

    async def release(self, connection, reusable: bool) -> None:
        """Give a connection back (or close it), and wake one waiting request."""
        async with self.freed:
            if reusable:
                self.idle.append(connection)
            else:
                self.open -= 1
                connection[1].close()
            self.freed.notify()

    async def one(self, number: int, due: float) -> None:
        """Send request `number`, due at `due` (perf_counter), and record its latency."""
        reader, writer = connection = await self.connection()
        reusable = False
        try:
            writer.write(self.request(number))
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    raise
                # an idle connection the server had closed (its keep-alive timeout): reconnect
                writer.close()
                reader, writer = await asyncio.open_connection(self.host, self.port)
                connection = (reader, writer)
                writer.write(self.request(number))
                head = await reader.readuntil(b"\r\n\r\n")
            length = CONTENT_LENGTH.search(head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            self.latencies.append(time.perf_counter() - due)
            if not head.startswith(b"HTTP/1.1 200 "):
                self.failed += 1
            reusable = True
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            self.failed += 1
        finally:
            await self.release(connection, reusable)

    async def run(self, rate: float, seconds: float) -> int:
        """Send rate x seconds requests on schedule; return how many were sent."""
        count = int(rate * seconds)
        started = time.perf_counter() + 0.05
        tasks = []
        for number in range(count):
            due = started + number / rate
            # The loop's timers wake up to a millisecond late (epoll counts in ms): sleep to just
            # before the request is due, then yield until it is.
            delay = due - time.perf_counter() - 0.002
            if delay > 0:
                await asyncio.sleep(delay)
            while time.perf_counter() < due:
                await asyncio.sleep(0)
            self.lateness.append(max(0.0, time.perf_counter() - due))
            tasks.append(asyncio.create_task(self.one(number, due)))
        await asyncio.gather(*tasks)
        return count


def main() -> None:
    """Parse the options, run on schedule, print the summary line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--auth", default="", help="Authorization header value")
    parser.add_argument("--room", default="bench-open-loop")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--cpu", type=int, default=None, help="run on this core only")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    gc.disable()  # the sender's own pauses must not pass for the service's
    generator = Generator(args.url, args.auth, args.room, args.connections)
    sent = asyncio.run(generator.run(args.rate, args.seconds))
    latencies = sorted(generator.latencies)
    lateness = sorted(generator.lateness)
    summary = {
        "sent": sent,
        "answered": len(latencies),
        "failed": generator.failed,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "sender_late_p99_ms": percentile(lateness, 0.99) * 1000,
    }
    print("OPENLOOP " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
