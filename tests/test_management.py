"""A tenant manages its own calls: list, inspect, end, remove, mute and re-permission, on the
real livekit-server with real participants (LiveKit's Python SDK over WebRTC); refusals and
validation also on the emulator. A removal sticks: the service refuses the removed identity a
token, and with LiveKit's webhooks pointed at the service, removes it again when it rejoins."""

import base64
import hashlib
import json
import time
from urllib.parse import quote

import jwt
import pytest

from support.participants import PUBLISH_REFUSED
from support.tokens import BODY, LIVEKIT_KEY, LIVEKIT_SECRET

ROOM = "team/standup #1"  # a slash and a space: the path form is percent-encoded
PATH = "/livekit/rooms/" + quote(ROOM, safe="")


def token_for(client, tenants, identity, tenant="acme", room=ROOM):
    """A token for `identity` in `room` from the service, as `tenant`; (status, body)."""
    body = {**BODY, "room_name": room, "participant_identity": identity}
    response = client.post("/livekit/token", json=body, headers=tenants.headers(tenant))
    return response.status_code, response.json


def join_two(client, tenants, call, publish=True):
    """alice (publishing a microphone) and bob join acme's room; return alice's track sid."""
    for identity in ("alice", "bob"):
        status, body = token_for(client, tenants, identity)
        assert status == 200, body
        call.join(identity, body["livekit_url"], body["token"])
    sid = call.publish("alice") if publish else None
    assert call.wait_for(lambda: call.sees("alice") == {"bob"} and call.sees("bob") == {"alice"})
    return sid


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("get", "/livekit/rooms", None),
        ("get", PATH, None),
        ("delete", PATH, None),
        ("delete", "/livekit/participant", {"room_name": ROOM, "participant_identity": "bob"}),
        (
            "post",
            "/livekit/participant/mute",
            {
                "room_name": ROOM,
                "participant_identity": "bob",
                "source": "microphone",
                "muted": True,
            },
        ),
        (
            "post",
            "/livekit/participant/permissions",
            {"room_name": ROOM, "participant_identity": "bob", "role": "viewer"},
        ),
    ],
)
def test_every_route_needs_a_tenant_in_every_mode(make_app, livekit, method, path, body):
    """Even with AUTH_REQUIRED=false: 401 with no bearer, LiveKit never called."""
    client = make_app(AUTH_REQUIRED="false").test_client()
    response = getattr(client, method)(path, json=body)
    assert (response.status_code, response.json["code"]) == (401, "unauthorized")
    assert livekit.call_count() == 0


@pytest.mark.parametrize(
    "path, body, field",
    [
        ("/livekit/participant", {"room_name": ROOM}, "participant_identity"),
        (
            "/livekit/participant",
            {"room_name": "x" * 257, "participant_identity": "a"},
            "room_name",
        ),
        (
            "/livekit/participant/mute",
            {"room_name": ROOM, "participant_identity": "a", "muted": True},
            "track_sid",
        ),
        (
            "/livekit/participant/mute",
            {"room_name": ROOM, "participant_identity": "a", "source": "speaker", "muted": True},
            "source",
        ),
        (
            "/livekit/participant/permissions",
            {"room_name": ROOM, "participant_identity": "a"},
            "role",
        ),
        (
            "/livekit/participant/permissions",
            {"room_name": ROOM, "participant_identity": "a", "role": "admin"},
            "role",
        ),
        (
            "/livekit/participant/permissions",
            {"room_name": ROOM, "participant_identity": "a", "role": "viewer", "can_publish": True},
            "role",
        ),
    ],
)
def test_bad_bodies_are_400_naming_the_field(client, tenants, livekit, path, body, field):
    """Every field is validated before LiveKit is called."""
    method = client.delete if path == "/livekit/participant" else client.post
    response = method(path, json=body, headers=tenants.headers("acme"))
    assert (response.status_code, response.json["code"]) == (400, "invalid_request")
    assert field in response.json["fields"]
    assert livekit.call_count() == 0


