"""Who may do what within a tenant: scopes, roles that cap every grant, identities bound to the
bearer, partial permission changes, and CORS that stays on the service's own routes.

The matrix runs every route for every kind of bearer, on the emulator and on the real
livekit-server: a refusal calls LiveKit 0 times and the storage 0 times. The findings that
motivated it run on the real server with real participants: each is refused now, and still
allowed for a bearer with the right scope."""

import re
from urllib.parse import quote

import pytest
from flask import Flask

from support.participants import PUBLISH_REFUSED
from support.processes import ROOT
from support.storage import records, storage_calls
from support.tokens import (
    BODY,
    LIVEKIT_KEY,
    LIVEKIT_SECRET,
    TENANT_SECRET,
    WEBHOOK_SECRETS_KEY,
    verify_token,
)
from tokensvc import ConfigError, TokenService
from tokensvc.context import service_state
from tokensvc.http.routes import ROUTE_SCOPES
from tokensvc.scopes import SCOPES

ROOM = "scoped/room 1"
PATH = "/livekit/rooms/" + quote(ROOM, safe="")
IDENTITY_CLAIM = "participant"
PODCASTER = (
    '{"podcaster": {"canPublish": true, "canSubscribe": true, "canPublishSources": ["microphone"]}}'
)


def request_for(view: str, target: str) -> tuple[str, str, dict | None]:
    """(method, path, body) of one route, acting on participant `target` in ROOM."""
    person = {"room_name": ROOM, "participant_identity": target}
    return {
        "issue_token": ("POST", "/livekit/token", {**BODY, **person, "role": "viewer"}),
        "list_rooms": ("GET", "/livekit/rooms", None),
        "get_room": ("GET", PATH, None),
        "end_room": ("DELETE", PATH, None),
        "remove_participant": ("DELETE", "/livekit/participant", person),
        "mute_track": (
            "POST",
            "/livekit/participant/mute",
            {**person, "source": "microphone", "muted": True},
        ),
        "set_permissions": (
            "POST",
            "/livekit/participant/permissions",
            {**person, "role": "viewer"},
        ),
        "usage": ("GET", "/livekit/usage", None),
        "create_webhook_endpoint": (
            "POST",
            "/livekit/webhook-endpoints",
            {"url": "http://127.0.0.1:9/hooks"},
        ),
        "list_webhook_endpoints": ("GET", "/livekit/webhook-endpoints", None),
        "delete_webhook_endpoint": ("DELETE", "/livekit/webhook-endpoints/ep_x", None),
        "update_webhook_endpoint": (
            "PATCH",
            "/livekit/webhook-endpoints/ep_x",
            {"enabled": True},
        ),
        "rotate_webhook_secret": ("POST", "/livekit/webhook-endpoints/ep_x/rotate-secret", None),
        "test_webhook_endpoint": ("POST", "/livekit/webhook-endpoints/ep_x/test", None),
        "list_webhook_deliveries": ("GET", "/livekit/webhook-deliveries", None),
        "retry_webhook_delivery": ("POST", "/livekit/webhook-deliveries/msg_x/retry", None),
        "open_console_session": ("POST", "/livekit/console-sessions", None),
        "tenant_audit": ("GET", "/livekit/audit", None),
    }[view]


