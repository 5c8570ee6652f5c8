"""Things answering HTTP on loopback for the tests: a served app, a static server (a JWKS, a
page)."""

import functools
import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer

from werkzeug.serving import make_server


class HttpService:
    """Something answering HTTP on a loopback URL."""

    url = ""

    def request(self, method, path, body=None, headers=None, timeout=30, data=None):
        """Send one request, with `body` as JSON or `data` as it is (bytes); return (status,
        parsed JSON body, headers)."""
        if body is not None:
            data, headers = (
                json.dumps(body).encode(),
                {
                    "Content-Type": "application/json",
                    **(headers or {}),
                },
            )
        request = urllib.request.Request(
            self.url + path, data=data, headers=headers or {}, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read()), response.headers
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read()), error.headers

    def post(self, path, body, headers=None, timeout=30):
        """POST JSON and return (status, parsed JSON body, headers)."""
        return self.request("POST", path, body, headers, timeout)

    def get(self, path, timeout=30, headers=None):
        """GET and return (status, parsed JSON body, headers)."""
        return self.request("GET", path, None, headers, timeout)

    def delete(self, path, headers=None, timeout=30):
        """DELETE and return (status, parsed JSON body, headers)."""
        return self.request("DELETE", path, None, headers, timeout)


class ServedApp(HttpService):
    """An app served by a threaded WSGI server on a loopback port (a real socket)."""

    def __init__(self, app, port: int = 0):
        """Start serving `app` in a background thread (on `port`; 0: any free one)."""
        self.server = make_server("127.0.0.1", port, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        """Stop the server."""
        self.server.shutdown()
        self.thread.join(5)


class StaticServer:
    """Answers every GET on a loopback port with `body()` (a page, a JWKS); counts fetches."""

    def __init__(self, body, content_type: str):
        """Serve what `body()` returns at the moment of each request."""
        self.fetches = 0
        self.port = 0
        self._body, self._content_type = body, content_type
        self.start()

    @property
    def url(self) -> str:
        """The server's origin."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Listen (again, on the same port after `stop`)."""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                owner.fetches += 1
                owner.respond(self)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def respond(self, handler: BaseHTTPRequestHandler) -> None:
        """Answer one GET with `body()` (a subclass may answer otherwise)."""
        data = self._body().encode()
        handler.send_response(200)
        handler.send_header("Content-Type", self._content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def stop(self) -> None:
        """Stop listening: connections are refused."""
        self.server.shutdown()
        self.server.server_close()


class DirectoryServer:
    """Serves the files of one folder on a loopback port (a page and its scripts)."""

    def __init__(self, folder):
        """Serve `folder` from its root."""
        handler = functools.partial(QuietFileHandler, directory=str(folder))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop listening."""
        self.server.shutdown()
        self.server.server_close()


class QuietFileHandler(SimpleHTTPRequestHandler):
    """http.server's file handler, without a log line per request."""

    def log_message(self, *args):
        """Say nothing."""
