"""Slow clients cannot starve the service: idle and header-trickling connections under gunicorn
(2 workers, the shipped gunicorn.conf.py) leave /healthz and token requests answering at once.
gevent workers hold each connection in a greenlet and drop one whose request head has not
arrived within `keepalive` (5 s); the clients here re-connect at once, so the pressure stays."""

import socket
import threading
import time

import pytest

from support.tokens import BODY

pytestmark = pytest.mark.slow

IDLE, TRICKLING = 64, 64
PROBE_SECONDS = 8.0
BOUND = 1.0


class SlowClients:
    """`idle` connections that send nothing and `trickling` ones that send a request's headers
    one byte every half second; each one the server closes is opened again at once, so the
    pressure lasts until `stop()`."""

    def __init__(self, port: int, idle: int, trickling: int):
        """Start every client now."""
        self.port = port
        self.stopped = threading.Event()
        self.reopened = 0
        self.threads = [
            threading.Thread(target=self._hold, args=(kind,), daemon=True)
            for kind in ["idle"] * idle + ["trickle"] * trickling
        ]
        for thread in self.threads:
            thread.start()

    def _hold(self, kind: str) -> None:
        """Keep one slow connection open (re-opened when the server hangs up) until stopped."""
        header = b"POST /livekit/token HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 10_000
        while not self.stopped.is_set():
            with socket.create_connection(("127.0.0.1", self.port)) as sock:
                sock.settimeout(0.5)
                for byte in header:
                    try:
                        if kind == "trickle":
                            sock.sendall(bytes([byte]))
                        if sock.recv(1) == b"":
                            break  # the server hung up
                    except TimeoutError:
                        pass
                    except OSError:
                        break
                    if self.stopped.is_set():
                        return
            self.reopened += 1

    def stop(self) -> None:
        """Stop every client and close its connection."""
        self.stopped.set()
        for thread in self.threads:
            thread.join(5)


def timed(call) -> float:
    """Seconds `call()` took; a failure counts as the bound plus one."""
    start = time.monotonic()
    try:
        ok = call()
    except OSError:
        ok = False
    return time.monotonic() - start if ok else BOUND + 1


def test_slow_clients_leave_the_service_answering(make_gunicorn, tenants, livekit):
    """With 64 idle and 64 trickling connections held open, every /healthz and token request
    probed over 8 s is answered within 1 s."""
    server = make_gunicorn()
    port = int(server.url.rsplit(":", 1)[1])
    headers = tenants.headers("acme")

    def healthz():
        return server.get("/healthz", timeout=BOUND + 1)[0] == 200

    def token():
        return server.post("/livekit/token", BODY, headers, timeout=BOUND + 1)[0] == 200

    slow = SlowClients(port, IDLE, TRICKLING)
    try:
        time.sleep(1)  # let every slow connection reach a worker first
        latencies = {"healthz": [], "token": []}
        deadline = time.monotonic() + PROBE_SECONDS
        while time.monotonic() < deadline:
            latencies["healthz"].append(timed(healthz))
            latencies["token"].append(timed(token))
            time.sleep(0.2)
    finally:
        slow.stop()
    worst = {kind: max(values) for kind, values in latencies.items()}
    slow_probes = sum(value > BOUND for values in latencies.values() for value in values)
    print(
        f"\nslow clients ({IDLE} idle, {TRICKLING} trickling): "
        f"{sum(map(len, latencies.values()))} probes, {slow_probes} over {BOUND:g} s, "
        f"worst healthz {worst['healthz']:.3f} s, worst token {worst['token']:.3f} s; "
        f"the server closed {slow.reopened} slow connections (re-opened at once)"
    )
    assert slow_probes == 0, worst
    assert len(latencies["token"]) >= 10
