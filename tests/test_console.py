"""The tenant's console through Flask's test client, on both backends: the way in (a one-use
ticket from POST /livekit/console-sessions), the session cookie, CSRF, scopes, framing, and
nothing of another tenant. The real browser and the real LiveKit: tests/test_console_browser.py."""

import csv
import io
import re
from urllib.parse import urlsplit

import pytest

from support.console import console_url, csrf_of, enter
from support.tokens import ADMIN, ADMIN_TOKEN
from tokensvc.context import service_state

FRAMED_BY = "https://app.example"


@pytest.fixture
def console_app(make_app, backend):
    """The service on each backend, tenants' webhooks allowed to reach loopback."""
    return make_app(STORAGE_URL=backend, TENANT_WEBHOOKS_ALLOW_PRIVATE="true")


def cookie_header(response) -> str:
    """The console's Set-Cookie header."""
    found = [v for v in response.headers.getlist("Set-Cookie") if v.startswith("tokensvc_console=")]
    assert len(found) == 1, response.headers
    return found[0]


def test_a_ticket_opens_one_session_once(console_app, tenants):
    """The URL is the service's own; the ticket sets an HttpOnly, Secure, SameSite=Lax cookie
    on the console's path and sends the browser on without the ticket; used again, a page
    refuses it and sets nothing."""
    client = console_app.test_client()
    url = urlsplit(console_url(client, tenants.headers("acme")))
    assert (url.scheme, url.netloc, url.path) == ("http", "localhost", "/console/enter")
    opened = client.get(f"{url.path}?{url.query}")
    assert opened.status_code == 303
    assert opened.headers["Location"] == "/console/"
    cookie = cookie_header(opened)
    for attribute in ("HttpOnly", "Secure", "SameSite=Lax", "Path=/console/"):
        assert attribute in cookie.split("; "), cookie
    assert client.get("/console/").headers["Location"] == "/console/calls"
    page = client.get("/console/calls")
    assert page.status_code == 200
    assert "acme" in page.get_data(as_text=True)
    again = console_app.test_client().get(f"{url.path}?{url.query}")
    assert again.status_code == 403
    assert "used already, has expired or is not valid" in again.get_data(as_text=True)
    assert "Set-Cookie" not in again.headers


def test_a_ticket_past_60_seconds_on_the_storage_clock_is_refused(console_app, tenants):
    """A ticket opened 61 s after it was made (the storage's clock moved) is refused."""
    client = console_app.test_client()
    url = urlsplit(console_url(client, tenants.headers("acme")))
    service_state(console_app).console_tickets.clock.advance(61_000)
    response = client.get(f"{url.path}?{url.query}")
    assert response.status_code == 403
    assert client.get("/console/calls").status_code == 401


@pytest.mark.parametrize("ticket", ["", "forged", "A" * 43, "x" * 500])
def test_a_forged_ticket_is_refused(console_app, tenants, ticket):
    """A ticket the service never made gets the refusal page; no cookie is set."""
    client = console_app.test_client()
    console_url(client, tenants.headers("acme"))  # a real one exists meanwhile
    response = client.get("/console/enter", query_string={"ticket": ticket})
    assert response.status_code == 403
    assert "text/html" in response.content_type
    assert "Set-Cookie" not in response.headers


def test_a_session_ends_no_later_than_the_jwt_or_the_setting(make_app, backend, tenants):
    """Max-Age is at most the JWT's remaining life, and at most CONSOLE_SESSION_TTL."""
    app = make_app(STORAGE_URL=backend, CONSOLE_SESSION_TTL="600")
    short = cookie_header(enter(app.test_client(), tenants.headers("acme", ttl=120)))
    assert 110 <= int(short.split("Max-Age=")[1].split(";")[0]) <= 120
    long = cookie_header(enter(app.test_client(), tenants.headers("acme", ttl=7200)))
    assert 590 <= int(long.split("Max-Age=")[1].split(";")[0]) <= 600


