"""Tenants the operator owns, on both backends, through two service instances sharing one storage
(TENANT_RECORD_CACHE=0, so each reads the record at each request): plans kept in the record that
no JWT raises or clears, seats per (tenant, room life), ownership before any quota, a rejoin's
room life beyond max_rooms ended, an empty scope that allows nothing, suspension and resumption,
the operator's API and CLI (which agree), and the audit trail."""

import json
import time

import pytest

from support.tokens import BODY, signed_webhook
from tokensvc.config import ConfigError
from tokensvc.context import service_state

ADMIN_TOKEN = "operator-token-" + "0123456789abcdef" * 2
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ACME = json.dumps({"auth_id": "acme"})
GLOBEX = json.dumps({"auth_id": "globex"})


@pytest.fixture
def pair(make_app, backend):
    """Two instances of the service on one storage (this test's backend), with ADMIN_TOKEN."""
    return [
        make_app(STORAGE_URL=backend, ADMIN_TOKEN=ADMIN_TOKEN, TENANT_RECORD_CACHE="0")
        for _ in range(2)
    ]


def mint(app, tenants, tenant="acme", room="standup", identity="alice", **claims):
    """Ask one instance for a token; return the response."""
    return app.test_client().post(
        "/livekit/token",
        json={**BODY, "room_name": room, "participant_identity": identity},
        headers=tenants.headers(tenant, **claims),
    )


def joined(app, room, identity, tenant="acme", owner=ACME, room_sid=None, kind=None):
    """LiveKit's participant_joined (or `kind`) of `identity` in `room`, delivered to `app`."""
    participant = {
        "sid": f"PA_{identity}_{room}",
        "identity": identity,
        "attributes": {"tokensvc.tenant": tenant},
        "joinedAt": str(int(time.time())),
    }
    body, headers = signed_webhook(
        kind or "participant_joined",
        room,
        metadata=owner,
        participant=participant,
        room_sid=room_sid,
    )
    response = app.test_client().post("/livekit/webhook", data=body, headers=headers)
    assert response.status_code == 200, response.json


def room_event(app, kind, room, owner=ACME, room_sid=None):
    """LiveKit's room_started or room_finished for `room`, delivered to `app`."""
    body, headers = signed_webhook(kind, room, metadata=owner, room_sid=room_sid)
    response = app.test_client().post("/livekit/webhook", data=body, headers=headers)
    assert response.status_code == 200, response.json


def patch(app, tenant, **limits):
    """PATCH /admin/tenants/<tenant> with `limits`; return the response."""
    return app.test_client().patch(f"/admin/tenants/{tenant}", json=limits, headers=ADMIN)


def test_a_claim_never_raises_a_limit_nor_clears_another(pair, tenants, livekit):
    """The operator caps acme at 2 participants (instance A). On instance B, with two seated: a
    JWT saying max_participants 10 is refused at 2, a JWT saying only max_rooms 50 too; the
    record is unchanged; a third join (a token minted before) is removed, told why."""
    first, second = pair
    assert patch(first, "acme", max_participants=2).json["max_participants"] == 2
    for identity in ("alice", "bob", "carol"):
        assert mint(second, tenants, identity=identity).status_code == 200
    for identity in ("alice", "bob"):
        joined(second, "standup", identity)
    for claims in ({"max_participants": 10}, {"max_rooms": 50}, {}):
        for app in pair:
            refused = mint(app, tenants, identity="dave", **claims)
            assert (refused.status_code, refused.json["code"]) == (403, "quota_exceeded")
            assert (refused.json["quota"], refused.json["limit"]) == ("max_participants", 2)
    shown = first.test_client().get("/admin/tenants/acme", headers=ADMIN).json
    assert (shown["max_participants"], shown["max_rooms"]) == (2, None)
    livekit.calls.clear()
    livekit.sent_data.clear()
    joined(first, "standup", "carol")
    assert livekit.calls == {"SendData": 1, "RemoveParticipant": 1}
    assert json.loads(livekit.sent_data[0].data)["code"] == "quota_exceeded"


