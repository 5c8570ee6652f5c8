"""Requests the service sends to tenants' URLs, and the guard that keeps them out of private
networks (no Flask).

A tenant names a URL and the service POSTs to it, so the URL must never reach what only the
service can reach (loopback, the cloud's metadata address, the private network). The guard
resolves the host, refuses the URL if any address is loopback, private, link-local, multicast,
reserved or otherwise not public, and the request then connects to the address it checked: the
name is never resolved a second time (DNS rebinding). No redirect is followed, the whole exchange
is bounded by one timeout, and at most `MAX_ANSWER_BYTES` of the answer are read. With
`allow_private` (TENANT_WEBHOOKS_ALLOW_PRIVATE, for development) any address is allowed.
"""

import http.client
import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import idna

#: How much of an answer's body is read (the rest is left unread and the connection closed).
MAX_ANSWER_BYTES = 64 * 1024
#: What the service calls itself on tenants' servers.
USER_AGENT = "tokensvc-webhooks/1"
#: A URL's longest accepted form.
MAX_URL_LENGTH = 2048

Resolver = Callable[[str, int], list[str]]


class UrlRefused(ValueError):
    """A URL the service will not send to; the message says why (it names no secret)."""


@dataclass(frozen=True)
class Answer:
    """What one POST came to: the status code (None when none was read) and, for anything but
    a 2xx, a short error."""

    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the receiver answered 2xx."""
        return self.status is not None and 200 <= self.status < 300


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (a literal address: itself)."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in found))


#: NAT64 prefixes (RFC 6052's well-known one, RFC 8215's local-use one) and where an IPv4
#: address sits in an address under them, by the prefix lengths RFC 6052 allows.
NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
#: RFC 6052's byte positions of the IPv4 address for each prefix length (byte 8 is reserved).
NAT64_POSITIONS = {
    32: (4, 5, 6, 7),
    40: (5, 6, 7, 9),
    48: (6, 7, 9, 10),
    56: (7, 9, 10, 11),
    64: (9, 10, 11, 12),
    96: (12, 13, 14, 15),
}


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries: IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible
    (::a.b.c.d), 6to4 (2002::/16), Teredo (2001::/32: its server and its client), NAT64
    (64:ff9b::/96, and 64:ff9b:1::/48 at every prefix length RFC 6052 allows)."""
    found: list[ipaddress.IPv4Address] = []
    packed = ip.packed
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if packed[:12] == bytes(12) and int(ip) > 1:
        found.append(ipaddress.IPv4Address(packed[12:]))
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if ip in NAT64_WELL_KNOWN:
        found.append(ipaddress.IPv4Address(packed[12:]))
    elif ip in NAT64_LOCAL:
        for positions in NAT64_POSITIONS.values():
            found.append(ipaddress.IPv4Address(bytes(packed[i] for i in positions)))
    return found