#: The kinds of bearer: (claims, the participant it acts on).
BOUND = {"roles": ["viewer"], IDENTITY_CLAIM: "ann"}
BEARERS = {
    "backend": ({}, "host"),
    **{f"scope {scope}": ({"scope": scope}, "host") for scope in SCOPES},
    "roles only": ({"roles": ["viewer"]}, "host"),
    "bound, another identity": (BOUND, "host"),
    "bound, own identity": (BOUND, "ann"),
    "bound, empty scope": ({**BOUND, "scope": ""}, "ann"),
}
PARTICIPANT_ROUTES = {"remove_participant", "mute_track", "set_permissions"}
WEBHOOK_READS = {"list_webhook_endpoints", "list_webhook_deliveries"}
WEBHOOK_WRITES = {
    "create_webhook_endpoint",
    "update_webhook_endpoint",
    "delete_webhook_endpoint",
    "rotate_webhook_secret",
    "test_webhook_endpoint",
    "retry_webhook_delivery",
}
#: What each bearer may do, written out here rather than read from scopes.py.
ALLOWED = {
    "backend": set(ROUTE_SCOPES),
    "scope tokens:create": {"issue_token"},
    "scope rooms:read": {"list_rooms", "get_room"},
    "scope rooms:write": {"end_room"},
    "scope participants:write": PARTICIPANT_ROUTES,
    "scope webhooks:read": WEBHOOK_READS,
    "scope webhooks:write": WEBHOOK_WRITES,
    "scope usage:read": {"usage"},
    "scope console:open": {"open_console_session"},
    "scope audit:read": {"tenant_audit"},
    "roles only": {"issue_token"},
    "bound, another identity": set(),
    "bound, own identity": {"issue_token"} | PARTICIPANT_ROUTES,
    "bound, empty scope": set(),
}
#: A permitted request's answer in an owned room nobody joined (no such participant there).
ANSWERS = {
    "issue_token": (200, None),
    "list_rooms": (200, None),
    "get_room": (200, None),
    "end_room": (200, None),
    "usage": (200, None),
    "open_console_session": (201, None),
    "tenant_audit": (200, None),
    **{view: (404, "participant_not_found") for view in PARTICIPANT_ROUTES},
    "create_webhook_endpoint": (201, None),
    "list_webhook_endpoints": (200, None),
    "list_webhook_deliveries": (200, None),
    "retry_webhook_delivery": (404, "webhook_delivery_not_found"),
    **{
        view: (404, "webhook_endpoint_not_found")
        for view in (
            "update_webhook_endpoint",
            "delete_webhook_endpoint",
            "rotate_webhook_secret",
            "test_webhook_endpoint",
        )
    },
}


def expected(view: str, bearer: str) -> tuple[int, str | None]:
    """The status and code `bearer` gets on the route of `view`."""
    if view in ALLOWED[bearer]:
        return ANSWERS[view]
    if bearer == "bound, another identity" and view in {"issue_token"} | PARTICIPANT_ROUTES:
        return 403, "identity_forbidden"
    return 403, "scope_forbidden"


def call_route(client, view: str, target: str, headers: dict):
    """Make the request of `view` on `target` with `headers`; return the response."""
    method, path, body = request_for(view, target)
    return client.open(path, method=method, json=body, headers=headers)


@pytest.fixture
def scoped_app(make_app):
    """The service with bound identities and metrics (to count storage calls); the tenant's
    record, read by the mint before each case, stays read for the case (TENANT_RECORD_CACHE)."""
    return make_app(
        AUTH_IDENTITY_CLAIM=IDENTITY_CLAIM,
        METRICS_ENABLED="true",
        TENANT_WEBHOOKS_ALLOW_PRIVATE="true",
        TENANT_RECORD_CACHE="60",
    )


def test_the_matrix_covers_every_route_and_scope():
    """Every route of the service's API but LiveKit's webhook has a scope; the matrix has a
    bearer for each scope."""
    assert set(ROUTE_SCOPES) == set(ANSWERS)
    assert {f"scope {scope}" for scope in SCOPES} <= set(BEARERS) == set(ALLOWED)


@pytest.mark.livekit_server
@pytest.mark.parametrize("bearer", sorted(BEARERS))
@pytest.mark.parametrize("view", sorted(ROUTE_SCOPES))
def test_matrix(scoped_app, tenants, livekit, storage_url, view, bearer):
    """Every route x {no scope claim, each single scope, roles only, a bound identity acting on
    another and on itself}: the expected answer; a refusal calls neither LiveKit nor the
    storage, and writes nothing."""
    client = scoped_app.test_client()
    backend = tenants.headers("acme")
    minted = client.post(
        "/livekit/token",
        json={**BODY, "room_name": ROOM, "participant_identity": "host"},
        headers=backend,
    )
    assert minted.status_code == 200, minted.json
    livekit.calls.clear()
    stored, calls = records(storage_url), storage_calls(client)
    claims, target = BEARERS[bearer]
    response = call_route(client, view, target, tenants.headers("acme", **claims))
    status, code = expected(view, bearer)
    assert (response.status_code, (response.json or {}).get("code")) == (status, code), (
        response.json
    )
    if status == 403:
        assert livekit.calls == {}
        assert storage_calls(client) == calls
        assert records(storage_url) == stored
        if code == "scope_forbidden":
            assert response.json["scope"] == ROUTE_SCOPES[view][2]
            assert repr(ROUTE_SCOPES[view][2]) in response.json["error"]
    else:
        assert livekit.calls or view in {
            "list_rooms",
            "issue_token",
            "usage",
            "open_console_session",
            "tenant_audit",
        } | (WEBHOOK_READS | WEBHOOK_WRITES)