def test_seats_of_a_name_another_tenant_used_start_from_zero(pair, tenants, livekit):
    """globex's two seated participants in "shared": once the name passes to acme (its room
    gone, the grace over), acme capped at 1 participant gets its token on either instance."""
    first, second = pair
    assert mint(first, tenants, "globex", room="shared").status_code == 200
    for identity in ("gina", "gus"):
        joined(first, "shared", identity, tenant="globex", owner=GLOBEX)
    patch(first, "acme", max_participants=1)
    holds = service_state(first).issuer.ownership.holds
    livekit.close_room("shared")

    def run_out():
        """Move both instances' storage clock past the hold."""
        hold = holds.get("shared")
        for app in pair:
            service_state(app).issuer.ownership.holds.clock.advance(hold.until - hold.now + 1)

    run_out()  # the hold runs out and LiveKit has no room: the grace starts
    assert mint(second, tenants, room="shared").json["code"] == "room_forbidden"
    run_out()  # the grace is over: the name passes
    taken = mint(second, tenants, room="shared")
    assert taken.status_code == 200, taken.json
    assert mint(first, tenants, room="shared", identity="bob").status_code == 200


@pytest.mark.parametrize(
    "claims",
    [{"max_participants": 1}, {"max_participants": 2}, {"max_participants": 3}, {"max_rooms": 0}],
)
def test_another_tenants_room_is_room_forbidden_whatever_the_quota(pair, tenants, claims):
    """globex's two-person room: acme asks for it under any quota, on either instance: 403
    room_forbidden, never quota_exceeded (no way to learn how full it is)."""
    first, second = pair
    assert mint(first, tenants, "globex", room="theirs").status_code == 200
    for identity in ("gina", "gus"):
        joined(first, "theirs", identity, tenant="globex", owner=GLOBEX)
    for app in pair:
        refused = mint(app, tenants, room="theirs", **claims)
        assert (refused.status_code, refused.json["code"]) == (403, "room_forbidden")
    patch(second, "acme", max_rooms=0, max_participants=0)
    assert mint(second, tenants, room="theirs").json["code"] == "room_forbidden"


def test_an_empty_scope_allows_nothing_not_even_on_its_own_identity(make_app, backend, tenants):
    """A JWT with scope "" bound to ann: refused on every route it tries, on either instance,
    its own permissions included (scope_forbidden); nothing reaches LiveKit."""
    apps = [make_app(STORAGE_URL=backend, AUTH_IDENTITY_CLAIM="participant") for _ in range(2)]
    assert mint(apps[0], tenants, room="standup", identity="ann").status_code == 200
    headers = tenants.headers("acme", scope="", participant="ann")
    for app in apps:
        client = app.test_client()
        promoted = client.post(
            "/livekit/participant/permissions",
            json={"room_name": "standup", "participant_identity": "ann", "can_publish": True},
            headers=headers,
        )
        assert (promoted.status_code, promoted.json["code"]) == (403, "scope_forbidden")
        token = client.post(
            "/livekit/token", json={**BODY, "participant_identity": "ann"}, headers=headers
        )
        assert token.json["code"] == "scope_forbidden"
        assert client.get("/livekit/audit", headers=headers).json["code"] == "scope_forbidden"


def test_a_rejoins_room_life_beyond_max_rooms_is_ended(pair, tenants, livekit):
    """max_rooms 1: room X finishes, Y is minted, then LiveKit starts X again for a rejoin with
    its earlier token: on that room_started X is told why and ended (DeleteRoom); Y stays."""
    first, second = pair
    patch(first, "acme", max_rooms=1)
    assert mint(first, tenants, room="x").status_code == 200
    room_event(first, "room_started", "x", room_sid="RM_x1")
    room_event(second, "room_finished", "x", room_sid="RM_x1")
    assert mint(second, tenants, room="y").status_code == 200
    room_event(second, "room_started", "y", room_sid="RM_y1")
    livekit.calls.clear()
    livekit.sent_data.clear()
    room_event(first, "room_started", "x", room_sid="RM_x2")
    assert livekit.calls == {"SendData": 1, "DeleteRoom": 1}
    assert json.loads(livekit.sent_data[0].data) == {
        "code": "quota_exceeded",
        "quota": "max_rooms",
        "limit": 1,
    }
    assert livekit.get_room("x") is None and livekit.get_room("y") is not None
    refused = mint(first, tenants, room="z")
    assert (refused.json["code"], refused.json["quota"]) == ("quota_exceeded", "max_rooms")