@pytest.mark.parametrize(
    "claims", [{"scope": "rooms:read usage:read"}, {"roles": ["viewer"]}, {"scope": ""}]
)
def test_opening_the_console_needs_its_scope(console_app, tenants, claims):
    """Without console:open (an explicit scope list without it, an end user's roles-only JWT,
    an empty scope claim): 403 scope_forbidden naming it."""
    response = console_app.test_client().post(
        "/livekit/console-sessions", headers=tenants.headers("acme", **claims)
    )
    assert response.status_code == 403
    assert response.json["code"] == "scope_forbidden"
    assert "console:open" in response.json["error"]


def test_no_session_no_page(console_app):
    """Without a session cookie (or with a forged one) every page is a 401 page."""
    client = console_app.test_client()
    assert client.get("/console/calls").status_code == 401
    client.set_cookie("tokensvc_console", "forged.value", path="/console/")
    response = client.get("/console/webhooks")
    assert response.status_code == 401
    assert "No console session" in response.get_data(as_text=True)


def test_a_post_without_the_csrf_token_is_refused(console_app, tenants):
    """Adding an endpoint without the CSRF token, or with another session's, is refused and
    adds nothing; with it, it adds one and shows its secret once."""
    client, other = console_app.test_client(), console_app.test_client()
    enter(client, tenants.headers("acme"))
    enter(other, tenants.headers("acme"))
    form = {"url": "http://127.0.0.1:9/hook", "description": "d"}
    assert client.post("/console/webhooks/endpoints", data=form).status_code == 403
    foreign = csrf_of(other.get("/console/webhooks").get_data(as_text=True))
    refused = client.post("/console/webhooks/endpoints", data={**form, "csrf_token": foreign})
    assert refused.status_code == 403
    assert service_state(console_app).tenant_webhooks.endpoints("acme") == []
    token = csrf_of(client.get("/console/webhooks").get_data(as_text=True))
    added = client.post("/console/webhooks/endpoints", data={**form, "csrf_token": token})
    assert added.status_code == 201
    assert "whsec_" in added.get_data(as_text=True)
    assert "whsec_" not in client.get("/console/webhooks").get_data(as_text=True)


def test_a_viewer_only_session_sees_no_button_and_its_forged_posts_are_refused(
    console_app, tenants, livekit
):
    """A session of `console:open rooms:read webhooks:read`: its pages offer no change, and
    each change posted anyway (with its valid CSRF token) is 403 scope_forbidden, nothing
    changed."""
    backend = tenants.headers("acme")
    api = console_app.test_client()
    minted = api.post(
        "/livekit/token",
        json={"room_name": "r1", "participant_name": "A", "participant_identity": "a"},
        headers=backend,
    )
    assert minted.status_code == 200
    endpoint = api.post(
        "/livekit/webhook-endpoints", json={"url": "http://127.0.0.1:9/x"}, headers=backend
    ).json["id"]
    client = console_app.test_client()
    enter(client, tenants.headers("acme", scope="console:open rooms:read webhooks:read"))
    calls = client.get("/console/calls").get_data(as_text=True)
    hooks = client.get("/console/webhooks").get_data(as_text=True)
    assert 'data-room="r1"' in calls
    assert endpoint in hooks
    for page in (calls, hooks):
        for button in ("End room", "Remove", "Set role", "Mute", "Add endpoint", "Delete"):
            assert f">{button}<" not in page
    assert "Usage" not in client.get("/console/calls").get_data(as_text=True).split("</nav>")[0]
    assert client.get("/console/usage").status_code == 403
    token = csrf_of(calls)
    forged = {
        "/console/calls/end": {"room_name": "r1"},
        "/console/calls/remove": {"room_name": "r1", "participant_identity": "a"},
        "/console/webhooks/endpoints": {"url": "http://127.0.0.1:9/y"},
        f"/console/webhooks/endpoints/{endpoint}/delete": {},
        f"/console/webhooks/endpoints/{endpoint}/rotate": {},
    }
    for path, form in forged.items():
        response = client.post(path, data={**form, "csrf_token": token, "confirmed": "yes"})
        assert response.status_code == 403, path
        assert "scope_forbidden" in response.get_data(as_text=True), path
    assert livekit.get_room("r1") is not None
    assert [e.id for e in service_state(console_app).tenant_webhooks.endpoints("acme")] == [
        endpoint
    ]