@pytest.mark.parametrize(
    "claim, scopes",
    [
        ("rooms:read tokens:create", {"rooms:read", "tokens:create"}),
        (["rooms:read", "tokens:create"], {"rooms:read", "tokens:create"}),
        ("rooms:read  openid other:thing", {"rooms:read"}),
        ("", set()),
        ([], set()),
    ],
)
def test_scope_claim_is_a_string_or_a_list(client, tenants, livekit, claim, scopes):
    """RFC 9068's space-separated string and a list both work; scopes of other services are
    ignored; an empty claim allows nothing, not everything."""
    headers = tenants.headers("acme", scope=claim)
    listed = client.get("/livekit/rooms", headers=headers)
    minted = client.post("/livekit/token", json=BODY, headers=headers)
    assert (listed.status_code == 200) is ("rooms:read" in scopes)
    assert (minted.status_code == 200) is ("tokens:create" in scopes)
    if "tokens:create" not in scopes:
        assert minted.json == {
            "error": "the bearer token lacks the scope 'tokens:create'",
            "code": "scope_forbidden",
            "scope": "tokens:create",
        }


@pytest.mark.parametrize("claim", [7, {"rooms:read": True}, ["rooms:read", 1], None])
def test_scope_claim_of_another_type_is_401_naming_it(client, tenants, livekit, claim):
    """A scopes claim that is neither a string nor a list of strings is refused, naming it
    (a claim present as null too: it is not absent)."""
    import jwt

    token = jwt.encode({"sub": "acme", "exp": 2**31, "scope": claim}, TENANT_SECRET)
    response = client.post(
        "/livekit/token", json=BODY, headers={"Authorization": f"Bearer {token}"}
    )
    assert (response.status_code, response.json["code"]) == (401, "unauthorized")
    assert "'scope'" in response.json["error"]
    assert livekit.call_count() == 0


def test_the_scopes_claim_is_named_by_the_setting(make_app, tenants, livekit):
    """AUTH_SCOPES_CLAIM=scp: that claim is read, and `scope` is just another claim."""
    client = make_app(AUTH_SCOPES_CLAIM="scp").test_client()
    assert (
        client.post(
            "/livekit/token",
            json=BODY,
            headers=tenants.headers("acme", scp=["rooms:read"], scope="tokens:create"),
        ).json["code"]
        == "scope_forbidden"
    )
    assert (
        client.post(
            "/livekit/token", json=BODY, headers=tenants.headers("acme", scp=["tokens:create"])
        ).status_code
        == 200
    )


def test_anonymous_tokens_work_as_before(make_app, livekit):
    """No tenant key at all, and AUTH_REQUIRED=false without a bearer: the token route serves
    anonymous requests as before; the management routes still need a tenant (401)."""
    for settings in ({"AUTH_JWT_SECRET": None, "AUTH_REQUIRED": None}, {}):
        client = make_app(**settings).test_client()
        assert client.post("/livekit/token", json=BODY).status_code == 200
        assert client.get("/livekit/rooms").status_code == 401


@pytest.mark.parametrize("claim", ["", "   ", 42, ["ann"], "x" * 257])
def test_identity_claim_that_is_no_identity_is_401(scoped_app, tenants, livekit, claim):
    """A bound identity must be a participant identity: else 401 naming the claim."""
    response = scoped_app.test_client().post(
        "/livekit/token", json=BODY, headers=tenants.headers("acme", **{IDENTITY_CLAIM: claim})
    )
    assert (response.status_code, response.json["code"]) == (401, "unauthorized")
    assert repr(IDENTITY_CLAIM) in response.json["error"]


