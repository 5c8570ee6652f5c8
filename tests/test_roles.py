"""Roles: a token request names a preset (speaker by default, viewer, observer, or one of
ROLE_PRESETS), the token carries exactly its grants, and the tenant JWT's roles claim caps what
a bearer may ask for. On the emulator, and on the real livekit-server with real participants."""

import json

import jwt
import pytest

from support.participants import PUBLISH_REFUSED
from support.tokens import BODY, TENANT_SECRET, verify_token
from tokensvc import ConfigError
from tokensvc.context import service_state

FORBIDDEN_GRANTS = {"roomAdmin", "roomCreate", "roomList", "roomRecord"}
PODCASTER = json.dumps(
    {"podcaster": {"canPublish": True, "canSubscribe": True, "canPublishSources": ["microphone"]}}
)
#: Exactly what each preset mints (besides roomJoin and room).
MINTED = {
    "speaker": {"canPublish": True, "canSubscribe": True, "canPublishData": True},
    "viewer": {"canPublish": False, "canSubscribe": True, "canPublishData": True},
    "observer": {
        "canPublish": False,
        "canSubscribe": True,
        "canPublishData": False,
        "hidden": True,
    },
    "podcaster": {
        "canPublish": True,
        "canSubscribe": True,
        "canPublishData": False,
        "canPublishSources": ["microphone"],
    },
}


def ask(client, tenants, role=None, identity="alice", room="roles-room", **claims):
    """Ask as acme for a token with `role` (the default when None); return the response."""
    body = {**BODY, "room_name": room, "participant_identity": identity}
    if role is not None:
        body["role"] = role
    return client.post("/livekit/token", json=body, headers=tenants.headers("acme", **claims))


@pytest.mark.livekit_server
@pytest.mark.parametrize("role", sorted(MINTED))
def test_every_preset_mints_exactly_its_grants(make_app, tenants, livekit, role):
    """The video grant is roomJoin for the one room plus the preset's grants, never an admin
    grant; the role and the tenant ride in reserved attributes."""
    client = make_app(ROLE_PRESETS=PODCASTER).test_client()
    response = ask(client, tenants, None if role == "speaker" else role)
    assert response.status_code == 200, response.json
    claims, raw = verify_token(response.json["token"])
    assert raw["video"] == {"roomJoin": True, "room": "roles-room", **MINTED[role]}
    assert not FORBIDDEN_GRANTS & set(raw["video"])
    assert claims.attributes == {"tokensvc.role": role, "tokensvc.tenant": "acme"}


def test_roles_claim_caps_the_role(client, tenants, livekit, app):
    """A bearer whose roles claim is ["viewer"]: speaker is 403 role_forbidden with nothing
    asked of LiveKit and nothing recorded; viewer is fine."""
    refused = ask(client, tenants, "speaker", roles=["viewer"])
    assert (refused.status_code, refused.json["code"]) == (403, "role_forbidden")
    default = ask(client, tenants, None, roles=["viewer"])  # the default role is speaker
    assert default.status_code == 403
    assert livekit.call_count() == 0
    assert service_state(app).issuer.ownership.holds.get("roles-room") is None
    assert ask(client, tenants, "viewer", roles=["viewer"]).status_code == 200


@pytest.mark.parametrize("claim", ["viewer", {"viewer": True}, [1], None])
def test_roles_claim_of_the_wrong_type_is_401_naming_it(client, tenants, livekit, claim):
    """A roles claim that is not a list of names is refused, naming the claim."""
    if claim is None:  # present but null (the tenants helper leaves None claims out)
        token = jwt.encode({"sub": "acme", "exp": 2**31, "roles": None}, TENANT_SECRET)
        response = client.post(
            "/livekit/token",
            json={**BODY, "role": "viewer"},
            headers={"Authorization": f"Bearer {token}"},
        )
    else:
        response = ask(client, tenants, "viewer", roles=claim)
    assert (response.status_code, response.json["code"]) == (401, "unauthorized")
    assert "'roles'" in response.json["error"]
    assert livekit.call_count() == 0