def test_nobody_may_frame_it_by_default(console_app, tenants):
    """frame-ancestors 'none' (and X-Frame-Options DENY) on every console answer, error pages
    included; scripts only from its own origin."""
    client = console_app.test_client()
    for response in (client.get("/console/calls"), enter(client, tenants.headers("acme"))):
        policy = response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy
        assert "script-src 'self'" in policy
        assert response.headers["X-Frame-Options"] == "DENY"


def test_only_the_listed_origins_may_frame_it(make_app, backend, tenants):
    """With CONSOLE_FRAME_ANCESTORS only those origins may frame it (an unlisted origin's frame
    is refused by the browser on this header), and the cookie is SameSite=None; Secure;
    Partitioned, so it reaches the framed pages."""
    app = make_app(STORAGE_URL=backend, CONSOLE_FRAME_ANCESTORS=FRAMED_BY, DEV_MODE="true")
    client = app.test_client()
    opened = enter(client, tenants.headers("acme"))
    policy = opened.headers["Content-Security-Policy"]
    assert f"frame-ancestors {FRAMED_BY};" in policy + ";"
    assert "https://evil.example" not in policy
    assert "X-Frame-Options" not in opened.headers
    cookie = cookie_header(opened).split("; ")
    assert {"SameSite=None", "Secure", "Partitioned", "HttpOnly"} <= set(cookie)


def test_a_refused_setting(make_app):
    """CONSOLE_FRAME_ANCESTORS=* is refused at start-up."""
    with pytest.raises(Exception, match="CONSOLE_FRAME_ANCESTORS"):
        make_app(CONSOLE_FRAME_ANCESTORS="*")


def test_another_tenants_session_sees_none_of_it(console_app, tenants, livekit):
    """acme's room, endpoint and delivery appear on none of globex's pages, fragments or
    downloads; globex's actions on acme's ids are refused as for the API (404) and change
    nothing."""
    acme = tenants.headers("acme")
    api = console_app.test_client()
    api.post(
        "/livekit/token",
        json={"room_name": "acme-room", "participant_name": "A", "participant_identity": "a"},
        headers=acme,
    )
    endpoint = api.post(
        "/livekit/webhook-endpoints", json={"url": "http://127.0.0.1:9/acme"}, headers=acme
    ).json["id"]
    delivery = api.post(f"/livekit/webhook-endpoints/{endpoint}/test", headers=acme).json[
        "delivery_id"
    ]
    client = console_app.test_client()
    enter(client, tenants.headers("globex"))
    pages = [
        client.get(path).get_data(as_text=True)
        for path in (
            "/console/calls",
            "/console/calls/live",
            "/console/usage",
            "/console/usage.csv",
            "/console/webhooks",
            f"/console/webhooks?endpoint_id={endpoint}",
        )
    ]
    for page in pages:
        for secret in ("acme-room", endpoint, delivery, "127.0.0.1:9/acme"):
            assert secret not in page
    token = csrf_of(pages[0])
    done = {"csrf_token": token, "confirmed": "yes"}
    assert (
        client.post("/console/calls/end", data={**done, "room_name": "acme-room"}).status_code
        == 404
    )
    assert (
        client.post(f"/console/webhooks/endpoints/{endpoint}/delete", data=done).status_code == 404
    )
    assert (
        client.post(f"/console/webhooks/deliveries/{delivery}/retry", data=done).status_code == 404
    )
    assert livekit.get_room("acme-room") is not None
    assert service_state(console_app).tenant_webhooks.endpoints("acme") != []