def test_room_name_in_the_path_follows_the_field_rules(client, tenants, livekit):
    """A path name over 256 bytes is 400; one that is not the tenant's is 404 like a missing one."""
    response = client.get("/livekit/rooms/" + "x" * 257, headers=tenants.headers("acme"))
    assert (response.status_code, response.json["code"]) == (400, "invalid_request")
    livekit.add_room("elsewhere", json.dumps({"auth_id": "globex"}))
    for name in ("elsewhere", "missing"):
        response = client.get(f"/livekit/rooms/{name}", headers=tenants.headers("acme"))
        assert (response.status_code, response.json["code"]) == (404, "room_not_found")
    assert livekit.calls == {"ListRooms": 2}


@pytest.mark.livekit_server
def test_list_asks_livekit_only_for_the_tenants_names(client, tenants, livekit):
    """GET /livekit/rooms: one ListRooms for the names the record gives the tenant; another
    tenant's rooms never appear; no names, no call."""
    for room in ("a-1", "a-2"):
        assert token_for(client, tenants, "alice", room=room)[0] == 200
    assert token_for(client, tenants, "gina", tenant="globex", room="g-1")[0] == 200
    livekit.calls.clear()
    rooms = client.get("/livekit/rooms", headers=tenants.headers("acme")).json["rooms"]
    assert sorted(room["name"] for room in rooms) == ["a-1", "a-2"]
    assert set(rooms[0]) == {"name", "sid", "num_participants", "max_participants", "creation_time"}
    assert livekit.calls == {"ListRooms": 1}
    livekit.calls.clear()
    assert client.get("/livekit/rooms", headers=tenants.headers("initech")).json == {"rooms": []}
    assert livekit.calls == {}


@pytest.mark.parametrize("bad", ["forged", "other-body", "expired", "garbage", "missing"])
def test_webhook_refuses_what_livekit_did_not_sign(client, tenants, livekit, bad):
    """A forged signature, a body that does not match its hash, an old event replayed after its
    token expired, garbage, no signature: 401, and nothing is done."""
    event = json.dumps(
        {"event": "participant_joined", "room": {"name": ROOM}, "participant": {"identity": "bob"}}
    )
    signed_body = "{}" if bad == "other-body" else event
    digest = base64.b64encode(hashlib.sha256(signed_body.encode()).digest()).decode()
    now = int(time.time())
    claims = {"iss": LIVEKIT_KEY, "sha256": digest, "nbf": now - 10, "exp": now + 300}
    if bad == "expired":
        claims.update(nbf=now - 1000, exp=now - 700)
    secret = "a-forger-s-secret-as-long-as-a-real-one!" if bad == "forged" else LIVEKIT_SECRET
    auth = {"garbage": "not a token", "missing": None}.get(bad, jwt.encode(claims, secret))
    headers = {"Content-Type": "application/webhook+json"}
    if auth is not None:
        headers["Authorization"] = auth
    response = client.post("/livekit/webhook", data=event, headers=headers)
    assert (response.status_code, response.json["code"]) == (401, "unauthorized")
    assert livekit.call_count() == 0


@pytest.mark.slow
@pytest.mark.livekit_server("livekit-server")
@pytest.mark.usefixtures("media_network")
def test_tenant_inspects_its_call_and_another_tenant_sees_nothing(client, tenants, livekit, call):
    """Two participants joined, alice publishing a microphone: acme lists the room and inspects
    it (identities, the track, its muted state); globex gets 404 for the name and an empty list,
    with no LiveKit call at all."""
    sid = join_two(client, tenants, call)
    headers = tenants.headers("acme")
    assert call.wait_for(
        lambda: (
            [
                r["num_participants"]
                for r in client.get("/livekit/rooms", headers=headers).json["rooms"]
            ]
            == [2]
        )
    )
    room = client.get(PATH, headers=headers).json
    assert room["name"] == ROOM and json.loads(room["metadata"]) == {"auth_id": "acme"}
    people = {p["identity"]: p for p in room["participants"]}
    assert set(people) == {"alice", "bob"}
    assert people["alice"]["tracks"] == [
        {"sid": sid, "type": "audio", "source": "microphone", "muted": False, "name": "microphone"}
    ]
    assert people["bob"]["tracks"] == [] and people["bob"]["state"] == "active"
    livekit.calls.clear()
    globex = tenants.headers("globex")
    assert client.get("/livekit/rooms", headers=globex).json == {"rooms": []}
    for method, path, body in [
        ("get", PATH, None),
        ("delete", PATH, None),
        ("delete", "/livekit/participant", {"room_name": ROOM, "participant_identity": "bob"}),
        (
            "post",
            "/livekit/participant/mute",
            {
                "room_name": ROOM,
                "participant_identity": "alice",
                "source": "microphone",
                "muted": True,
            },
        ),
        (
            "post",
            "/livekit/participant/permissions",
            {"room_name": ROOM, "participant_identity": "bob", "can_publish": False},
        ),
    ]:
        response = getattr(client, method)(path, json=body, headers=globex)
        assert (response.status_code, response.json["code"]) == (404, "room_not_found")
    assert livekit.calls == {}
    assert call.sees("alice") == {"bob"} and ("disconnected",) not in call.events["bob"]


