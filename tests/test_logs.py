"""Request ids and one parseable access line per request, with no token or secret in it."""

import json
import logging
import os
import re
import sys

import pytest
from flask import g

from support.tokens import BODY
from tokensvc.logs import RequestIds, ServiceFormatter


def test_request_id_is_generated_and_echoed(client):
    """Without X-Request-ID, a fresh id is made and returned."""
    first = client.post("/livekit/token", json=BODY).headers["X-Request-ID"]
    second = client.post("/livekit/token", json=BODY).headers["X-Request-ID"]
    assert len(first) == 32 and first != second


def test_request_ids_are_unique_within_and_across_processes():
    """Made ids are 32 hex digits, never repeat in a process, and a forked child's differ."""
    ids = RequestIds()
    made = [ids.next() for _ in range(1000)]
    assert len(set(made)) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{32}", made_id) for made_id in made)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: one id, through the pipe, and out
        os.write(write, ids.next().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    theirs = os.read(read, 64).decode()
    os.close(read)
    assert len(theirs) == 32 and theirs[:16] != made[0][:16] and theirs not in made


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [
        ("req-123.abc:7", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("a b", False),
        ("<script>", False),
        ("", False),
    ],
)
def test_incoming_request_id_kept_only_if_sane(client, incoming, kept):
    """A sane X-Request-ID is honoured; anything else is replaced."""
    echoed = client.post("/livekit/token", json=BODY, headers={"X-Request-ID": incoming})
    assert (echoed.headers["X-Request-ID"] == incoming) is kept


def test_json_access_line(client, tenants, livekit, access_log):
    """One JSON line per request: id, method, path, status, tenant, room, outcome, calls, time."""
    response = client.post(
        "/livekit/token", json=BODY, headers={**tenants.headers("acme"), "X-Request-ID": "trace-1"}
    )
    forbidden = client.post("/livekit/token", json=BODY, headers=tenants.headers("globex"))
    lines = access_log.fields()
    assert len(lines) == 2
    ok, refused = lines
    assert ok["request_id"] == "trace-1" == response.headers["X-Request-ID"]
    assert (ok["method"], ok["path"], ok["status"], ok["outcome"]) == (
        "POST",
        "/livekit/token",
        200,
        "ok",
    )
    assert (ok["tenant"], ok["room"], ok["livekit_calls"]) == ("acme", BODY["room_name"], 2)
    assert ok["duration_ms"] > 0
    assert (refused["status"], refused["outcome"], refused["livekit_calls"]) == (
        403,
        "room_forbidden",
        0,
    )
    assert refused["request_id"] == forbidden.headers["X-Request-ID"]


def test_logfmt_access_line(make_app, access_log):
    """LOG_FORMAT=logfmt: key=value pairs, quoted where needed."""
    client = make_app(LOG_FORMAT="logfmt", AUTH_JWT_SECRET=None, AUTH_REQUIRED=None).test_client()
    client.post("/livekit/token", json={**BODY, "room_name": "a room"})
    client.post("/livekit/token", data="{", content_type="application/json")
    ok, bad = access_log.lines("logfmt")
    assert {"method=POST", "path=/livekit/token", "client=127.0.0.1", "status=200"} <= set(
        ok.split()
    )
    assert 'room="a room"' in ok and "outcome=ok" in ok and "livekit_calls=0" in ok
    assert "status=400" in bad and "outcome=invalid_request" in bad


def test_unauthorized_request_is_logged_without_the_token(client, access_log, tenants):
    """A refused bearer token is logged as unauthorized; the token itself never appears."""
    token = tenants.token("acme", secret="x" * 64)
    client.post("/livekit/token", json=BODY, headers={"Authorization": f"Bearer {token}"})
    (line,) = access_log.lines()
    assert json.loads(line)["outcome"] == "unauthorized"
    assert token not in line and "Bearer" not in line


@pytest.mark.slow
def test_every_service_line_is_json_with_request_id_and_livekit_host(
    make_gunicorn, tenants, livekit
):
    """Under gunicorn, every line written parses as JSON, gunicorn's own included: the start-up
    line names the LiveKit host, a warning carries the request id and the host, access lines as
    ever."""
    server = make_gunicorn()
    livekit.faults.error = "internal"
    status, _, headers = server.post("/livekit/token", BODY, tenants.headers("acme"))
    assert status == 502
    livekit.faults.error = None
    output = server.close()
    lines = [json.loads(line) for line in output.splitlines()]  # gunicorn's own lines too
    assert any(
        line.get("logger") == "gunicorn.error" and "Booting worker" in line["message"]
        for line in lines
    )
    host = livekit.ws_url.removeprefix("ws://")
    assert {
        "level": "info",
        "logger": "tokensvc",
        "message": f"starting: LiveKit server API at {host}",
    } in lines
    # The start-up warnings (AUTH_REQUIRED=false here) are lines of the log too, without a request.
    assert any(line["message"].startswith("starting: AUTH_REQUIRED=false") for line in lines)
    (warning,) = [line for line in lines if line.get("level") == "warning" and "request_id" in line]
    assert warning["request_id"] == headers["X-Request-ID"]
    assert host in warning["message"] and "ListRooms" in warning["message"]
    (access,) = [line for line in lines if "status" in line]
    assert (access["status"], access["outcome"]) == (502, "livekit_error")


def test_start_up_line_says_livekit_is_not_configured(make_app, caplog):
    """Without the LiveKit settings, one warning at start-up says so and what the route answers."""
    make_app(LIVEKIT_URL=None)
    (line,) = [
        r.getMessage()
        for r in caplog.records
        if r.getMessage().startswith("starting:") and "LiveKit" in r.getMessage()
    ]
    assert "LiveKit is not configured" in line and "livekit_not_configured" in line


@pytest.mark.parametrize("style", ["json", "logfmt"])
def test_error_line_with_traceback_is_one_line(app, style):
    """An error with a traceback is one LOG_FORMAT line, the traceback a field of it."""
    formatter = ServiceFormatter(style)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord(
            "tokensvc.http.views",
            logging.ERROR,
            __file__,
            1,
            "token request failed unexpectedly",
            None,
            sys.exc_info(),
        )
    with app.test_request_context():
        g.request_id = "req-7"
        line = formatter.format(record)
    assert "\n" not in line
    if style == "json":
        fields = json.loads(line)
        assert (fields["level"], fields["request_id"]) == ("error", "req-7")
        assert "RuntimeError: boom" in fields["exception"]
    else:
        assert (
            line.startswith("level=error logger=tokensvc.http.views ")
            and "request_id=req-7" in line
        )


RAW = "a\u2028b\u2029c\u0085d\u009be\u007ff\u0000g\nh\u001bi"


@pytest.mark.parametrize("style", ["json", "logfmt"])
def test_control_characters_are_escaped_and_read_back(make_app, tenants, access_log, style):
    """A room name and tenant id full of C0/C1 controls, DEL and U+2028/2029: the access line has
    none of them raw, stays one line, and its values parse back to exactly what was sent."""
    client = make_app(LOG_FORMAT=style).test_client()
    client.post("/livekit/token", json={**BODY, "room_name": RAW})
    (line,) = access_log.lines(style)
    unsafe = {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]}
    assert not unsafe & set(line) and len(line.splitlines()) == 1
    if style == "json":
        assert json.loads(line)["room"] == RAW
    else:
        quoted = re.search(r'room=("(?:[^"\\]|\\.)*")', line).group(1)
        assert json.loads(quoted) == RAW


@pytest.mark.slow
def test_python_warnings_are_log_lines_too(make_gunicorn):
    """A Python warning (PyJWT's, for a LiveKit secret under 32 bytes) is a LOG_FORMAT line
    from the py.warnings logger, not raw interpreter text; the secret is not in it."""
    server = make_gunicorn(LIVEKIT_API_SECRET="short-secret", AUTH_JWT_SECRET="", DEV_MODE="true")
    assert server.post("/livekit/token", BODY)[0] == 200
    output = server.close()
    lines = [json.loads(line) for line in output.splitlines()]
    (warning,) = [line for line in lines if line.get("logger") == "py.warnings"]
    assert warning["level"] == "warning" and "InsecureKeyLengthWarning" in warning["message"]
    assert "short-secret" not in output