@pytest.mark.parametrize("room_names", ["shared", "per-tenant"])
def test_a_change_asks_first_and_ending_a_room_ends_it(
    make_app, backend, tenants, livekit, room_names
):
    """The calls page shows the tenant's own room name; without confirmation the end-room form
    gets a page that asks (the room lives on); confirmed, the room is ended in LiveKit and the
    page says so."""
    console_app = make_app(STORAGE_URL=backend, ROOM_NAMES=room_names)
    backend = tenants.headers("acme")
    api = console_app.test_client()
    minted = api.post(
        "/livekit/token",
        json={"room_name": "r1", "participant_name": "A", "participant_identity": "a"},
        headers=backend,
    ).json
    livekit_name = minted.get("livekit_room_name", "r1")
    assert (livekit_name != "r1") == (room_names == "per-tenant")
    client = console_app.test_client()
    enter(client, backend)
    page = client.get("/console/calls").get_data(as_text=True)
    assert 'data-room="r1"' in page
    token = csrf_of(page)
    asked = client.post("/console/calls/end", data={"csrf_token": token, "room_name": "r1"})
    assert asked.status_code == 200
    assert "End the room &#39;r1&#39; for everyone" in asked.get_data(as_text=True)
    assert livekit.get_room(livekit_name) is not None
    ended = client.post(
        "/console/calls/end", data={"csrf_token": token, "room_name": "r1", "confirmed": "yes"}
    )
    assert ended.status_code == 303
    assert livekit.get_room(livekit_name) is None
    assert "The room was ended." in client.get(ended.headers["Location"]).get_data(as_text=True)


def test_the_csv_is_what_the_usage_route_returns(console_app, tenants):
    """For the same period the CSV's rows and totals are GET /livekit/usage's."""
    backend = tenants.headers("acme")
    period = {"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"}
    expected = console_app.test_client().get("/livekit/usage", query_string=period, headers=backend)
    client = console_app.test_client()
    enter(client, backend)
    response = client.get("/console/usage.csv", query_string=period)
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    report = expected.json
    assert rows[-1]["room_name"] == ""
    assert float(rows[-1]["participant_seconds"]) == report["participant_seconds"]
    assert float(rows[-1]["room_seconds"]) == report["room_seconds"]
    assert {r["from"] for r in rows} == {report["from"]}
    assert [r["room_name"] for r in rows[:-1]] == [r["room_name"] for r in report["rooms"]]


def test_the_usage_page_shows_the_quotas_the_tenant_has(make_app, backend, tenants):
    """The quotas table: the tenant record's limit over the setting's, lowered by the session's
    JWT's claim, and the rooms in use as the quota counts them (a minted room is reserved)."""
    app = make_app(STORAGE_URL=backend, QUOTA_MAX_ROOMS="5", ADMIN_TOKEN=ADMIN_TOKEN)
    api = app.test_client()
    patched = api.patch("/admin/tenants/acme", json={"max_rooms": 3}, headers=ADMIN)
    assert patched.status_code == 200, patched.json
    assert tenants.ask(api, "acme", room="r1").status_code == 200
    client = app.test_client()
    enter(client, tenants.headers("acme"))
    page = client.get("/console/usage")
    assert page.status_code == 200
    rows = quota_rows(page.get_data(as_text=True))
    assert rows["Live rooms at once"] == ("1", "3")
    lowered = app.test_client()
    enter(lowered, tenants.headers("acme", max_rooms=2))
    assert quota_rows(lowered.get("/console/usage").get_data(as_text=True))[
        "Live rooms at once"
    ] == ("1", "2")


def quota_rows(page: str) -> dict:
    """{quota: (in use, limit)} from the usage page's quotas table."""
    table = page.split('id="quotas"')[1].split("</table>")[0]
    return {
        name: (use, limit)
        for name, use, limit in re.findall(
            r'<th scope="row">([^<]+)</th><td>([^<]*)</td><td>([^<]*)</td>', table
        )
    }


