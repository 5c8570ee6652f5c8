"""A tenant's webhook receiver for the tests: a threaded HTTP server on loopback that checks
every request's signature with the `standardwebhooks` package (what a tenant would use) and
keeps what it got. It can answer 200, answer 500, hang past any timeout, answer 200 only after
it (late), or be down (connection refused), and come back up on the same port. And a relay that
stands between LiveKit's webhooks and the service, and can lose them."""

import http.client
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


class Received:
    """One request the receiver got: its headers, raw body, and the verified event (None when
    the signature did not verify)."""

    def __init__(self, headers: dict, body: bytes, event, at: float):
        """Keep what arrived, and when (time.monotonic)."""
        self.headers, self.body, self.event, self.at = headers, body, event, at

    @property
    def id(self) -> str:
        """The `webhook-id` header."""
        return self.headers.get("webhook-id", "")


class WebhookReceiver:
    """Receives a tenant's webhooks on http://127.0.0.1:<port>/hooks; `mode` is "ok", "fail"
    (500), "redirect" (307 to itself), "hang" (answers nothing for `hang_s`) or "late" (keeps
    the verified event like "ok", then answers 200 after `hang_s`: a tenant that got it but whose
    answer came too late); `stop()` makes it refuse connections."""

    def __init__(self, secret: str | None = None, mode: str = "ok", hang_s: float = 30.0):
        """Listen on a free port; verify with `secret` (settable later, as a tenant learns it
        from the subscription's answer)."""
        self.secret = secret
        self.mode = mode
        self.hang_s = hang_s
        self.received: list[Received] = []
        self.tried = 0  # requests that arrived, whatever was answered
        self.tried_ids: list[str] = []  # their webhook-id headers
        self.changed = threading.Condition()
        self.port = 0
        self.server = None
        self.start()

    @property
    def url(self) -> str:
        """The URL to subscribe."""
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> "WebhookReceiver":
        """Listen (again, on the same port after `stop`)."""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                owner.handle(self)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening: connections are refused."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        """Read one request, verify it, keep it, answer as the mode says."""
        body = handler.rfile.read(int(handler.headers.get("Content-Length", 0)))
        headers = {name.lower(): value for name, value in handler.headers.items()}
        mode = self.mode
        with self.changed:
            self.tried += 1
            self.tried_ids.append(headers.get("webhook-id", ""))
            self.changed.notify_all()
        if mode == "hang":
            time.sleep(self.hang_s)
            return
        if mode == "fail":
            self._answer(handler, 500, b"no")
            return
        if mode == "redirect":
            handler.send_response(307)
            handler.send_header("Location", self.url)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        event = None
        if self.secret is not None:
            try:
                event = Webhook(self.secret).verify(body, headers)
            except WebhookVerificationError:
                event = None
        with self.changed:
            self.received.append(Received(headers, body, event, time.monotonic()))
            self.changed.notify_all()
        if mode == "late":
            time.sleep(self.hang_s)
        self._answer(handler, 200 if event is not None or self.secret is None else 400, b"ok")

    @staticmethod
    def _answer(handler, status: int, body: bytes) -> None:
        """Send a short answer."""
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until `count` requests were received (200 or not); return them all."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.changed.wait(left)
            return list(self.received)

    def wait_for_tries(self, count: int, timeout: float = 10.0) -> int:
        """Wait until `count` requests arrived in any mode; return how many did."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while self.tried < count and time.monotonic() < deadline:
                self.changed.wait(max(0.0, deadline - time.monotonic()))
            return self.tried

    def events(self) -> list:
        """The verified events, in the order they arrived."""
        return [item.event for item in self.received if item.event is not None]


class WebhookRelay:
    """Forwards each POST on http://127.0.0.1:<port>/... to the same path on `target_port`,
    headers and body unchanged, and answers what the target answered; while `dropping`, it
    answers 200 and forwards nothing, as a webhook lost on the way looks to its sender."""

    def __init__(self, target_port: int):
        """Listen on a free loopback port."""
        self.target_port = target_port
        self.dropping = False
        self.forwarded = 0
        self.dropped = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                owner.handle(self)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        """Forward one request, or drop it."""
        body = handler.rfile.read(int(handler.headers.get("Content-Length", 0)))
        if self.dropping:
            self.dropped += 1
            WebhookReceiver._answer(handler, 200, b"")
            return
        upstream = http.client.HTTPConnection("127.0.0.1", self.target_port, timeout=30)
        headers = {k: v for k, v in handler.headers.items() if k.lower() != "connection"}
        try:
            upstream.request("POST", handler.path, body, headers)
            answer = upstream.getresponse()
            status, data = answer.status, answer.read()
        finally:
            upstream.close()
        self.forwarded += 1
        WebhookReceiver._answer(handler, status, data)

    def stop(self) -> None:
        """Stop listening."""
        self.server.shutdown()
        self.server.server_close()
