"""Generated bad input: every answer is in the error table, nothing leaks, the app keeps serving."""

import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from support.tokens import BODY, LIVEKIT_SECRET, TENANT_SECRET, Tenants, verify_token
from tokensvc.errors import TOKEN, error_table

#: Every status the token route may answer, with its codes (the table errors.py declares).
CONTRACT = {status: set(codes) for status, codes in error_table(TOKEN).items()}
FIELDS = ("room_name", "participant_name", "participant_identity")
FUZZ = settings(
    max_examples=1500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

any_text = st.text(st.characters(exclude_categories=()), max_size=300)
tricky_text = st.sampled_from(
    [
        "a\u0301\u0302\u0303",
        "\u202eevil\u202c",
        "שלום",
        "\x00",
        "a\x00b",
        "\ud800",
        "\udfff",
        " ",
        "\t\n",
        "x" * 256,
        "x" * 257,
        "é" * 128,
        "é" * 129,
        "🎧" * 64,
        "🎧" * 65,
    ]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)
field_value = any_text | tricky_text | json_values
bodies = st.fixed_dictionaries({}, optional={name: field_value for name in FIELDS}).flatmap(
    lambda d: st.dictionaries(any_text, json_values, max_size=3).map(lambda extra: {**extra, **d})
)
content_types = st.sampled_from(
    [
        None,
        "",
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/vnd.api+json",
        "application/jsonx",
        "json",
    ]
)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
authorizations = st.one_of(
    st.none(),
    st.sampled_from(["valid-acme", "valid-globex", "expired", "wrong-secret"]),
    header_text,
    header_text.map(lambda t: "Bearer " + t),
    header_text.map(lambda t: "Basic " + t),
)


def authorization(kind, tenants):
    """Turn a generated authorization choice into a header value (or None)."""
    if kind == "valid-acme":
        return f"Bearer {tenants.token('acme')}"
    if kind == "valid-globex":
        return f"Bearer {tenants.token('globex')}"
    if kind == "expired":
        return f"Bearer {tenants.token('acme', ttl=-600)}"
    if kind == "wrong-secret":
        return f"Bearer {tenants.token('acme', secret='w' * 64)}"
    return kind


def assert_contract(response, header=None):
    """The answer is 200 with a token, or an error from the table; no secret or token is echoed."""
    text = response.get_data(as_text=True)
    assert response.mimetype == "application/json", text[:200]
    body = json.loads(text)
    if response.status_code == 200:
        assert set(body) >= {"token", "room_name", "participant_identity", "livekit_url"}
    else:
        assert response.status_code in CONTRACT, (response.status_code, body)
        assert body["code"] in CONTRACT[response.status_code], body
        assert isinstance(body["error"], str) and body["error"]
    assert LIVEKIT_SECRET not in text and TENANT_SECRET not in text
    if header and header.startswith("Bearer ") and len(header) > 20:
        assert header[7:] not in text


@pytest.fixture
def fuzz_client(make_app):
    """A client of an app with auth optional, on the healthy emulator."""
    return make_app().test_client()


@pytest.fixture
def required_client(make_app):
    """A client of an app that requires authentication."""
    return make_app(AUTH_REQUIRED="true").test_client()


@pytest.fixture
def small_limit_client(make_app):
    """A client of an app whose body limit is 1024 bytes."""
    return make_app(MAX_CONTENT_LENGTH="1024").test_client()


def still_serving(client):
    """A normal request still gets a token."""
    assert client.post("/livekit/token", json=BODY).status_code == 200


@FUZZ
@given(body=bodies, auth=authorizations)
def test_generated_json_bodies(fuzz_client, livekit, body, auth):
    """Arbitrary JSON objects with any mix of field types and values, any authorization."""
    header = authorization(auth, Tenants())
    headers = {"Authorization": header} if header is not None else {}
    data = json.dumps(body)  # ensure_ascii: lone surrogates travel as \\udXXX escapes
    response = fuzz_client.post(
        "/livekit/token", data=data, headers=headers, content_type="application/json"
    )
    assert_contract(response, header)
    assert response.status_code < 500


@FUZZ
@given(data=st.binary(max_size=400) | json_values.map(json.dumps), content_type=content_types)
def test_generated_raw_bodies_and_content_types(fuzz_client, livekit, data, content_type):
    """Arbitrary bytes or JSON documents under any content type (or none)."""
    headers = {"Content-Type": content_type} if content_type is not None else {}
    response = fuzz_client.post("/livekit/token", data=data, headers=headers)
    assert_contract(response)
    assert response.status_code in (200, 400, 415)


@settings(
    max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(field_value, min_size=2, max_size=4), field=st.sampled_from(FIELDS))
def test_duplicate_keys(fuzz_client, livekit, values, field):
    """A field given several times: the last one counts, like any JSON parser here."""
    others = ", ".join(f'"{name}": "v"' for name in FIELDS if name != field)
    pairs = ", ".join(f'"{field}": {json.dumps(value)}' for value in values)
    response = fuzz_client.post(
        "/livekit/token", data="{" + others + ", " + pairs + "}", content_type="application/json"
    )
    assert_contract(response)
    if response.status_code == 200:
        expected = {**{name: "v" for name in FIELDS}, field: values[-1]}
        claims, raw = verify_token(response.json["token"])
        minted = {
            "room_name": raw["video"]["room"],
            "participant_name": claims.name,
            "participant_identity": claims.identity,
        }
        assert minted == expected


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(size=st.integers(900, 1200))
def test_bodies_around_the_size_limit(small_limit_client, livekit, size):
    """Bodies just under, at and over MAX_CONTENT_LENGTH: 200 or 413, never anything else."""
    client = small_limit_client
    base = len(json.dumps({**BODY, "pad": ""}))
    body = json.dumps({**BODY, "pad": "x" * max(0, size - base)})
    response = client.post("/livekit/token", data=body, content_type="application/json")
    assert_contract(response)
    assert response.status_code == (200 if len(body) <= 1024 else 413)
    still_serving(client)


@FUZZ
@given(header=header_text)
def test_generated_headers_on_required_auth(required_client, livekit, header):
    """With AUTH_REQUIRED, any generated Authorization value is 401 and LiveKit is never called."""
    livekit.reset()
    response = required_client.post("/livekit/token", json=BODY, headers={"Authorization": header})
    assert_contract(response, header)
    assert response.status_code == 401
    assert livekit.call_count() == 0
