"""Rate limits: per tenant, per tenant's new rooms, per anonymous address; in memory and in a
real Redis shared by two gunicorn workers; a Redis that goes down fails closed (or open)."""

import json

import pytest

from support.tokens import BODY, assert_no_secrets
from tokensvc import ConfigError


def assert_limited(response):
    """A 429 in the service's error shape, with a Retry-After within the one-minute window."""
    assert response.status_code == 429
    assert response.json["code"] == "rate_limited" and set(response.json) == {"error", "code"}
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_per_tenant_limit_counts_each_tenant_apart(make_app, tenants, livekit):
    """3/minute: three tokens for acme, then 429 with nothing asked of LiveKit; globex still
    has its own three."""
    client = make_app(RATE_LIMIT_PER_TENANT="3/minute").test_client()
    assert [tenants.ask(client).status_code for _ in range(3)] == [200] * 3
    calls = livekit.call_count()
    assert_limited(tenants.ask(client))
    assert livekit.call_count() == calls
    assert [tenants.ask(client, "globex", "g").status_code for _ in range(3)] == [200] * 3
    assert_limited(tenants.ask(client, "globex", "g"))


def test_per_ip_limit_applies_to_anonymous_requests_only(make_app, tenants):
    """2/minute per address: two anonymous tokens, then 429; a tenant from the same address is
    not counted against it."""
    client = make_app(RATE_LIMIT_PER_IP="2/minute").test_client()
    assert [tenants.ask(client, None).status_code for _ in range(2)] == [200, 200]
    assert_limited(tenants.ask(client, None))
    assert tenants.ask(client, room="acme-room").status_code == 200


def test_room_creation_limit_counts_only_new_rooms(make_app, tenants, livekit):
    """3 new rooms a minute: acme creates three, the fourth is 429 and never created; tokens
    for acme's existing rooms still come; globex creates its own."""
    client = make_app(RATE_LIMIT_ROOM_CREATES_PER_TENANT="3/minute").test_client()
    assert [tenants.ask(client, room=f"a{n}").status_code for n in range(3)] == [200] * 3
    assert_limited(tenants.ask(client, room="a3"))
    assert livekit.get_room("a3") is None and livekit.call_count("CreateRoom") == 3
    assert [tenants.ask(client, room="a0").status_code for _ in range(5)] == [200] * 5
    assert tenants.ask(client, "globex", "g0").status_code == 200


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "RATE_LIMIT_PER_TENANT",
            "lots",
            "RATE_LIMIT_PER_TENANT: expected a rate such as 60/minute",
        ),
        ("RATE_LIMIT_PER_IP", "5/fortnight", "RATE_LIMIT_PER_IP: expected a rate"),
        (
            "RATE_LIMIT_STORAGE_URL",
            "http://cache:6379",
            "RATE_LIMIT_STORAGE_URL: expected memory://",
        ),
    ],
)
def test_unusable_rate_settings_stop_start_up(make_app, key, value, message):
    """A rate flask-limiter cannot parse, or a storage that is not memory or Redis: ConfigError."""
    with pytest.raises(ConfigError, match=message):
        make_app(**{"RATE_LIMIT_PER_TENANT": "1/second", key: value})


@pytest.mark.slow
def test_redis_limit_is_exact_across_two_workers(make_gunicorn, tenants, redis_server):
    """With Redis, 10/minute per tenant holds exactly across 2 workers: 10 tokens, then only
    429s, for requests each on a new connection (so both workers serve them)."""
    server = make_gunicorn(
        RATE_LIMIT_PER_TENANT="10/minute", RATE_LIMIT_STORAGE_URL=redis_server.url
    )
    headers = tenants.headers("acme")
    statuses = [server.post("/livekit/token", BODY, headers)[0] for _ in range(30)]
    assert statuses == [200] * 10 + [429] * 20


@pytest.mark.slow
def test_room_creation_flood_stops_at_the_limit(make_gunicorn, tenants, livekit, redis_server):
    """acme asks for 20 new rooms with a limit of 5 a minute: 5 are created, 15 refused and
    never written; globex, asking meanwhile, creates all of its 3."""
    server = make_gunicorn(
        RATE_LIMIT_ROOM_CREATES_PER_TENANT="5/minute", RATE_LIMIT_STORAGE_URL=redis_server.url
    )
    acme, globex = tenants.headers("acme"), tenants.headers("globex")
    statuses = []
    for n in range(20):
        statuses.append(server.post("/livekit/token", {**BODY, "room_name": f"a{n}"}, acme)[0])
        if n % 7 == 0:
            assert server.post("/livekit/token", {**BODY, "room_name": f"g{n}"}, globex)[0] == 200
    assert statuses == [200] * 5 + [429] * 15
    created = [n for n in range(20) if livekit.get_room(f"a{n}") is not None]
    assert created == [0, 1, 2, 3, 4]
    assert livekit.call_count("CreateRoom") == 5 + 3


@pytest.mark.slow
@pytest.mark.parametrize("fail_open", [False, True])
def test_redis_down_fails_closed_or_open(make_gunicorn, tenants, livekit, redis_server, fail_open):
    """Redis stopped mid-run: by default 503 rate_limit_unavailable and nothing written; with
    RATE_LIMIT_FAIL_OPEN=true the token is issued. Each failure is logged, naming the host."""
    server = make_gunicorn(
        RATE_LIMIT_PER_TENANT="100/minute",
        RATE_LIMIT_ROOM_CREATES_PER_TENANT="100/minute",
        RATE_LIMIT_STORAGE_URL=redis_server.url,
        RATE_LIMIT_FAIL_OPEN=str(fail_open).lower(),
    )
    headers = tenants.headers("acme")
    assert server.post("/livekit/token", {**BODY, "room_name": "before"}, headers)[0] == 200
    redis_server.stop()
    status, body, _ = server.post("/livekit/token", {**BODY, "room_name": "after"}, headers)
    output = server.close()
    assert_no_secrets(output)
    if fail_open:
        assert status == 200 and livekit.get_room("after") is not None
    else:
        assert (status, body["code"]) == (503, "rate_limit_unavailable")
        assert livekit.get_room("after") is None
    warnings = [
        json.loads(line)
        for line in output.splitlines()
        if line.startswith("{") and '"warning"' in line
    ]
    expected = "open: allowing" if fail_open else "closed: refusing"
    assert any(
        "rate limit storage at 127.0.0.1 failed" in line["message"] and expected in line["message"]
        for line in warnings
    ), warnings