def test_suspension_refuses_everything_ends_rooms_and_resume_restores(pair, tenants, livekit):
    """Suspended on instance A: its live room is told and ended at once; on both instances its
    token, management and audit requests are 403 tenant_suspended; a room started again is
    ended on its event; globex is untouched. Resumed (the CLI on B): tokens again."""
    first, second = pair
    assert mint(first, tenants, room="call").status_code == 200
    assert mint(first, tenants, "globex", room="other").status_code == 200
    livekit.sent_data.clear()
    suspended = first.test_client().post(
        "/admin/tenants/acme/suspend", json={"reason": "unpaid invoice 42"}, headers=ADMIN
    )
    assert suspended.status_code == 200, suspended.json
    assert (suspended.json["status"], suspended.json["reason"]) == (
        "suspended",
        "unpaid invoice 42",
    )
    assert suspended.json["rooms_ended"] == 1
    assert livekit.get_room("call") is None and livekit.get_room("other") is not None
    assert [json.loads(sent.data) for sent in livekit.sent_data] == [{"code": "tenant_suspended"}]
    for app in pair:
        client, headers = app.test_client(), tenants.headers("acme")
        for response in (
            mint(app, tenants, room="call"),
            client.get("/livekit/rooms", headers=headers),
            client.get("/livekit/audit", headers=headers),
            client.post(
                "/livekit/webhook-endpoints", json={"url": "https://a.example"}, headers=headers
            ),
        ):
            assert (response.status_code, response.json["code"]) == (403, "tenant_suspended")
        assert mint(app, tenants, "globex", room="other", identity="gus").status_code == 200
    livekit.add_room("call", ACME)
    livekit.calls.clear()
    room_event(second, "room_started", "call", room_sid="RM_call2")
    assert livekit.calls["DeleteRoom"] == 1 and livekit.get_room("call") is None
    resumed = second.test_cli_runner().invoke(args=["tenants", "resume", "acme"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.output)["status"] == "active"
    assert mint(first, tenants, room="call").status_code == 200
    trail = first.test_client().get("/admin/audit?tenant=acme", headers=ADMIN).json["entries"]
    assert [(e["action"], e["actor"], e["subject"]) for e in trail] == [
        ("tenants.resume", "operator", "cli"),
        ("tenants.suspend", "operator", "admin-api"),
    ]
    assert trail[1]["detail"] == {"reason": "unpaid invoice 42"}


def test_the_admin_api_wants_admin_token_and_nothing_else(make_app, backend, tenants):
    """Missing, wrong, or a tenant's JWT (even one whose tenant is "admin"): 401 on every admin
    route; without ADMIN_TOKEN every admin route is 404; an ADMIN_TOKEN under 32 bytes stops
    the start."""
    app = make_app(STORAGE_URL=backend, ADMIN_TOKEN=ADMIN_TOKEN)
    unset = make_app(STORAGE_URL=backend)
    routes = [
        ("GET", "/admin/tenants"),
        ("GET", "/admin/tenants/acme"),
        ("PATCH", "/admin/tenants/acme"),
        ("POST", "/admin/tenants/acme/suspend"),
        ("POST", "/admin/tenants/acme/resume"),
        ("GET", "/admin/audit"),
    ]
    bearers = [
        {},
        {"Authorization": "Bearer " + ADMIN_TOKEN[:-1] + "x"},
        {"Authorization": ADMIN_TOKEN},
        tenants.headers("acme"),
        tenants.headers("admin"),
    ]
    for method, path in routes:
        for headers in bearers:
            response = app.test_client().open(path, method=method, json={}, headers=headers)
            assert (response.status_code, response.json["code"]) == (401, "unauthorized")
            assert ADMIN_TOKEN not in response.get_data(as_text=True)
        missing = unset.test_client().open(path, method=method, json={}, headers=ADMIN)
        assert (missing.status_code, missing.json["code"]) == (404, "not_found")
    assert app.test_client().get("/admin/tenants", headers=ADMIN).status_code == 200
    assert service_state(app).tenants.store.get("acme") is None  # nothing was written
    with pytest.raises(ConfigError, match="ADMIN_TOKEN"):
        make_app(STORAGE_URL=backend, ADMIN_TOKEN="too-short")


def test_the_cli_and_the_api_agree_on_every_field(pair, tenants):
    """A tenant set through the CLI shows the same through the API and the reverse, field for
    field; an empty CLI value and a JSON null both remove an override; bad values are refused
    by both, naming the field."""
    first, second = pair
    runner = first.test_cli_runner()
    result = runner.invoke(
        args=[
            "tenants",
            "set",
            "acme",
            "--max-rooms",
            "3",
            "--max-participants",
            "8",
            "--max-webhook-endpoints",
            "2",
            "--agents",
            "helper,scribe",
        ]
    )
    assert result.exit_code == 0, result.output
    by_cli = json.loads(result.output)
    by_api = second.test_client().get("/admin/tenants/acme", headers=ADMIN).json
    assert by_cli == by_api
    assert (
        by_api["max_rooms"],
        by_api["agents"],
        by_api["effective"]["max_webhook_endpoints"],
    ) == (
        3,
        ["helper", "scribe"],
        2,
    )
    patched = patch(second, "acme", max_rooms=None, agents=None)
    shown = json.loads(runner.invoke(args=["tenants", "show", "acme"]).output)
    assert patched.json == shown and (shown["max_rooms"], shown["agents"]) == (None, None)
    cleared = json.loads(
        runner.invoke(args=["tenants", "set", "acme", "--max-participants", ""]).output
    )
    assert cleared["max_participants"] is None and cleared["max_webhook_endpoints"] == 2
    listed = json.loads(runner.invoke(args=["tenants", "list"]).output)
    assert listed == first.test_client().get("/admin/tenants", headers=ADMIN).json
    assert [t["id"] for t in listed["tenants"]] == ["acme"]
    bad = patch(first, "acme", max_rooms=-1, color="red")
    assert bad.status_code == 400 and set(bad.json["fields"]) == {"max_rooms", "color"}
    refused = runner.invoke(args=["tenants", "set", "acme", "--max-rooms", "many"])
    assert refused.exit_code != 0 and "--max-rooms" in refused.output
    unknown = json.loads(runner.invoke(args=["tenants", "show", "initech"]).output)
    assert unknown["created_at"] is None and unknown["status"] == "active"


def test_the_record_sets_agents_and_webhook_endpoints(make_app, backend, tenants):
    """acme's record allows the agent helper only and one webhook endpoint: another agent is
    400, helper is dispatched; a second endpoint is 409."""
    first, second = (
        make_app(
            STORAGE_URL=backend,
            ADMIN_TOKEN=ADMIN_TOKEN,
            TENANT_RECORD_CACHE="0",
            TENANT_WEBHOOKS_ALLOW_PRIVATE="true",
        )
        for _ in range(2)
    )
    patch(first, "acme", agents=["helper"], max_webhook_endpoints=1)
    body = {**BODY, "room_config": {"agents": [{"agent_name": "scribe"}]}}
    client, headers = second.test_client(), tenants.headers("acme")
    assert client.post("/livekit/token", json=body, headers=headers).status_code == 400
    body["room_config"]["agents"][0]["agent_name"] = "helper"
    assert client.post("/livekit/token", json=body, headers=headers).status_code == 200
    hook = {"url": "http://127.0.0.1:9/hooks"}
    created = client.post("/livekit/webhook-endpoints", json=hook, headers=headers)
    assert created.status_code == 201, created.json
    again = client.post("/livekit/webhook-endpoints", json=hook, headers=headers)
    assert (again.status_code, again.json["code"]) == (409, "webhook_endpoints_limit")


def test_the_audit_trail_shows_who_did_what(make_app, backend, tenants, livekit):
    """acme's end of its room (by user-7 of acme) and a removal that found nobody are kept with
    their outcomes and subjects; a refused request (scope) is not; acme sees its own entries,
    globex none of them, the operator all."""
    app = make_app(STORAGE_URL=backend, ADMIN_TOKEN=ADMIN_TOKEN, AUTH_TENANT_CLAIM="org")
    client = app.test_client()
    acme = tenants.headers("user-7", org="acme")
    body = {**BODY, "room_name": "standup"}
    assert client.post("/livekit/token", json=body, headers=acme).status_code == 200
    gone = client.delete(
        "/livekit/participant",
        json={"room_name": "standup", "participant_identity": "nobody"},
        headers=acme,
    )
    assert gone.json["code"] == "participant_not_found"
    assert client.delete("/livekit/rooms/standup", headers=acme).status_code == 200
    narrow = tenants.headers("user-8", org="acme", scope="rooms:read")
    assert client.delete("/livekit/rooms/standup", headers=narrow).status_code == 403
    own = client.get("/livekit/audit", headers=acme).json["entries"]
    assert [(e["action"], e["target"], e["outcome"], e["subject"], e["actor"]) for e in own] == [
        ("rooms.end", "standup", "ok", "user-7", "tenant"),
        ("participants.remove", "standup", "participant_not_found", "user-7", "tenant"),
    ]
    assert own[1]["detail"] == {"participant_identity": "nobody"}
    assert client.get("/livekit/audit", headers=tenants.headers("x", org="globex")).json == {
        "entries": []
    }
    patch(app, "globex", max_rooms=4)
    everything = client.get("/admin/audit", headers=ADMIN).json["entries"]
    assert [(e["tenant"], e["action"]) for e in everything] == [
        ("globex", "tenants.set"),
        ("acme", "rooms.end"),
        ("acme", "participants.remove"),
    ]
    assert everything[0]["detail"] == {"max_rooms": 4}


def test_every_webhook_endpoint_change_is_audited(make_app, backend, tenants):
    """Subscribing, disabling, rotating and unsubscribing an endpoint through the API are each
    in the tenant's audit trail, newest first, under the console's action names."""
    app = make_app(STORAGE_URL=backend, TENANT_WEBHOOKS_ALLOW_PRIVATE="true")
    client = app.test_client()
    acme = tenants.headers("acme")
    created = client.post(
        "/livekit/webhook-endpoints", json={"url": "http://127.0.0.1:9/hooks"}, headers=acme
    )
    assert created.status_code == 201, created.json
    path = f"/livekit/webhook-endpoints/{created.json['id']}"
    assert client.patch(path, json={"enabled": False}, headers=acme).status_code == 200
    assert client.post(f"{path}/rotate-secret", headers=acme).status_code == 200
    assert client.delete(path, headers=acme).status_code == 200
    own = client.get("/livekit/audit", headers=acme).json["entries"]
    assert [(e["action"], e["outcome"]) for e in own] == [
        ("webhook_endpoints.delete", "ok"),
        ("webhook_endpoints.rotate", "ok"),
        ("webhook_endpoints.update", "ok"),
        ("webhook_endpoints.create", "ok"),
    ]


def test_a_change_applies_at_once_on_the_instance_that_made_it(make_app, backend, tenants):
    """With records kept 60 s (TENANT_RECORD_CACHE), a limit the operator sets through this
    instance applies to its next request, though the record was read just before."""
    app = make_app(STORAGE_URL=backend, ADMIN_TOKEN=ADMIN_TOKEN, TENANT_RECORD_CACHE="60")
    assert mint(app, tenants, room="one").status_code == 200
    room_event(app, "room_started", "one")
    patch(app, "acme", max_rooms=1)
    assert mint(app, tenants, room="two").json["code"] == "quota_exceeded"
    patch(app, "acme", max_rooms=None)
    assert mint(app, tenants, room="two").status_code == 200