def test_identity_is_compared_exactly(scoped_app, tenants, livekit):
    """A bound identity mints only itself, exactly: no trimming, case-folding or look-alikes."""
    client = scoped_app.test_client()
    headers = tenants.headers("acme", **{IDENTITY_CLAIM: "ann"})
    for other in ("ann ", "Ann", "\u0430nn", "ann\u200b"):
        response = client.post(
            "/livekit/token", json={**BODY, "participant_identity": other}, headers=headers
        )
        assert (response.status_code, response.json["code"]) == (403, "identity_forbidden")
    assert livekit.call_count() == 0
    minted = client.post(
        "/livekit/token", json={**BODY, "participant_identity": "ann"}, headers=headers
    )
    assert verify_token(minted.json["token"])[0].identity == "ann"


def test_without_the_setting_no_identity_is_bound(make_app, tenants, livekit):
    """AUTH_IDENTITY_CLAIM unset (the default): a claim of that name binds nothing."""
    client = make_app().test_client()
    response = client.post(
        "/livekit/token",
        json={**BODY, "participant_identity": "host"},
        headers=tenants.headers("acme", **{IDENTITY_CLAIM: "ann"}),
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "roles, grants, refused",
    [
        (["viewer"], {"can_publish": True}, "can_publish"),
        (["viewer"], {"can_publish_sources": ["microphone"]}, "can_publish_sources"),
        (["observer"], {"can_publish_data": True}, "can_publish_data"),
        (["viewer"], {"can_publish": False, "can_subscribe": True, "can_publish_data": True}, None),
        (["viewer", "speaker"], {"can_publish": True}, None),
        (["podcaster"], {"can_publish": True, "can_publish_sources": ["microphone"]}, None),
        (["podcaster"], {"can_publish_sources": ["camera"]}, "can_publish_sources"),
        (["podcaster"], {"can_publish_sources": []}, "can_publish_sources"),
        (["podcaster"], {"can_publish_data": True}, "can_publish_data"),
        (["speaker"], {"can_publish_sources": []}, None),
    ],
)
def test_explicit_grants_are_capped_by_the_roles(
    make_app, tenants, livekit, roles, grants, refused
):
    """With a roles claim, explicit grants never exceed the union of those roles' grants
    (sources: none listed means every one). Refused: 403 role_forbidden naming the grant, no
    LiveKit call; within the cap the request goes on (to LiveKit: no such participant)."""
    client = make_app(ROLE_PRESETS=PODCASTER).test_client()
    response = client.post(
        "/livekit/participant/permissions",
        json={"room_name": ROOM, "participant_identity": "bob", **grants},
        headers=tenants.headers("acme", roles=roles, scope="participants:write"),
    )
    if refused:
        assert (response.status_code, response.json["code"]) == (403, "role_forbidden")
        assert refused in response.json["error"]
        assert livekit.call_count() == 0
    else:
        assert (response.status_code, response.json["code"]) == (404, "room_not_found")


def test_the_openapi_document_names_each_operations_scope(client):
    """Each operation's security requirement names the scope of scopes.py's table, and the
    scheme's description lists every scope."""
    document = client.get("/openapi.json").json
    for method, path, scope in ROUTE_SCOPES.values():
        security = document["paths"][path][method.lower()]["security"]
        assert {"bearerAuth": [scope]} in security
    description = document["components"]["securitySchemes"]["bearerAuth"]["description"]
    assert all(f"`{scope}`: {meaning}" in description for scope, meaning in SCOPES.items())


def test_the_documented_scopes_are_the_declared_ones():
    """docs/security.md's scope table lists exactly scopes.py's scopes and their routes."""
    text = (ROOT / "docs" / "security.md").read_text()
    rows = re.findall(r"^\| `([a-z]+:[a-z]+)` \| (.*) \| (.*) \|$", text, re.MULTILINE)
    declared = {}
    for scope, meaning in SCOPES.items():
        routes = [
            f"`{method} {path}`"
            for method, path, needed in ROUTE_SCOPES.values()
            if needed == scope
        ]
        declared[scope] = (meaning, ", ".join(routes) or "none yet")
    assert {scope: (meaning, routes) for scope, meaning, routes in rows} == declared


# CORS: the service's headers only on its own routes, with its own options only.

ALLOWED_ORIGIN, OTHER_ORIGIN = "https://app.example", "https://evil.example"


def cors_headers(response) -> dict:
    """The response's Access-Control-* headers."""
    return {
        name: value
        for name, value in response.headers.items()
        if name.lower().startswith("access-control-")
    }


