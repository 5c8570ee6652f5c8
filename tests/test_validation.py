"""Bad requests: each answered with its documented JSON error, and nothing written to LiveKit."""

import pytest

from support.tokens import BODY

pytestmark = pytest.mark.livekit_server

LONG = "x" * 257


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({}, "room_name", "Missing data for required field."),
        ({**BODY, "room_name": None}, "room_name", "Field may not be null."),
        ({**BODY, "room_name": 42}, "room_name", "Not a valid string."),
        ({**BODY, "participant_name": ["a"]}, "participant_name", "Not a valid string."),
        ({**BODY, "participant_identity": {"a": 1}}, "participant_identity", "Not a valid string."),
        ({**BODY, "room_name": ""}, "room_name", "Must not be empty."),
        ({**BODY, "participant_name": " \t\n "}, "participant_name", "Must not be empty."),
        ({**BODY, "room_name": LONG}, "room_name", "Must be at most 256 bytes in UTF-8, got 257."),
        (
            {**BODY, "participant_identity": "é" * 129},
            "participant_identity",
            "Must be at most 256 bytes in UTF-8, got 258.",
        ),
        (
            {**BODY, "participant_name": "\ud800"},
            "participant_name",
            "Must be valid Unicode text (no lone surrogates).",
        ),
    ],
)
def test_invalid_field_is_named(client, tenants, livekit, body, field, message):
    """A missing, non-string, empty or too-long field: 400 naming the field, nothing written."""
    response = client.post("/livekit/token", json=body, headers=tenants.headers())
    assert response.status_code == 400
    assert response.json["code"] == "invalid_request"
    assert message in response.json["fields"][field]
    assert livekit.call_count() == 0


def test_exactly_256_bytes_is_accepted(client):
    """The limit is inclusive: 256 bytes of UTF-8 is a valid name."""
    body = {**BODY, "room_name": "é" * 128, "participant_identity": "x" * 256}
    assert client.post("/livekit/token", json=body).status_code == 200


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the request body is missing; send a JSON object"),
        (b"{not json", "the request body is not valid JSON"),
        (b"\xff\xfe", "the request body is not valid JSON"),
        (b"[" * 500 + b"]" * 500, "the request body must be a JSON object"),
        (b"[" * 20000, "the request body is nested too deeply"),
        (b'["room"]', "the request body must be a JSON object"),
        (b'"room"', "the request body must be a JSON object"),
        (b"null", "the request body must be a JSON object"),
    ],
    ids=["missing", "broken", "not-utf8", "nested-list", "too-deep", "list", "string", "null"],
)
def test_body_that_is_not_a_json_object(client, livekit, data, message):
    """Missing, unparsable or non-object bodies: 400 invalid_request with a clear message."""
    response = client.post("/livekit/token", data=data, content_type="application/json")
    assert response.status_code == 400
    assert response.json == {"error": message, "code": "invalid_request"}
    assert livekit.call_count() == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_body_that_is_not_json_media_type(client, tenants, livekit, content_type):
    """A body sent as anything but application/json: 415."""
    headers = tenants.headers()
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post("/livekit/token", data=b'{"room_name": "x"}', headers=headers)
    assert response.status_code == 415
    assert response.json["code"] == "unsupported_media_type"
    assert livekit.call_count() == 0