@pytest.mark.slow
@pytest.mark.livekit_server("livekit-server")
@pytest.mark.usefixtures("media_network")
def test_ending_a_room_disconnects_everyone_and_the_name_stays(client, tenants, livekit, call):
    """DELETE the room: both participants are disconnected; the name stays acme's."""
    join_two(client, tenants, call, publish=False)
    response = client.delete(PATH, headers=tenants.headers("acme"))
    assert response.json == {"status": "ended", "room_name": ROOM}
    assert call.wait_for(
        lambda: (
            ("disconnected",) in call.events["alice"] and ("disconnected",) in call.events["bob"]
        )
    )
    assert token_for(client, tenants, "gina", tenant="globex")[0] == 403
    assert client.delete(PATH, headers=tenants.headers("acme")).json["code"] == "room_not_found"


@pytest.mark.slow
@pytest.mark.livekit_server("livekit-server")
@pytest.mark.usefixtures("media_network")
def test_removed_participant_is_refused_a_new_token(client, tenants, livekit, call):
    """DELETE the participant: bob is disconnected and refused a token for the room (403
    participant_removed); alice still gets one; an identity not in the room is 404."""
    join_two(client, tenants, call, publish=False)
    body = {"room_name": ROOM, "participant_identity": "bob"}
    response = client.delete("/livekit/participant", json=body, headers=tenants.headers("acme"))
    assert response.json == {"status": "removed", **body}
    assert call.wait_for(lambda: ("disconnected",) in call.events["bob"])
    status, refused = token_for(client, tenants, "bob")
    assert (status, refused["code"]) == (403, "participant_removed")
    assert token_for(client, tenants, "alice")[0] == 200
    assert token_for(client, tenants, "bob", room="another-room")[0] == 200
    missing = client.delete(
        "/livekit/participant",
        json={**body, "participant_identity": "zoe"},
        headers=tenants.headers("acme"),
    )
    assert (missing.status_code, missing.json["code"]) == (404, "participant_not_found")


@pytest.mark.slow
@pytest.mark.livekit_server("livekit-server")
@pytest.mark.usefixtures("media_network")
def test_mute_by_source_and_by_sid_reaches_the_other_participant(client, tenants, livekit, call):
    """Mute alice's microphone by source and bob's by track sid: each sees the other's muted;
    an unknown track is 404 track_not_found. (LiveKit refuses a remote unmute unless the server
    sets room.enable_remote_unmute: the route then answers 502 livekit_error.)"""
    alice_sid = join_two(client, tenants, call)
    bob_sid = call.publish("bob")
    headers = tenants.headers("acme")
    track = client.post(
        "/livekit/participant/mute",
        json={
            "room_name": ROOM,
            "participant_identity": "alice",
            "source": "microphone",
            "muted": True,
        },
        headers=headers,
    ).json
    assert (track["sid"], track["muted"], track["source"]) == (alice_sid, True, "microphone")
    assert call.wait_for(lambda: ("muted", "alice", alice_sid) in call.events["bob"])
    track = client.post(
        "/livekit/participant/mute",
        json={
            "room_name": ROOM,
            "participant_identity": "bob",
            "track_sid": bob_sid,
            "muted": True,
        },
        headers=headers,
    ).json
    assert (track["sid"], track["muted"]) == (bob_sid, True)
    assert call.wait_for(lambda: ("muted", "bob", bob_sid) in call.events["alice"])
    missing = client.post(
        "/livekit/participant/mute",
        json={
            "room_name": ROOM,
            "participant_identity": "alice",
            "source": "camera",
            "muted": True,
        },
        headers=headers,
    )
    assert (missing.status_code, missing.json["code"]) == (404, "track_not_found")