@pytest.fixture(params=[None, "/rtc"], ids=["no-prefix", "prefix"])
def host_with_cors_keys(request, livekit, storage_url):
    """Build a host app with CORS_* keys of its own (meant for flask-cors on its routes, were
    it to use it) and a secret route, the service embedded with or without a prefix."""
    apps = []

    def build(**settings):
        app = Flask("host")
        app.config.update(
            LIVEKIT_URL=livekit.ws_url,
            LIVEKIT_API_KEY=LIVEKIT_KEY,
            LIVEKIT_API_SECRET=LIVEKIT_SECRET,
            AUTH_JWT_SECRET=TENANT_SECRET,
            TENANT_WEBHOOK_SECRETS_KEY=WEBHOOK_SECRETS_KEY,
            STORAGE_URL=storage_url,
            CORS_ALLOWED_ORIGINS=ALLOWED_ORIGIN,
            CORS_ORIGINS="*",
            CORS_SUPPORTS_CREDENTIALS=True,
            CORS_ALLOW_HEADERS="X-Host-Secret",
            CORS_EXPOSE_HEADERS="X-Host-Secret",
            CORS_MAX_AGE=99999,
            CORS_RESOURCES=r"/*",
            CORS_ALLOW_PRIVATE_NETWORK=True,
            CORS_SEND_WILDCARD=True,
            **settings,
        )
        app.add_url_rule(
            "/account/secrets", "secrets", lambda: {"secret": "s3cr3t"}, methods=["GET", "POST"]
        )
        app.add_url_rule("/livekit-admin/secrets", "lookalike", lambda: {"secret": "s3cr3t"})
        TokenService(app, url_prefix=request.param)
        apps.append(app)
        return app, request.param or ""

    yield build
    for app in apps:
        service_state(app).close()


