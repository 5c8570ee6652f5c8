"""Errors gunicorn answers itself, before the app sees a request: JSON with a code, never HTML,
and no bearer token in the answer or in any log line."""

import json
import socket
import types

import jwt
import pytest

from support.tokens import TENANT_SECRET
from tokensvc.processes.gunicorn_glue import redact, replace_write_error, write_json_error

pytestmark = pytest.mark.slow

TOKEN = jwt.encode({"sub": "acme", "exp": 4102444800}, TENANT_SECRET, "HS256")


def raw_request(url: str, data: bytes) -> tuple[int, dict, str]:
    """Send raw bytes; return (status, parsed JSON body, Content-Type) of the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), json.loads(body), headers["Content-Type"]


REQUESTS = {
    "header over 8 KiB": (
        b"POST /livekit/token HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + b"a" * 9000
        + b"\r\n\r\n",
        431,
    ),
    "request line over 4 KiB": (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    "duplicate Content-Length": (
        b"POST /livekit/token HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        b"Content-Length: 3\r\n\r\n{}",
        400,
    ),
    "header line without its colon": (
        b"POST /livekit/token HTTP/1.1\r\nHost: x\r\nAuthorization Bearer "
        + TOKEN.encode()
        + b"\r\nContent-Length: 2\r\n\r\n{}",
        400,
    ),
    "not HTTP at all": (b"\x16\x03\x01\x02\x00 hello\r\n\r\n", 400),
}


@pytest.mark.parametrize("name", REQUESTS)
def test_gunicorn_errors_are_json_without_the_token(make_gunicorn, name):
    """Each malformed request gets gunicorn's status with a JSON body and a code; neither the
    answer nor gunicorn's log (checked for every JWT and bearer value at teardown) has the token."""
    data, status = REQUESTS[name]
    server = make_gunicorn()
    answer = raw_request(server.url, data)
    assert answer[0] == status
    assert answer[2] == "application/json"
    assert set(answer[1]) == {"error", "code"}
    assert answer[1]["code"] == "invalid_request"
    assert TOKEN not in json.dumps(answer[1])
    output = server.close()
    assert TOKEN not in output and "Bearer ey" not in output
    if name == "header line without its colon":
        assert "Invalid request from ip=" in output and "Authorization [redacted]" in output


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Invalid header name 'Authorization Bearer eyJa.eyJb.c'",
            "Invalid header name 'Authorization [redacted]'",
        ),
        ("got bearer abc.def and more", "got bearer [redacted] and more"),
        ("token eyJhbGciOi.eyJzdWIi.sig here", "token [redacted] here"),
        ("nothing secret here", "nothing secret here"),
    ],
)
def test_redact(text, expected):
    """Bearer values, JWTs and Authorization header values are replaced; other text is kept."""
    assert redact(text) == expected


def test_the_glue_replaces_gunicorns_own_error_writer():
    """The installed gunicorn has `util.write_error(sock, status_int, reason, mesg)`, and the glue
    puts the JSON writer in its place; a gunicorn where it moved is refused at start-up."""
    from gunicorn import util

    module = types.SimpleNamespace(write_error=util.write_error)
    replace_write_error(module)
    assert module.write_error is write_json_error
    with pytest.raises(RuntimeError, match="util.write_error"):
        replace_write_error(types.SimpleNamespace())
    with pytest.raises(RuntimeError, match="util.write_error"):
        replace_write_error(types.SimpleNamespace(write_error=lambda sock, status: None))
