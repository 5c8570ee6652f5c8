"""The OpenAPI document: complete, and the served app's answers match it (schemathesis)."""

import pytest
import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance
from hypothesis import HealthCheck, given, settings

from tokensvc.openapi import TOKEN_ERRORS


@pytest.fixture
def openapi_app(make_app):
    """The app under test for schemathesis: auth optional, healthy emulator."""
    return make_app()


@pytest.fixture
def api_schema(openapi_app):
    """The document the app serves, loaded by schemathesis over WSGI."""
    return schemathesis.openapi.from_wsgi("/openapi.json", openapi_app)


def test_document_lists_every_status_and_the_security_scheme(client):
    """OpenAPI 3.1, bearer scheme, every SPEC status on the token route, examples present."""
    document = client.get("/openapi.json").json
    assert document["openapi"] == "3.1.0"
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    responses = document["paths"]["/livekit/token"]["post"]["responses"]
    assert set(responses) == {"200", *map(str, TOKEN_ERRORS)}
    for status in TOKEN_ERRORS:
        ref = responses[str(status)]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/Error")
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
    host.extensions["tokensvc"].close()


def test_responses_match_the_document(api_schema):
    """Every generated request, on every operation, gets a documented status and a body that
    matches its schema (schemathesis' checks: status, content type, schema, no server error)."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.label for op in operations} >= {
        "POST /livekit/token", "GET /healthz", "GET /readyz", "GET /livekit/rooms",
        "GET /livekit/rooms/{room_name}", "DELETE /livekit/participant",
        "POST /livekit/participant/mute", "POST /livekit/participant/permissions",
        "POST /livekit/webhook"}

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=60, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
        def check(case):
            # Not checked: that every schema-valid body is accepted. Names are limited to 256
            # bytes of UTF-8, which JSON Schema cannot say (maxLength counts characters).
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        check()