def test_json_with_charset_is_accepted(client):
    """`application/json; charset=utf-8` is JSON."""
    response = client.post(
        "/livekit/token", json=BODY, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert response.status_code == 200


def test_body_over_the_limit_is_413(make_app, tenants, livekit):
    """A body larger than MAX_CONTENT_LENGTH: 413 payload_too_large, nothing read or written."""
    client = make_app(MAX_CONTENT_LENGTH="1024").test_client()
    body = {**BODY, "padding": "x" * 1024}
    response = client.post("/livekit/token", json=body, headers=tenants.headers())
    assert response.status_code == 413
    assert response.json["code"] == "payload_too_large"
    assert livekit.call_count() == 0


def test_default_limit_is_64_kib(client):
    """Default MAX_CONTENT_LENGTH is 65536 bytes: just under passes, just over is 413."""
    prefix = len(
        b'{"room_name": "room-1", "participant_name": "Alice Smith", '
        b'"participant_identity": "alice", "p": ""}'
    )
    fits = {**BODY, "p": "x" * (65536 - prefix)}
    assert client.post("/livekit/token", json=fits).status_code == 200
    over = {**BODY, "p": "x" * (65537 - prefix)}
    assert client.post("/livekit/token", json=over).status_code == 413


def test_unknown_route_is_json_404(client):
    """No such route: JSON 404, never HTML."""
    response = client.get("/livekit/tokens")
    assert response.status_code == 404
    assert response.json == {"error": "no such route", "code": "not_found"}
    assert response.mimetype == "application/json"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_wrong_method_is_json_405(client, method):
    """Wrong method: JSON 405 with an Allow header."""
    response = client.open("/livekit/token", method=method)
    assert response.status_code == 405
    assert response.json["code"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


AGENTS = "room_config", "agents", "0"


@pytest.mark.parametrize(
    ("body", "path", "message"),
    [
        (
            {**BODY, "room_config": {"agents": [{"agent_name": "\ud800"}]}},
            (*AGENTS, "agent_name"),
            "Must be valid Unicode text (no lone surrogates).",
        ),
        (
            {**BODY, "room_config": {"agents": [{"agent_name": "a", "metadata": "\udfff"}]}},
            (*AGENTS, "metadata"),
            "Must be valid Unicode text (no lone surrogates).",
        ),
        (
            {**BODY, "room_config": {"agents": [{"agent_name": "é" * 129}]}},
            (*AGENTS, "agent_name"),
            "Must be at most 256 bytes in UTF-8, got 258.",
        ),
        (
            {**BODY, "participant_metadata": "x" * (512 * 1024 + 1)},
            ("participant_metadata",),
            "Must be at most 524288 bytes in UTF-8, got 524289.",
        ),
        (
            {**BODY, "participant_metadata": "\ud83d"},
            ("participant_metadata",),
            "Must be valid Unicode text (no lone surrogates).",
        ),
    ],
    ids=[
        "agent-name-surrogate",
        "agent-metadata-surrogate",
        "agent-name-long",
        "metadata-over-livekit-limit",
        "metadata-surrogate",
    ],
)
def test_every_field_is_checked_before_livekit(make_app, tenants, livekit, body, path, message):
    """Agent dispatches and metadata are validated like names (UTF-8, LiveKit's limits: 512 KiB
    of metadata): 400 naming the field, and no room created."""
    client = make_app(MAX_CONTENT_LENGTH=str(1 << 20)).test_client()
    response = client.post("/livekit/token", json=body, headers=tenants.headers())
    assert (response.status_code, response.json["code"]) == (400, "invalid_request")
    messages = response.json["fields"]
    for key in path:
        messages = messages[key]
    assert message in messages
    assert livekit.call_count() == 0


def test_metadata_at_livekits_limit_is_accepted(make_app, tenants):
    """Exactly 512 KiB of participant metadata is what LiveKit accepts at join: 200."""
    client = make_app(MAX_CONTENT_LENGTH=str(1 << 20)).test_client()
    body = {**BODY, "participant_metadata": "x" * (512 * 1024)}
    assert client.post("/livekit/token", json=body, headers=tenants.headers()).status_code == 200


def test_agent_outside_the_allowed_names_is_refused(make_app, tenants, livekit):
    """AGENT_NAMES_ALLOWED: a dispatch of another agent is 400 naming the entry, nothing
    written; the allowed ones are minted."""
    client = make_app(AGENT_NAMES_ALLOWED="support-agent, notes").test_client()
    agents = [{"agent_name": "notes"}, {"agent_name": "crypto-miner"}]
    response = client.post(
        "/livekit/token",
        json={**BODY, "room_config": {"agents": agents}},
        headers=tenants.headers(),
    )
    assert (response.status_code, response.json["code"]) == (400, "invalid_request")
    assert response.json["fields"] == {
        "room_config.agents.1.agent_name": [
            "Agent 'crypto-miner' is not one of AGENT_NAMES_ALLOWED."
        ]
    }
    assert livekit.call_count() == 0
    allowed = {**BODY, "room_config": {"agents": agents[:1]}}
    assert client.post("/livekit/token", json=allowed, headers=tenants.headers()).status_code == 200


@pytest.mark.parametrize("path", ["//livekit/token", "/livekit//token", "/livekit/token//"])
def test_doubled_slash_is_json_404_not_a_redirect(client, tenants, livekit, path):
    """`//` in a path is a JSON 404, never a redirect (whose Location would echo the Host)."""
    response = client.post(path, json=BODY, headers={**tenants.headers(), "Host": "evil.example"})
    assert (response.status_code, response.json["code"]) == (404, "not_found")
    assert "Location" not in response.headers
    assert livekit.call_count() == 0