@pytest.mark.slow
@pytest.mark.livekit_server("livekit-server")
@pytest.mark.usefixtures("media_network")
def test_permissions_change_live(client, tenants, livekit, call):
    """bob loses can_publish and cannot publish; made a speaker again (role), he publishes."""
    join_two(client, tenants, call, publish=False)
    headers = tenants.headers("acme")
    base = {"room_name": ROOM, "participant_identity": "bob"}
    viewer = client.post(
        "/livekit/participant/permissions", json={**base, "role": "viewer"}, headers=headers
    ).json
    assert viewer["permission"]["can_publish"] is False
    assert viewer["permission"]["can_subscribe"] is True
    with pytest.raises(PUBLISH_REFUSED):
        call.publish("bob")
    speaker = client.post(
        "/livekit/participant/permissions", json={**base, "role": "speaker"}, headers=headers
    ).json
    assert speaker["permission"]["can_publish"] is True
    assert call.publish("bob").startswith("TR_")


@pytest.mark.slow
@pytest.mark.usefixtures("media_network")
def test_webhook_removes_a_rejoining_participant_again(make_webhooked, tenants, call, capsys):
    """With LiveKit's webhook.urls pointed at the service: bob is removed, rejoins with the
    refreshed token LiveKit gave him, and the service removes him again on participant_joined.
    Prints how long he was back in the room."""
    app, server = make_webhooked()
    client = app.test_client()
    join_two(client, tenants, call, publish=False)
    assert call.wait_for(lambda: any(e[0] == "token" for e in call.events["bob"]))
    refreshed = [e[1] for e in call.events["bob"] if e[0] == "token"][-1]
    body = {"room_name": ROOM, "participant_identity": "bob"}
    assert (
        client.delete(
            "/livekit/participant", json=body, headers=tenants.headers("acme")
        ).status_code
        == 200
    )
    assert call.wait_for(lambda: ("disconnected",) in call.events["bob"])
    call.events["alice"].clear()
    rejoined = time.monotonic()
    call.join("bob-again", server.ws_url, refreshed)
    assert call.wait_for(lambda: ("disconnected",) in call.events["bob-again"], 30)
    stayed = time.monotonic() - rejoined
    with capsys.disabled():
        print(
            f"\nremoved participant rejoining with its refreshed token was removed again "
            f"after {stayed:.2f} s (webhook participant_joined)"
        )
    assert stayed < 15


@pytest.mark.slow
@pytest.mark.livekit_server("livekit-server")
@pytest.mark.usefixtures("media_network")
def test_removal_holds_across_instances_sharing_redis(
    make_app, tenants, livekit, call, redis_server
):
    """Two service instances sharing STORAGE_URL on Redis: bob removed through one is refused a
    token by the other, for that room only."""
    first = make_app(STORAGE_URL=redis_server.url).test_client()
    second = make_app(STORAGE_URL=redis_server.url).test_client()
    join_two(first, tenants, call, publish=False)
    body = {"room_name": ROOM, "participant_identity": "bob"}
    assert (
        first.delete("/livekit/participant", json=body, headers=tenants.headers("acme")).status_code
        == 200
    )
    status, refused = token_for(second, tenants, "bob")
    assert (status, refused["code"]) == (403, "participant_removed")
    assert token_for(second, tenants, "alice")[0] == 200


def test_management_routes_are_in_metrics_and_the_access_log(make_app, tenants, access_log):
    """/metrics counts the management routes by route and code, with no tenant or room label;
    each request has its access line."""
    client = make_app(METRICS_ENABLED="true").test_client()
    assert (
        client.get("/livekit/rooms", headers=tenants.headers("metrics-tenant")).status_code == 200
    )
    assert (
        client.get(
            "/livekit/rooms/secret-room", headers=tenants.headers("metrics-tenant")
        ).status_code
        == 404
    )
    text = client.get("/metrics").get_data(as_text=True)
    assert 'code="ok",route="/livekit/rooms"' in text
    assert 'code="room_not_found",route="/livekit/rooms/<path:room_name>"' in text
    assert "metrics-tenant" not in text and "secret-room" not in text
    lines = access_log.fields()
    assert [(line["path"], line["status"], line["outcome"]) for line in lines[:2]] == [
        ("/livekit/rooms", 200, "ok"),
        ("/livekit/rooms/secret-room", 404, "room_not_found"),
    ]