def test_the_audit_page_lists_the_tenants_own_entries_filtered(make_app, backend, tenants):
    """The audit page lists acme's own entries (its actions and the operator's change of its
    record), newest first, none of globex's, as GET /livekit/audit does; filtered by action and
    by outcome; a session without audit:read has no Audit page."""
    app = make_app(
        STORAGE_URL=backend, ADMIN_TOKEN=ADMIN_TOKEN, TENANT_WEBHOOKS_ALLOW_PRIVATE="true"
    )
    api, acme, globex = app.test_client(), tenants.headers("acme"), tenants.headers("globex")
    mine = api.post(
        "/livekit/webhook-endpoints", json={"url": "http://127.0.0.1:9/a"}, headers=acme
    )
    theirs = api.post(
        "/livekit/webhook-endpoints", json={"url": "http://127.0.0.1:9/g"}, headers=globex
    )
    assert api.delete("/livekit/webhook-endpoints/we_unknown", headers=acme).status_code == 404
    assert api.patch("/admin/tenants/acme", json={"max_rooms": 4}, headers=ADMIN).status_code == 200
    expected = [entry["id"] for entry in api.get("/livekit/audit", headers=acme).json["entries"]]
    assert len(expected) == 3
    client = app.test_client()
    enter(client, acme)
    page = client.get("/console/audit")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'href="/console/audit"' in html.split("</nav>")[0]
    assert re.findall(r'data-entry="([^"]+)"', html) == expected
    assert mine.json["id"] in html
    assert theirs.json["id"] not in html
    assert "the operator" in html and "max_rooms: 4" in html
    created = client.get("/console/audit", query_string={"action": "webhook_endpoints.create"})
    assert re.findall(r'data-action="([^"]+)"', created.get_data(as_text=True)) == [
        "webhook_endpoints.create"
    ]
    failed = client.get("/console/audit", query_string={"outcome": "not-ok"}).get_data(as_text=True)
    assert re.findall(r'data-outcome="([^"]+)"', failed) == ["webhook_endpoint_not_found"]
    ok = client.get("/console/audit", query_string={"outcome": "ok"}).get_data(as_text=True)
    assert set(re.findall(r'data-outcome="([^"]+)"', ok)) == {"ok"}
    blind = app.test_client()
    enter(blind, tenants.headers("acme", scope="console:open rooms:read"))
    assert "/console/audit" not in blind.get("/console/calls").get_data(as_text=True)
    refused = blind.get("/console/audit")
    assert refused.status_code == 403
    assert "audit:read" in refused.get_data(as_text=True)


def test_disabling_and_enabling_an_endpoint_from_the_page(console_app, tenants):
    """Disable asks first; confirmed, the endpoint's status is disabled (as the API lists it,
    with its reason and time) and the page offers Enable; enabled again, it is enabled.
    Another tenant's endpoint is a 404 and stays as it was."""
    acme = tenants.headers("acme")
    api = console_app.test_client()
    endpoint = api.post(
        "/livekit/webhook-endpoints", json={"url": "http://127.0.0.1:9/x"}, headers=acme
    ).json["id"]

    def status() -> dict:
        listed = api.get("/livekit/webhook-endpoints", headers=acme).json["endpoints"]
        return {key: listed[0][key] for key in ("status", "disabled_reason", "disabled_at")}

    client = console_app.test_client()
    enter(client, acme)
    page = client.get("/console/webhooks").get_data(as_text=True)
    assert f'data-endpoint="{endpoint}" data-status="enabled"' in page
    assert ">Disable<" in page
    token = csrf_of(page)
    path = f"/console/webhooks/endpoints/{endpoint}/enabled"
    asked = client.post(path, data={"csrf_token": token, "enabled": "false"})
    assert asked.status_code == 200
    assert "Its deliveries wait until it is enabled" in asked.get_data(as_text=True)
    assert status()["status"] == "enabled"
    done = client.post(path, data={"csrf_token": token, "enabled": "false", "confirmed": "yes"})
    assert done.status_code == 303
    now = status()
    assert now["status"] == "disabled"
    assert now["disabled_reason"] and now["disabled_at"]
    shown = client.get(done.headers["Location"]).get_data(as_text=True)
    assert f'data-endpoint="{endpoint}" data-status="disabled"' in shown
    assert "The endpoint was disabled" in shown
    assert ">Enable<" in shown and now["disabled_reason"] in shown
    assert client.post(path, data={"csrf_token": token, "enabled": "maybe"}).status_code == 400
    enabled = client.post(path, data={"csrf_token": token, "enabled": "true", "confirmed": "yes"})
    assert enabled.status_code == 303
    assert status()["status"] == "enabled"
    other = console_app.test_client()
    enter(other, tenants.headers("globex"))
    foreign = other.post(
        path,
        data={
            "csrf_token": csrf_of(other.get("/console/webhooks").get_data(as_text=True)),
            "enabled": "false",
            "confirmed": "yes",
        },
    )
    assert foreign.status_code == 404
    assert status()["status"] == "enabled"


