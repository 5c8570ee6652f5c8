"""The route table (tokensvc/http/routes.py) is the one declaration of the service's routes:
every route served is in it with a scope decision, and a room name in a path can never swallow
a sub-resource's path."""

import re

import pytest
from flask import Flask
from werkzeug.exceptions import NotFound
from werkzeug.routing import Map, Rule

from support.tokens import BODY
from tokensvc import TokenService
from tokensvc.auth import authenticate
from tokensvc.console.routes import CONSOLE_ROUTES, OPERATOR_ROUTES, Gate
from tokensvc.context import ROOM_NAME_CONVERTER, service_state
from tokensvc.http.routes import (
    ROUTES,
    NoTenantScope,
    cors_paths,
    room_name_converter,
    room_sub_resources,
    route_scopes,
)
from tokensvc.scopes import SCOPES


def routes_not_in_the_table(app: Flask, prefix: str = "") -> set[tuple[str, str, str]]:
    """(endpoint, rule, method) of each route of the service's blueprints in `app.url_map`
    (HEAD and OPTIONS aside) that no entry of the API's table or the consoles' declares."""
    declared = (
        {
            (f"tokensvc.{route.blueprint}.{route.name}", prefix + route.rule, route.method)
            for route in ROUTES
        }
        | {
            (f"tokensvc.console.{route.endpoint}", prefix + "/console" + route.path, route.method)
            for route in CONSOLE_ROUTES
        }
        | {
            (
                f"tokensvc.operator.{route.endpoint}",
                prefix + "/admin/console" + route.path,
                route.method,
            )
            for route in OPERATOR_ROUTES
        }
    )
    served = {
        (rule.endpoint, rule.rule, method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("tokensvc.")
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    return served - declared


def test_every_served_route_is_in_the_table_and_every_entry_is_served(app):
    """The app serves exactly the table's routes, each at its endpoint, path and method."""
    assert routes_not_in_the_table(app) == set()
    served = {
        (rule.endpoint, rule.rule, method)
        for rule in app.url_map.iter_rules()
        for method in rule.methods or ()
    }
    for route in ROUTES:
        assert (f"tokensvc.{route.blueprint}.{route.name}", route.rule, route.method) in served


def test_under_a_prefix_too(livekit):
    """Mounted under a prefix, the service still serves exactly the table's routes."""
    host = Flask("host")
    host.config.update(LIVEKIT_URL=livekit.ws_url, LIVEKIT_API_KEY="k", LIVEKIT_API_SECRET="s" * 40)
    TokenService(host, url_prefix="/rtc")
    try:
        assert routes_not_in_the_table(host, "/rtc") == set()
        assert any(rule.rule == "/rtc/livekit/token" for rule in host.url_map.iter_rules())
    finally:
        service_state(host).close()


def test_every_console_route_is_served_with_a_scope_decision(app):
    """Each entry of the consoles' tables (the tenant's, the operator's) is served at its
    endpoint, path and method, and needs a scope the API knows or says why it needs none (the
    operator's: each says)."""
    served = {
        (rule.endpoint, rule.rule, method)
        for rule in app.url_map.iter_rules()
        for method in rule.methods or ()
    }
    for route in CONSOLE_ROUTES:
        assert (f"tokensvc.console.{route.endpoint}", "/console" + route.path, route.method) in (
            served
        )
        assert route.scope in SCOPES or isinstance(route.scope, Gate), route
    for route in OPERATOR_ROUTES:
        assert (
            f"tokensvc.operator.{route.endpoint}",
            "/admin/console" + route.path,
            route.method,
        ) in served
        assert isinstance(route.scope, Gate), route


def test_a_route_outside_the_table_is_found(app):
    """A route added to the service's endpoints without a table entry is reported."""
    app.add_url_rule(
        "/livekit/rooms-report", "tokensvc.api.rooms_report", lambda: {}, methods=["GET"]
    )
    assert routes_not_in_the_table(app) == {
        ("tokensvc.api.rooms_report", "/livekit/rooms-report", "GET")
    }


def test_every_entry_has_a_scope_decision():
    """Each entry needs a known scope or says why it needs none; the bearer check reads the
    decision of every route of the api blueprint, and only routes that read no bearer token
    (LiveKit's webhook) go without."""
    for route in ROUTES:
        assert route.scope in SCOPES or isinstance(route.scope, NoTenantScope), route
    checked = route_scopes()
    assert set(checked) == {route.name for route in ROUTES if route.blueprint == "api"}
    assert {name for name, scope in checked.items() if scope is None} == {"livekit_webhook"}
    assert [route.name for route in ROUTES if route.anonymous] == ["issue_token"]


def test_a_route_with_no_scope_decision_fails_closed(app):
    """The bearer check refuses to run for an endpoint it has no decision for (KeyError:
    the route answers 500), rather than letting the request through."""
    with app.test_request_context("/livekit/rooms", headers={"Authorization": "Bearer x"}):
        with pytest.raises(KeyError):
            authenticate({})


# Room names in paths.


@pytest.fixture
def owned(make_app, tenants):
    """A client of the service, for which acme owns the rooms "a/b" and "a" (created)."""
    client = make_app().test_client()
    for room in ("a/b", "a"):
        body = {**BODY, "room_name": room}
        response = client.post("/livekit/token", json=body, headers=tenants.headers("acme"))
        assert response.status_code == 200, response.json
    return client


@pytest.mark.parametrize("path", ["/livekit/rooms/a%2Fb", "/livekit/rooms/a/b"])
def test_a_room_name_with_a_slash_is_one_room_name(owned, tenants, path):
    """`a/b` percent-encoded, or with its `/` as is, names the room "a/b"."""
    response = owned.get(path, headers=tenants.headers("acme"))
    assert response.status_code == 200, response.json
    assert response.json["name"] == "a/b"


@pytest.mark.parametrize(
    "path", ["/livekit/rooms/a/participants", "/livekit/rooms/a%2Fparticipants"]
)
def test_any_room_name_reaches_its_room_while_no_route_reserves_a_segment(owned, tenants, path):
    """No route of the table puts a sub-resource after a room name, so no name is refused: the
    room "a/participants" is inspected by its path, whichever way its `/` is sent."""
    body = {**BODY, "room_name": "a/participants"}
    created = owned.post("/livekit/token", json=body, headers=tenants.headers("acme"))
    assert created.status_code == 200, created.json
    response = owned.get(path, headers=tenants.headers("acme"))
    assert response.status_code == 200, response.json
    assert response.json["name"] == "a/participants"
    assert room_sub_resources() == ()


def test_a_later_sub_resource_route_gets_its_own_paths():
    """With a route for a room's sub-resource, its paths reach it, the room name in them may
    hold `/`, and the room's route matches only room names."""
    urls = Map(
        [
            Rule(f"/livekit/rooms/<{ROOM_NAME_CONVERTER}:room_name>", endpoint="room"),
            Rule(
                f"/livekit/rooms/<{ROOM_NAME_CONVERTER}:room_name>/participants",
                endpoint="participants",
            ),
        ],
        converters={ROOM_NAME_CONVERTER: room_name_converter(("participants",))},
    ).bind("localhost")
    assert urls.match("/livekit/rooms/a/participants") == ("participants", {"room_name": "a"})
    assert urls.match("/livekit/rooms/a/b/participants") == (
        "participants",
        {"room_name": "a/b"},
    )
    assert urls.match("/livekit/rooms/participants") == ("room", {"room_name": "participants"})
    assert urls.match("/livekit/rooms/a/b") == ("room", {"room_name": "a/b"})
    with pytest.raises(NotFound):
        urls.match("/livekit/rooms/a/participants/bob")
    assert urls.build("room", {"room_name": "a/b #1"}) == "/livekit/rooms/a%2Fb%20%231"


def test_the_reserved_sub_resources_are_the_tables():
    """Every segment the table puts after a room name is reserved, and no other."""
    named = {
        route.path.split("{room_name}/", 1)[1].split("/", 1)[0]
        for route in ROUTES
        if "{room_name}/" in route.path
    }
    assert set(room_sub_resources()) == named


def concrete(path: str) -> str:
    """A request path for a table path, each parameter `x`."""
    return re.sub(r"\{\w+\}", "x", path)


@pytest.mark.parametrize(
    "route",
    [route for route in ROUTES if isinstance(route.scope, str) and not route.anonymous],
    ids=lambda route: route.name,
)
def test_every_scoped_route_but_the_tokens_needs_a_tenant(make_app, livekit, route):
    """Even with AUTH_REQUIRED=false, every route with a scope but the token route answers 401
    without a bearer token, before its body is read, and LiveKit is never called."""
    client = make_app(AUTH_REQUIRED="false").test_client()
    response = client.open(concrete(route.path), method=route.method)
    assert (response.status_code, response.json["code"]) == (401, "unauthorized")
    assert livekit.call_count() == 0


@pytest.mark.parametrize("prefix", ["", "/rtc"])
def test_cors_applies_to_each_route_of_the_table_and_nothing_of_a_hosts(prefix):
    """The CORS paths, from the table: every route with CORS (and the service's namespace, for
    its own 404s), never a host's look-alike path."""
    paths = cors_paths(prefix)
    for route in ROUTES:
        assert bool(paths.match(prefix + concrete(route.path))) is route.cors, route.path
    assert paths.match(prefix + "/livekit/no-such-route")
    for host_path in ("/livekit-admin/secrets", "/healthzz", "/account/secrets", "/livekit"):
        assert not paths.match(prefix + host_path), host_path
    if prefix:
        assert not paths.match("/livekit/token")
