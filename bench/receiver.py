"""A tenant's webhook receiver for bench/webhooks.py, in a process of its own so that it is not
what a figure measures: HTTP/1.1 with kept-alive connections on one asyncio loop, and EVERY
request's signature verified with the `standardwebhooks` package (what a tenant would use).

Run: `python -m bench.receiver --port PORT`. Paths:

- `POST /hooks/<name>`: verified with the secret set for `<name>` (`PUT /secrets/<name>`, the
  secret as the body, as a tenant learns it from its subscription); 200 and the arrival kept
  when it verifies (`<name>/<the event's participant identity>` and `time.monotonic()`, one
  clock for every process of the host), 400 otherwise.
- `POST /fail/<anything>`: 500, nothing kept (a tenant's broken endpoint).
- `GET /arrivals`: `{"arrived": {"name/identity": time}, "verified": n, "refused": n,
  "failed": n}`; `GET /count` the same without `arrived`.
"""

import argparse
import asyncio
import json
import time

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


class Receiver:
    """What arrived, and the secrets that verify it."""

    def __init__(self):
        """Nothing yet."""
        self.verifiers: dict[str, Webhook] = {}
        self.arrived: dict[str, float] = {}
        self.verified = self.refused = self.failed = 0

    def answer(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, bytes]:
        """The status and body for one request."""
        if method == "POST" and path.startswith("/hooks/"):
            verifier = self.verifiers.get(path[len("/hooks/") :])
            try:
                if verifier is None:
                    raise WebhookVerificationError("no secret")
                event = verifier.verify(body, headers)
            except WebhookVerificationError:
                self.refused += 1
                return 400, b'{"error":"signature"}'
            self.verified += 1
            key = f"{path[len('/hooks/') :]}/{event['data']['participant']['identity']}"
            self.arrived.setdefault(key, time.monotonic())
            return 200, b"{}"
        if method == "POST" and path.startswith("/fail/"):
            self.failed += 1
            return 500, b'{"error":"broken"}'
        if method == "PUT" and path.startswith("/secrets/"):
            self.verifiers[path[len("/secrets/") :]] = Webhook(body.decode())
            return 204, b""
        if method == "GET" and path in ("/arrivals", "/count"):
            figures = {"verified": self.verified, "refused": self.refused, "failed": self.failed}
            if path == "/arrivals":
                figures["arrived"] = self.arrived
            return 200, json.dumps(figures).encode()
        return 404, b"{}"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer the requests of one connection, kept alive until the client closes it."""
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *lines = head.decode("latin-1").split("\r\n")
                method, path, _ = request_line.split(" ", 2)
                headers = {}
                for line in lines:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status, answer = self.answer(method, path, headers, body)
                writer.write(
                    b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s"
                    % (status, b"OK" if status < 300 else b"NO", len(answer), answer)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()


async def main(port: int) -> None:
    """Serve on loopback `port` until killed."""
    receiver = Receiver()
    server = await asyncio.start_server(receiver.serve, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(main(parser.parse_args().port))