def _is_public_one(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether one address, as it is, is routed on the public internet."""
    return ip.is_global and not (
        ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or ip.is_link_local
        or ip.is_loopback
        or ip.is_private
    )


def is_public(address: str) -> bool:
    """Whether an address is one the public internet routes: not loopback, private, link-local,
    multicast, reserved, unspecified, shared (CGNAT) or documentation. An IPv6 address that
    carries an IPv4 one (mapped, compatible, 6to4, Teredo, NAT64) is judged by that IPv4 address
    (every one it may carry must be public)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        inside = embedded_ipv4(ip)
        if inside:
            return all(_is_public_one(v4) for v4 in inside)
    return _is_public_one(ip)


#: What a path or query may hold as it is; anything else is percent-encoded (a `%` followed by
#: two hex digits is kept as the escape it is).
PATH_SAFE = "/:@!$&'()*+,;=-._~"
QUERY_SAFE = PATH_SAFE + "?"
ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _encoded(text: str, safe: str) -> str:
    """`text` with every character outside `safe` and ASCII letters and digits percent-encoded
    as UTF-8 (existing escapes kept; a lone `%` encoded)."""
    return quote(ESCAPE.sub("%25", text), safe=safe + "%")


def _idna_host(host: str) -> str:
    """A host name in its ASCII (IDNA 2008, UTS 46) form, or an IP literal as it is;
    UrlRefused when it has none."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        encoded = idna.encode(host, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        raise UrlRefused("has a host name that is not a valid (internationalized) name") from None
    if not encoded or len(encoded) > 253:
        raise UrlRefused("has a host name that is not a valid (internationalized) name")
    return encoded


def normalize_url(url: str, allow_private: bool) -> str:
    """The form of a URL the service keeps and sends to: scheme in lower case, the host in
    ASCII (IDNA), a port from 1 to 65535 (kept only when not the scheme's default), the path
    and query percent-encoded as UTF-8; UrlRefused says why a URL has none (its characters
    that cannot be encoded, no host, credentials, a fragment, a bad port...)."""
    try:
        url.encode("utf-8")
    except UnicodeEncodeError:
        raise UrlRefused("contains characters that cannot be encoded (lone surrogates)") from None
    if len(url) > MAX_URL_LENGTH:
        raise UrlRefused(f"is longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) < 33 or ord(c) == 127 or 0x80 <= ord(c) < 0xA0 for c in url):
        raise UrlRefused("may not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
        hostname = parts.hostname
    except ValueError:
        raise UrlRefused("has a port that is not from 1 to 65535, or is not a valid URL") from None
    scheme = parts.scheme.lower()
    schemes = ("https", "http") if allow_private else ("https",)
    if scheme not in schemes:
        raise UrlRefused(
            "must be an https URL" if not allow_private else "must be an http or https URL"
        )
    if not hostname:
        raise UrlRefused("has no host")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("may not carry credentials")
    if parts.fragment or "#" in url:
        raise UrlRefused("may not carry a fragment")
    if port == 0:
        raise UrlRefused("has a port that is not from 1 to 65535")
    host = _idna_host(hostname)
    shown = f"[{host}]" if ":" in host else host
    default = 443 if scheme == "https" else 80
    netloc = shown if port in (None, default) else f"{shown}:{port}"
    path = _encoded(parts.path or "/", PATH_SAFE)
    query = _encoded(parts.query, QUERY_SAFE) if parts.query else ""
    normalized = f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")
    if len(normalized) > MAX_URL_LENGTH:
        raise UrlRefused(f"is longer than {MAX_URL_LENGTH} characters once encoded")
    return normalized


def check_url_form(url: str, allow_private: bool) -> tuple[str, str, int, str]:
    """(scheme, host, port, path with query) of an acceptable URL, in its normalized form (see
    `normalize_url`); else UrlRefused."""
    parts = urlsplit(normalize_url(url, allow_private))
    assert parts.hostname is not None  # normalize_url refused a URL without one
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port, path


def checked_addresses(
    host: str, port: int, allow_private: bool, resolver: Resolver = resolve
) -> list[str]:
    """The addresses to connect to for `host`: all of them public unless `allow_private`;
    else UrlRefused (also for a name that does not resolve)."""
    try:
        addresses = resolver(host, port)
    except (OSError, UnicodeError):
        raise UrlRefused(f"host {host!r} does not resolve") from None
    if not addresses:
        raise UrlRefused(f"host {host!r} does not resolve")
    if not allow_private:
        refused = [address for address in addresses if not is_public(address)]
        if refused:
            raise UrlRefused(f"host {host!r} resolves to a non-public address ({refused[0]})")
    return addresses


def check_url(url: str, allow_private: bool, resolver: Resolver = resolve) -> str:
    """The normalized form of a URL the service will send to; UrlRefused for its form, or,
    unless `allow_private`, for the addresses its host resolves to now."""
    normalized = normalize_url(url, allow_private)
    _, host, port, _ = check_url_form(normalized, allow_private)
    if not allow_private:
        checked_addresses(host, port, allow_private, resolver)
    return normalized


class Sender:
    """POSTs to tenants' URLs through the guard, on addresses it checked."""

    def __init__(self, timeout: float, allow_private: bool, resolver: Resolver = resolve):
        """Bound every exchange by `timeout` seconds; resolve hosts with `resolver`."""
        self.timeout = timeout
        self.allow_private = allow_private
        self.resolver = resolver
        self.tls = ssl.create_default_context()

    def check(self, url: str) -> str:
        """The guard alone (at subscription): the URL's normalized form."""
        return check_url(url, self.allow_private, self.resolver)

    def post(self, url: str, body: bytes, headers: dict) -> Answer:
        """POST `body` to `url` once: resolve and check, connect to a checked address, send,
        read the status and at most MAX_ANSWER_BYTES, all within the timeout."""
        deadline = time.monotonic() + self.timeout
        try:
            scheme, host, port, path = check_url_form(url, self.allow_private)
            addresses = checked_addresses(host, port, self.allow_private, self.resolver)
        except UrlRefused as exc:
            return Answer(None, f"refused: the URL {exc}")
        sock = None
        try:
            sock = self._connect(addresses, port, deadline)
            if scheme == "https":
                sock = self.tls.wrap_socket(sock, server_hostname=host)
            return self._exchange(sock, host, port, scheme, path, body, headers, deadline)
        except TimeoutError:
            return Answer(None, f"timed out after {self.timeout:g} s")
        except ssl.SSLError as exc:
            return Answer(None, f"TLS failed ({exc.reason or type(exc).__name__})")
        except ConnectionRefusedError:
            return Answer(None, "connection refused")
        except (OSError, http.client.HTTPException) as exc:
            if time.monotonic() >= deadline:
                return Answer(None, f"timed out after {self.timeout:g} s")
            return Answer(None, f"failed ({type(exc).__name__})")
        finally:
            if sock is not None:
                sock.close()

    def _connect(self, addresses: list[str], port: int, deadline: float) -> socket.socket:
        """A TCP connection to the first checked address that accepts one."""
        error: OSError = ConnectionRefusedError()
        for address in addresses:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError()
            try:
                return socket.create_connection((address, port), timeout=remaining)
            except OSError as exc:
                error = exc
        raise error

    def _exchange(self, sock, host, port, scheme, path, body, headers, deadline) -> Answer:
        """Send the request on `sock` and read the answer; a watchdog shuts the socket at the
        deadline, so a server that trickles bytes cannot stretch the exchange."""
        default = 443 if scheme == "https" else 80
        shown = f"[{host}]" if ":" in host else host
        connection = http.client.HTTPConnection(host, port)
        connection.sock = sock  # connected to the checked address: no second resolution
        watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _shut, (sock,))
        watchdog.daemon = True
        watchdog.start()
        try:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            connection.request(
                "POST",
                path,
                body=body,
                headers={
                    "Host": shown if port == default else f"{shown}:{port}",
                    "User-Agent": USER_AGENT,
                    "Content-Type": "application/json",
                    "Connection": "close",
                    **headers,
                },
            )
            response = connection.getresponse()
            response.read(MAX_ANSWER_BYTES)
            status = response.status
        finally:
            watchdog.cancel()
            connection.sock = None
        if time.monotonic() > deadline:
            raise TimeoutError()
        if 200 <= status < 300:
            return Answer(status)
        if 300 <= status < 400:
            return Answer(status, f"answered {status} (redirects are not followed)")
        return Answer(status, f"answered {status}")


def _shut(sock: socket.socket) -> None:
    """End a socket's exchange now (the watchdog's deadline)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
