"""The OpenAPI document: complete, and the served app's answers match it (schemathesis)."""

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from support.processes import ROOT
from tokensvc.context import service_state
from tokensvc.errors import MANAGEMENT, TOKEN, error_table
from tokensvc.http.openapi import ROUTE_LEVEL_CODES
from tokensvc.http.routes import ROUTES


@pytest.fixture
def openapi_app(make_app):
    """The app under test for schemathesis: auth optional, healthy emulator."""
    return make_app()


@pytest.fixture
def api_schema(openapi_app):
    """The document the app serves, loaded by schemathesis over WSGI."""
    return schemathesis.openapi.from_wsgi("/openapi.json", openapi_app)


@pytest.mark.parametrize(
    ("path", "method", "route"),
    [
        ("/livekit/token", "post", TOKEN),
        ("/livekit/rooms", "get", MANAGEMENT),
        ("/livekit/participant/mute", "post", MANAGEMENT),
    ],
)
def test_document_lists_every_error_of_each_route(client, path, method, route):
    """Each operation lists every status and code its route family may answer (the table in
    errors.py), each with the Error schema; routing's 404/405 are left to the route level."""
    responses = client.get("/openapi.json").json["paths"][path][method]["responses"]
    table = {
        status: [code for code in codes if code not in ROUTE_LEVEL_CODES]
        for status, codes in error_table(route).items()
    }
    assert set(responses) == {"200"} | {str(status) for status, codes in table.items() if codes}
    for status, codes in table.items():
        for code in codes:
            assert f"{code}: " in responses[str(status)]["description"], (status, code)
        if codes:
            ref = responses[str(status)]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/Error")


def test_document_has_the_security_scheme_and_examples(client):
    """OpenAPI 3.1, the bearer scheme, and a request example on the token route."""
    document = client.get("/openapi.json").json
    assert document["openapi"] == "3.1.0"
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    body = document["paths"]["/livekit/token"]["post"]["requestBody"]["content"]
    assert body["application/json"]["example"]["room_name"] == "conversation-room-123"


def test_embedded_document_uses_the_prefix(livekit):
    """Mounted under a prefix, the document's server URL says so."""
    from flask import Flask

    from tokensvc import TokenService

    host = Flask("host")
    host.config.update(LIVEKIT_URL=livekit.ws_url, LIVEKIT_API_KEY="k", LIVEKIT_API_SECRET="s" * 40)
    TokenService(host, url_prefix="/api/rtc")
    document = host.test_client().get("/api/rtc/openapi.json").json
    assert document["servers"] == [{"url": "/api/rtc"}]
    service_state(host).close()


def test_document_lists_exactly_the_served_routes(app, client):
    """Every route the service's API serves (app.url_map, HEAD and OPTIONS aside; the tenant's
    and the operator's consoles' HTML pages are not the API) is documented, and nothing else
    is."""
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("tokensvc.") and not rule.endpoint.startswith(
            ("tokensvc.console.", "tokensvc.operator.")
        ):
            path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
            served |= {(path, method.lower()) for method in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {
        (path, method)
        for path, operations in client.get("/openapi.json").json["paths"].items()
        for method in operations
    }
    assert documented == served


def test_responses_match_the_document(api_schema):
    """Every generated request, on every operation, gets a documented status and a body that
    matches its schema (schemathesis' checks: status, content type, schema, no server error)."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    # schemathesis leaves out the document's own operation (test above covers it).
    assert {op.label for op in operations} == {
        f"{route.method} {route.path}" for route in ROUTES if route.path != "/openapi.json"
    }

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=60,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        def check(case):
            # Not checked: that every schema-valid body is accepted. Names are limited to 256
            # bytes of UTF-8, which JSON Schema cannot say (maxLength counts characters).
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        check()


def test_the_operators_and_the_audit_routes_are_documented(client):
    """Every admin route of the table is documented behind the operator's bearer (ADMIN_TOKEN)
    with its 401 and 404, its answer a Tenant or audit entries; GET /livekit/audit needs
    audit:read."""
    document = client.get("/openapi.json").json
    assert document["components"]["securitySchemes"]["adminBearer"]["scheme"] == "bearer"
    admin = [route for route in ROUTES if route.blueprint == "admin"]
    assert {(route.method, route.path) for route in admin} == {
        ("GET", "/admin/tenants"),
        ("GET", "/admin/tenants/{tenant}"),
        ("PATCH", "/admin/tenants/{tenant}"),
        ("POST", "/admin/tenants/{tenant}/suspend"),
        ("POST", "/admin/tenants/{tenant}/resume"),
        ("GET", "/admin/audit"),
    }
    for route in admin:
        operation = document["paths"][route.path][route.method.lower()]
        assert operation["security"] == [{"adminBearer": []}]
        assert {"200", "401", "404"} <= set(operation["responses"])
    tenant = document["paths"]["/admin/tenants/{tenant}"]["patch"]["responses"]["200"]
    assert tenant["content"]["application/json"]["schema"]["$ref"].endswith("/Tenant")
    audit = document["paths"]["/livekit/audit"]["get"]
    assert audit["security"] == [{"bearerAuth": ["audit:read"]}]


def test_the_documented_error_table_is_the_declared_one():
    """docs/api.md's table of statuses and codes lists exactly what errors.py declares."""
    text = (ROOT / "docs" / "api.md").read_text()
    rows = set(re.findall(r"^\| (\d{3}) \| `([a-z_]+)` \|", text, re.MULTILINE))
    declared = {
        (str(status), code)
        for route in (TOKEN, MANAGEMENT)
        for status, codes in error_table(route).items()
        for code in codes
    }
    assert rows == declared
