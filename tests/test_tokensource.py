"""LiveKit's TokenSource standard on POST /livekit/token: extra fields, refusals, the real SDK."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from support.tokens import BODY, verify_token

pytestmark = pytest.mark.livekit_server

NODE_DIR = Path(__file__).resolve().parent / "node"


def test_standard_fields_reach_the_token(client, tenants, livekit):
    """participant_metadata, participant_attributes and room_config.agents are minted in."""
    body = {
        **BODY,
        "participant_metadata": '{"plan": "pro"}',
        "participant_attributes": {"team": "blue", "seat": "3"},
        "room_config": {"agents": [{"agent_name": "support", "metadata": '{"lang": "en"}'}]},
    }
    response = client.post("/livekit/token", json=body, headers=tenants.headers("acme"))
    assert response.status_code == 200
    assert response.json["participant_token"] == response.json["token"]
    assert response.json["server_url"] == response.json["livekit_url"] == livekit.ws_url
    claims, raw = verify_token(response.json["token"])
    assert claims.metadata == '{"plan": "pro"}'
    assert claims.attributes == {
        "team": "blue",
        "seat": "3",
        "tokensvc.role": "speaker",
        "tokensvc.tenant": "acme",
    }
    agents = raw["roomConfig"]["agents"]
    assert agents == [{"agentName": "support", "metadata": '{"lang": "en"}'}]
    assert json.loads(raw["roomConfig"]["metadata"]) == {"auth_id": "acme"}


@pytest.mark.parametrize(
    ("room_config", "field"),
    [
        ({"metadata": '{"auth_id": "mallory"}'}, "room_config.metadata"),
        ({"name": "other-room"}, "room_config.name"),
        ({"empty_timeout": 1}, "room_config.empty_timeout"),
        ({"agents": [{"agent_name": "a", "deployment": "x"}]}, "room_config.agents.0.deployment"),
    ],
)
def test_room_config_beyond_agents_is_refused(client, tenants, livekit, room_config, field):
    """A client may never set room ownership or options: 400 field_not_allowed, nothing written."""
    response = client.post(
        "/livekit/token", json={**BODY, "room_config": room_config}, headers=tenants.headers()
    )
    assert response.status_code == 400
    assert response.json["code"] == "field_not_allowed"
    assert field in response.json["fields"]
    assert livekit.call_count() == 0


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"participant_attributes": {"k": "v" * 65536}}, "participant_attributes"),
        ({"participant_attributes": {"k": 1}}, "participant_attributes"),
        ({"participant_attributes": ["k"]}, "participant_attributes"),
        ({"participant_metadata": 5}, "participant_metadata"),
        ({"room_config": {"agents": "support"}}, "room_config"),
        ({"room_config": "agents"}, "room_config"),
    ],
)
def test_standard_fields_are_validated(make_app, extra, field):
    """Wrong types or oversized attributes: 400 invalid_request naming the field."""
    client = make_app(MAX_CONTENT_LENGTH="200000").test_client()
    response = client.post("/livekit/token", json={**BODY, **extra})
    assert response.status_code == 400
    assert response.json["code"] == "invalid_request"
    assert field in response.json["fields"]


def test_livekit_client_token_source(make_app, serve, tenants, livekit, tmp_path):
    """The real livekit-client SDK (Node) fetches a token with TokenSource.endpoint."""
    if shutil.which("node") is None or not (NODE_DIR / "node_modules").is_dir():
        pytest.skip("node or tests/node/node_modules missing: run `make install` with npm present")
    server = serve(make_app())
    result = tmp_path / "details.json"
    env = {
        **os.environ,
        "TOKEN_URL": server.url + "/livekit/token",
        "AUTHORIZATION": tenants.headers("acme")["Authorization"],
        "RESULT_FILE": str(result),
    }
    run = subprocess.run(
        ["node", "--test", "tokensource.test.mjs"],
        cwd=NODE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    details = json.loads(result.read_text())
    assert details["serverUrl"] == livekit.ws_url
    claims, raw = verify_token(details["participantToken"])
    assert (claims.identity, claims.name, raw["video"]["room"]) == (
        "sdk-user",
        "SDK User",
        "sdk-room",
    )
    assert claims.attributes == {
        "team": "blue",
        "tokensvc.role": "speaker",
        "tokensvc.tenant": "acme",
    }
    assert claims.metadata == '{"plan":"pro"}'
    assert raw["roomConfig"]["agents"] == [
        {"agentName": "support-agent", "metadata": '{"language":"en"}'}
    ]
    assert json.loads(livekit.get_room("sdk-room").metadata) == {"auth_id": "acme"}


def test_agent_dispatches_are_capped(client, tenants, livekit):
    """Four agents are minted in; a fifth is 400 invalid_request naming room_config, and
    nothing is written to LiveKit."""

    def agents(count):
        return {"agents": [{"agent_name": f"agent-{n}", "metadata": ""} for n in range(count)]}

    ok = client.post(
        "/livekit/token", json={**BODY, "room_config": agents(4)}, headers=tenants.headers("acme")
    )
    assert ok.status_code == 200
    assert len(verify_token(ok.json["token"])[1]["roomConfig"]["agents"]) == 4
    livekit.calls.clear()
    refused = client.post(
        "/livekit/token",
        json={**BODY, "room_name": "other", "room_config": agents(5)},
        headers=tenants.headers("acme"),
    )
    assert (refused.status_code, refused.json["code"]) == (400, "invalid_request")
    assert "room_config" in refused.json["fields"]
    assert livekit.call_count() == 0


@pytest.mark.livekit_server("livekit-server")
def test_a_room_the_service_creates_gets_the_requests_agents(client, tenants, livekit):
    """The room the service creates for a request carries its agent dispatches, as a room
    created by the join itself would (LiveKit's ListDispatch shows them)."""
    agents = [{"agent_name": "support", "metadata": '{"lang": "en"}'}]
    body = {**BODY, "room_name": "agents-room", "room_config": {"agents": agents}}
    response = client.post("/livekit/token", json=body, headers=tenants.headers("acme"))
    assert response.status_code == 200
    assert livekit.calls["CreateRoom"] == 1
    assert livekit.dispatches("agents-room") == [("support", '{"lang": "en"}')]