@pytest.mark.parametrize(
    "path", ["/account/secrets", "/livekit-admin/secrets", "/healthzz", "/no-such-page"]
)
def test_the_hosts_routes_get_no_cors_headers(host_with_cors_keys, path):
    """The host's own routes (and its 404s) never answer with the service's CORS headers, for
    any origin, on a request or a preflight."""
    host, _ = host_with_cors_keys()
    client = host.test_client()
    for origin in (ALLOWED_ORIGIN, OTHER_ORIGIN):
        assert cors_headers(client.get(path, headers={"Origin": origin})) == {}
        preflight = client.options(
            path,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert cors_headers(preflight) == {}


@pytest.mark.parametrize("credentials", [None, "true"])
def test_the_services_routes_use_only_the_services_options(
    host_with_cors_keys, tenants, credentials
):
    """On the service's routes: its origins only (not the host's `*`), its headers, max-age
    and no private-network grant; credentials only when CORS_ALLOW_CREDENTIALS says so."""
    host, prefix = host_with_cors_keys(CORS_ALLOW_CREDENTIALS=credentials)
    client = host.test_client()
    response = client.post(
        prefix + "/livekit/token",
        json=BODY,
        headers={"Origin": ALLOWED_ORIGIN, **tenants.headers("acme")},
    )
    assert response.status_code == 200
    granted = cors_headers(response)
    assert granted["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert granted["Access-Control-Expose-Headers"] == "X-Request-ID"
    assert granted.get("Access-Control-Allow-Credentials") == ("true" if credentials else None)
    preflight = cors_headers(
        client.options(
            prefix + "/livekit/token",
            headers={
                "Origin": ALLOWED_ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, x-host-secret",
                "Access-Control-Request-Private-Network": "true",
            },
        )
    )
    assert preflight["Access-Control-Max-Age"] == "600"
    assert "x-host-secret" not in preflight.get("Access-Control-Allow-Headers", "").lower()
    assert preflight.get("Access-Control-Allow-Private-Network", "false") == "false"
    assert (
        cors_headers(client.get(prefix + "/healthz", headers={"Origin": ALLOWED_ORIGIN}))[
            "Access-Control-Allow-Origin"
        ]
        == ALLOWED_ORIGIN
    )
    assert "Access-Control-Allow-Origin" not in cors_headers(
        client.post(prefix + "/livekit/token", json=BODY, headers={"Origin": OTHER_ORIGIN})
    )


def test_credentials_for_every_origin_stop_start_up(make_app):
    """CORS_ALLOW_CREDENTIALS with CORS_ALLOWED_ORIGINS=*: refused at start-up, naming it."""
    with pytest.raises(ConfigError, match="CORS_ALLOW_CREDENTIALS"):
        make_app(CORS_ALLOWED_ORIGINS="*", CORS_ALLOW_CREDENTIALS="true")


# The findings, on the real server with real participants.


def join(client, tenants, call, identity, role="speaker", **claims):
    """`identity` joins ROOM with a token the backend (or a bearer with `claims`) minted."""
    response = client.post(
        "/livekit/token",
        json={**BODY, "room_name": ROOM, "participant_identity": identity, "role": role},
        headers=tenants.headers("acme", **claims),
    )
    assert response.status_code == 200, response.json
    call.join(identity, response.json["livekit_url"], response.json["token"])


def end_user(tenants, **claims):
    """The headers of an end user's JWT: capped to viewer, bound to `vic`."""
    return tenants.headers("acme", roles=["viewer"], **{IDENTITY_CLAIM: "vic"}, **claims)


@pytest.mark.slow
@pytest.mark.livekit_server("livekit-server")
@pytest.mark.usefixtures("media_network")
def test_a_viewer_cannot_promote_itself(scoped_app, tenants, livekit, call):
    """A viewer's JWT asks for can_publish for `vic`: 403 (scope_forbidden unbound without
    participants:write; role_forbidden bound to vic, or with participants:write), nothing
    called, its publish still refused. A backend JWT (participants:write) promotes it: it
    publishes and the host hears it."""
    client = scoped_app.test_client()
    join(client, tenants, call, "host")
    join(client, tenants, call, "vic", role="viewer", roles=["viewer"], **{IDENTITY_CLAIM: "vic"})
    assert call.wait_for(lambda: call.sees("host") == {"vic"})
    promote = {"room_name": ROOM, "participant_identity": "vic", "can_publish": True}
    livekit.calls.clear()
    for headers, code in (
        (tenants.headers("acme", roles=["viewer"]), "scope_forbidden"),
        (end_user(tenants), "role_forbidden"),
        (tenants.headers("acme", roles=["viewer"], scope="participants:write"), "role_forbidden"),
    ):
        response = client.post("/livekit/participant/permissions", json=promote, headers=headers)
        assert (response.status_code, response.json["code"]) == (403, code)
    assert livekit.calls == {}
    with pytest.raises(PUBLISH_REFUSED):
        call.publish("vic")
    allowed = client.post(
        "/livekit/participant/permissions",
        json=promote,
        headers=tenants.headers("acme", scope="participants:write"),
    )
    assert allowed.status_code == 200 and allowed.json["permission"]["can_publish"] is True
    assert call.publish("vic").startswith("TR_")
    assert call.wait_for(lambda: call.frames["host"] > 50), "the host heard nothing"


@pytest.mark.slow
@pytest.mark.livekit_server("livekit-server")
@pytest.mark.usefixtures("media_network")
def test_a_viewer_cannot_mute_demote_or_end_the_host(scoped_app, tenants, livekit, call):
    """A viewer's JWT mutes the host, revokes its publishing, ends the room: 403 each time
    (scope_forbidden; identity_forbidden for the participant routes when it is bound to vic),
    nothing called, the host still publishing and connected. Bearers with participants:write
    and rooms:write do each."""
    client = scoped_app.test_client()
    join(client, tenants, call, "host")
    join(client, tenants, call, "vic", role="viewer")
    sid = call.publish("host")
    assert call.wait_for(lambda: call.frames["vic"] > 20)
    mute = (
        "post",
        "/livekit/participant/mute",
        {"room_name": ROOM, "participant_identity": "host", "source": "microphone", "muted": True},
    )
    revoke = (
        "post",
        "/livekit/participant/permissions",
        {"room_name": ROOM, "participant_identity": "host", "can_publish": False},
    )
    end = ("delete", PATH, None)
    livekit.calls.clear()
    for (method, path, body), bound_code in (
        (mute, "identity_forbidden"),
        (revoke, "identity_forbidden"),
        (end, "scope_forbidden"),
    ):
        for headers, code in (
            (end_user(tenants), bound_code),
            (tenants.headers("acme", roles=["viewer"]), "scope_forbidden"),
        ):
            response = getattr(client, method)(path, json=body, headers=headers)
            assert (response.status_code, response.json["code"]) == (403, code)
    assert livekit.calls == {}
    assert ("muted", "host", sid) not in call.events["vic"]
    assert ("disconnected",) not in call.events["host"]
    moderator = tenants.headers("acme", scope="participants:write")
    assert getattr(client, mute[0])(mute[1], json=mute[2], headers=moderator).status_code == 200
    assert call.wait_for(lambda: ("muted", "host", sid) in call.events["vic"])
    revoked = client.post(revoke[1], json=revoke[2], headers=moderator)
    assert revoked.json["permission"]["can_publish"] is False
    ended = client.delete(PATH, headers=tenants.headers("acme", scope="rooms:write"))
    assert ended.json == {"status": "ended", "room_name": ROOM}
    assert call.wait_for(lambda: ("disconnected",) in call.events["host"])


@pytest.mark.slow
@pytest.mark.livekit_server("livekit-server")
@pytest.mark.usefixtures("media_network")
def test_a_bound_end_user_cannot_mint_the_hosts_identity(scoped_app, tenants, livekit, call):
    """An end user bound to `vic` asks for a token for `host`: 403 identity_forbidden, nothing
    called, the host stays. For itself it gets one. A backend JWT with tokens:create still
    mints `host` (what the binding closes for end users: joining with it would disconnect
    the host)."""
    client = scoped_app.test_client()
    join(client, tenants, call, "host")
    livekit.calls.clear()
    body = {**BODY, "room_name": ROOM, "role": "viewer"}
    refused = client.post(
        "/livekit/token", json={**body, "participant_identity": "host"}, headers=end_user(tenants)
    )
    assert (refused.status_code, refused.json["code"]) == (403, "identity_forbidden")
    assert livekit.calls == {}
    own = client.post(
        "/livekit/token", json={**body, "participant_identity": "vic"}, headers=end_user(tenants)
    )
    assert own.status_code == 200
    call.join("vic", own.json["livekit_url"], own.json["token"])
    assert call.wait_for(lambda: call.sees("host") == {"vic"})
    assert ("disconnected",) not in call.events["host"]
    backend = client.post(
        "/livekit/token",
        json={**body, "participant_identity": "host"},
        headers=tenants.headers("acme", scope="tokens:create"),
    )
    assert backend.status_code == 200
    assert verify_token(backend.json["token"])[0].identity == "host"


@pytest.mark.slow
@pytest.mark.livekit_server("livekit-server")
@pytest.mark.usefixtures("media_network")
def test_partial_permission_changes_keep_the_other_grants(scoped_app, tenants, livekit, call):
    """Revoking can_publish alone keeps can_subscribe and can_publish_data: bob still hears
    alice; giving it back alone keeps them too, and bob publishes again. A bound end user
    without participants:write may change its own grants within its roles, not another's."""
    client = scoped_app.test_client()
    join(client, tenants, call, "alice")
    join(client, tenants, call, "bob")
    call.publish("alice")
    assert call.wait_for(lambda: call.frames["bob"] > 20)
    backend = tenants.headers("acme")
    base = {"room_name": ROOM, "participant_identity": "bob"}
    revoked = client.post(
        "/livekit/participant/permissions", json={**base, "can_publish": False}, headers=backend
    ).json["permission"]
    assert (revoked["can_publish"], revoked["can_subscribe"], revoked["can_publish_data"]) == (
        False,
        True,
        True,
    )
    heard = call.frames["bob"]
    assert call.wait_for(lambda: call.frames["bob"] > heard + 50), "bob stopped hearing alice"
    with pytest.raises(PUBLISH_REFUSED):
        call.publish("bob")
    bob = tenants.headers("acme", roles=["viewer", "speaker"], **{IDENTITY_CLAIM: "bob"})
    other = client.post(
        "/livekit/participant/permissions",
        json={**base, "participant_identity": "alice", "can_publish": False},
        headers=bob,
    )
    assert (other.status_code, other.json["code"]) == (403, "identity_forbidden")
    restored = client.post(
        "/livekit/participant/permissions", json={**base, "can_publish": True}, headers=bob
    ).json["permission"]
    assert (restored["can_publish"], restored["can_subscribe"], restored["can_publish_data"]) == (
        True,
        True,
        True,
    )
    assert call.publish("bob").startswith("TR_")
