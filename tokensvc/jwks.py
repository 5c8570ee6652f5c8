"""The authentication service's JWKS: fetched off the request path, within a total deadline.

A request never fetches and never holds a lock across a fetch. A key the cache has is used at
once, even while a refresh runs or after one failed (stale-while-revalidate); a cache older than
`AUTH_JWKS_MAX_AGE` starts a refresh in the background. Only a token whose `kid` the cache lacks
waits for a refresh (started at most once per `AUTH_JWKS_REFRESH_SECONDS`), and for at most
`AUTH_JWKS_TIMEOUT`; if no key fits by then it is 503 `auth_unavailable` when the JWKS could not be
had, 401 when the JWKS has no such key. Each fetch is cut off after `AUTH_JWKS_TIMEOUT` in all, so
a JWKS that trickles its answer a byte at a time cannot keep one running.
"""

import http.client
import json
import logging
import socket
import threading
import time
from urllib.parse import urlsplit

import jwt

from .errors import AuthUnavailable, Unauthorized

log = logging.getLogger(__name__)

KEY_TYPE_BY_FAMILY = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
#: A JWKS larger than this is refused: a key set is a few KiB.
MAX_JWKS_BYTES = 1 << 20


class JwksKeys:
    """The cached key set, by `kid`, and the one refresh that may be running."""

    def __init__(
        self, url: str, timeout: float, min_interval: float, observe=None, max_age: float = 300.0
    ):
        """Fetch from `url` lazily, each fetch within `timeout`, at most once per `min_interval`
        for unknown key ids, again in the background once the set is `max_age` seconds old; tell
        `observe("ok" or "failed")` of each fetch, when given."""
        self.url, self.timeout, self.min_interval = url, timeout, min_interval
        self.max_age = max_age
        self._observe = observe
        self.keys = {}  # replaced whole by a refresh, never changed in place
        self.fetched_at = None
        self.last_fetch_failed = False
        self._attempted_at = None
        self._refreshing = None  # an Event set when the running refresh ends
        self._lock = threading.Lock()  # guards the fields a refresh sets; never held across I/O

    def key_for(self, kid, algorithm: str):
        """Return the key for `kid` that can verify `algorithm`."""
        entry = self.keys.get(kid)
        if entry is None:
            done = self._refresh(unknown_kid=True)
            answered = done is None or done.wait(self.timeout)
            entry = self.keys.get(kid)
            if entry is None and (not answered or self.last_fetch_failed or not self.fetched_at):
                raise AuthUnavailable("the authentication service's keys could not be fetched")
            if entry is None:
                raise Unauthorized("the bearer token's key id is unknown")
        elif time.monotonic() - self.fetched_at > self.max_age:
            self._refresh(unknown_kid=False)  # in the background; this request goes on
        key_type, declared, key = entry
        if key_type != KEY_TYPE_BY_FAMILY.get(algorithm[:2]) or declared not in (None, algorithm):
            raise Unauthorized("the bearer token's algorithm does not match its key")
        return key

    def _refresh(self, unknown_kid: bool):
        """Start a background refresh unless one runs or (for an unknown kid) one was attempted
        within `min_interval`; return the Event of the running refresh, or None."""
        with self._lock:
            if self._refreshing is not None:
                return self._refreshing
            now = time.monotonic()
            if (
                unknown_kid
                and self._attempted_at is not None
                and (now - self._attempted_at < self.min_interval)
            ):
                return None
            self._attempted_at = now
            self._refreshing = done = threading.Event()
        threading.Thread(target=self._fetch, args=(done,), name="jwks-refresh", daemon=True).start()
        return done

    def _fetch(self, done: threading.Event) -> None:
        """Fetch and publish the key set; keep the old keys if it fails."""
        try:
            keys = dict(_parse_jwks(fetch_json(self.url, self.timeout).get("keys")))
            failed = False
        except (OSError, http.client.HTTPException, ValueError, AttributeError) as exc:
            log.warning(
                "JWKS fetch from %s failed: %s", urlsplit(self.url).netloc, type(exc).__name__
            )
            keys, failed = self.keys, True
        if self._observe is not None:
            self._observe("failed" if failed else "ok")
        with self._lock:
            if not failed:  # before the keys: a reader that sees new keys sees their age too
                self.fetched_at = time.monotonic()
            self.keys, self.last_fetch_failed = keys, failed
            self._refreshing = None
        done.set()


def fetch_json(url: str, timeout: float):
    """GET `url` and parse its JSON body, all within `timeout` seconds: a timer shuts the
    connection down when the deadline passes, whatever the server is still sending."""
    parts = urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = kind(parts.hostname, parts.port, timeout=timeout)
    timer = threading.Timer(timeout, _cut, args=(connection,))
    timer.daemon = True
    timer.start()
    path = parts.path or "/"
    try:
        connection.request(
            "GET",
            f"{path}?{parts.query}" if parts.query else path,
            headers={"Accept": "application/json"},
        )
        with connection.getresponse() as response:
            body = response.read(MAX_JWKS_BYTES + 1)
        if response.status != 200 or len(body) > MAX_JWKS_BYTES:
            raise ValueError(f"JWKS answered HTTP {response.status} with {len(body)} bytes")
        return json.loads(body)
    finally:
        timer.cancel()
        connection.close()


def _cut(connection: http.client.HTTPConnection) -> None:
    """End a fetch past its deadline: shutting the socket down wakes a blocked read."""
    sock = connection.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _parse_jwks(entries):
    """Yield `kid -> (kty, declared alg, key)` for each usable public key of a JWKS."""
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, dict) or entry.get("kty") == "oct":
            continue
        try:
            key = jwt.PyJWK(entry).key
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError):
            continue
        yield entry.get("kid"), (entry.get("kty"), entry.get("alg"), key)