def test_unknown_role_is_400(client, tenants, livekit):
    """A role that is no preset: 400 naming the field and the presets; LiveKit not called."""
    response = ask(client, tenants, "admin")
    assert (response.status_code, response.json["code"]) == (400, "invalid_request")
    assert "observer, speaker, viewer" in response.json["fields"]["role"][0]
    assert livekit.call_count() == 0


def test_reserved_attributes_are_refused(client, tenants, livekit):
    """A client may not set attributes in the service's `tokensvc.` namespace."""
    body = {**BODY, "participant_attributes": {"tokensvc.role": "speaker", "team": "blue"}}
    response = client.post("/livekit/token", json=body, headers=tenants.headers("acme"))
    assert (response.status_code, response.json["code"]) == (400, "invalid_request")
    assert "participant_attributes" in response.json["fields"]
    assert livekit.call_count() == 0


@pytest.mark.parametrize(
    "presets, message",
    [
        ('{"boss": {"roomAdmin": true}}', "roomAdmin is not a participant grant"),
        ('{"boss": {"canPublish": "yes"}}', "canPublish must be true or false"),
        ('{"boss": {"canPublishSources": ["speaker"]}}', "canPublishSources lists sources"),
        ('["viewer"]', "expected a JSON object"),
        ("{not json", "expected a JSON object"),
    ],
)
def test_unusable_role_presets_stop_start_up(make_app, presets, message):
    """ROLE_PRESETS naming anything but participant grants stops the service, naming it."""
    with pytest.raises(ConfigError, match=f"ROLE_PRESETS: .*{message}"):
        make_app(ROLE_PRESETS=presets)


def test_permissions_route_is_capped_by_the_roles_claim(client, tenants, livekit):
    """Promoting someone to a role the bearer's roles claim does not allow: 403, no call (the
    bearer has participants:write, which a roles claim alone does not give)."""
    response = client.post(
        "/livekit/participant/permissions",
        json={"room_name": "roles-room", "participant_identity": "bob", "role": "speaker"},
        headers=tenants.headers("acme", roles=["viewer"], scope="participants:write"),
    )
    assert (response.status_code, response.json["code"]) == (403, "role_forbidden")
    assert livekit.call_count() == 0


@pytest.mark.slow
@pytest.mark.livekit_server("livekit-server")
@pytest.mark.usefixtures("media_network")
def test_viewer_listens_observer_is_hidden_speaker_publishes(client, tenants, livekit, call):
    """A speaker publishes and its audio reaches a viewer, whose own publish the server refuses;
    an observer sees both and is listed to neither."""
    for identity, role in (("sam", "speaker"), ("vic", "viewer"), ("oz", "observer")):
        response = ask(client, tenants, role, identity=identity)
        call.join(identity, response.json["livekit_url"], response.json["token"])
    assert call.publish("sam").startswith("TR_")
    assert call.wait_for(lambda: call.frames["vic"] > 50), "the viewer received no audio"
    with pytest.raises(PUBLISH_REFUSED):
        call.publish("vic")
    assert call.wait_for(lambda: call.sees("oz") == {"sam", "vic"})
    assert call.sees("sam") == {"vic"} and call.sees("vic") == {"sam"}


@pytest.mark.slow
@pytest.mark.livekit_server("livekit-server")
@pytest.mark.usefixtures("media_network")
def test_publish_sources_limit_what_publishes(make_app, tenants, livekit, call):
    """A preset allowing only the microphone: the microphone publishes, a camera is refused."""
    client = make_app(ROLE_PRESETS=PODCASTER).test_client()
    response = ask(client, tenants, "podcaster", identity="pod")
    call.join("pod", response.json["livekit_url"], response.json["token"])
    assert call.publish("pod", "microphone").startswith("TR_")
    with pytest.raises(PUBLISH_REFUSED):
        call.publish("pod", "camera")