def test_a_suspended_tenants_open_console_says_so_and_refuses_everything(
    make_app, backend, tenants
):
    """A session opened before the operator suspends its tenant (on another instance of the
    same storage): every page, the polled fragment and the poll say so (403 tenant_suspended,
    the operator's reason; a polled answer asks the page to reload), every action is refused
    and changes nothing; signing out still works. Resumed, the same session works again."""
    one, two = (
        make_app(
            STORAGE_URL=backend,
            ADMIN_TOKEN=ADMIN_TOKEN,
            TENANT_RECORD_CACHE="0",
            TENANT_WEBHOOKS_ALLOW_PRIVATE="true",
        )
        for _ in range(2)
    )
    client = one.test_client()
    enter(client, tenants.headers("acme"))
    token = csrf_of(client.get("/console/webhooks").get_data(as_text=True))
    assert client.get("/console/alive", headers={"HX-Request": "true"}).status_code == 204
    suspended = two.test_client().post(
        "/admin/tenants/acme/suspend", json={"reason": "invoice 42 unpaid"}, headers=ADMIN
    )
    assert suspended.status_code == 200
    for path in ("/console/", "/console/calls", "/console/usage", "/console/webhooks"):
        page = client.get(path)
        assert page.status_code == 403, path
        html = page.get_data(as_text=True)
        assert "This tenant is suspended" in html and "tenant_suspended" in html
        assert "invoice 42 unpaid" in html
        assert 'href="/console/webhooks"' not in html  # no navigation while suspended
    for path in ("/console/calls/live", "/console/alive"):
        polled = client.get(path, headers={"HX-Request": "true"})
        assert (polled.status_code, polled.headers.get("HX-Refresh")) == (403, "true"), path
    added = client.post(
        "/console/webhooks/endpoints",
        data={"csrf_token": token, "url": "http://127.0.0.1:9/x", "confirmed": "yes"},
    )
    assert added.status_code == 403
    assert "tenant_suspended" in added.get_data(as_text=True)
    assert service_state(one).tenant_webhooks.endpoints("acme") == []
    assert two.test_client().post("/admin/tenants/acme/resume", headers=ADMIN).status_code == 200
    assert client.get("/console/webhooks").status_code == 200
    assert client.post("/console/leave", data={"csrf_token": token}).status_code == 200


def test_the_consoles_actions_are_audited_as_the_apis(make_app, backend, tenants, livekit):
    """A change made from the console is an entry of the tenant's trail, as the same change
    through the API (its action, the JWT's subject, the target, ok), marked `via: console`; a
    confirmation page or a refused action keeps none; a failed one keeps its error code."""
    app = make_app(STORAGE_URL=backend, AUTH_TENANT_CLAIM="org")
    api, acme = app.test_client(), tenants.headers("ops-backend", org="acme")
    body = {"room_name": "r1", "participant_name": "A", "participant_identity": "a"}
    assert api.post("/livekit/token", json=body, headers=acme).status_code == 200
    client = app.test_client()
    enter(client, acme)
    token = csrf_of(client.get("/console/calls").get_data(as_text=True))
    assert (
        client.post("/console/calls/end", data={"csrf_token": token, "room_name": "r1"}).status_code
        == 200
    )
    assert (
        client.post("/console/calls/end", data={"room_name": "r1", "confirmed": "yes"}).status_code
        == 403
    )
    assert service_state(app).tenants.audit("acme") == []
    ended = client.post(
        "/console/calls/end", data={"csrf_token": token, "room_name": "r1", "confirmed": "yes"}
    )
    assert ended.status_code == 303
    gone = client.post(
        "/console/webhooks/endpoints/ep_none/delete", data={"csrf_token": token, "confirmed": "yes"}
    )
    assert gone.status_code == 404
    entries = api.get("/livekit/audit", headers=acme).json["entries"]
    assert [
        (e["action"], e["actor"], e["subject"], e["target"], e["outcome"], e["detail"])
        for e in entries
    ] == [
        (
            "webhook_endpoints.delete",
            "tenant",
            "ops-backend",
            "ep_none",
            "webhook_endpoint_not_found",
            {"via": "console"},
        ),
        ("rooms.end", "tenant", "ops-backend", "r1", "ok", {"via": "console"}),
    ]
