"""The operator's console (/admin/console) through Flask's test client, on both backends: 404
without ADMIN_TOKEN, the sign-in (a wrong token refused, the form's CSRF, the session cookie),
every tenant with a record or with usage this month, suspend and resume from the page (through
`Tenants`, so the tenant's API answers 403 tenant_suspended and the audit trail keeps them), and a
tenant's console opened read-only (no write button, a forged POST refused)."""

import json
import re
import time

import pytest

from support.console import csrf_of, enter
from support.tokens import ADMIN, ADMIN_TOKEN, BODY, signed_webhook
from tokensvc.context import service_state

LOGIN_CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


@pytest.fixture
def operated(make_app, backend):
    """The service on each backend with ADMIN_TOKEN."""
    return make_app(
        STORAGE_URL=backend, ADMIN_TOKEN=ADMIN_TOKEN, TENANT_WEBHOOKS_ALLOW_PRIVATE="true"
    )


def sign_in(client, token: str = ADMIN_TOKEN):
    """Fill the sign-in form as a browser does (its page first, for the form's CSRF token)."""
    form = client.get("/admin/console/login")
    assert form.status_code == 200
    sent = LOGIN_CSRF.search(form.get_data(as_text=True)).group(1)
    return client.post("/admin/console/login", data={"csrf_token": sent, "admin_token": token})


def set_cookies(response) -> dict:
    """{name: Set-Cookie header} of a response."""
    return {v.split("=", 1)[0]: v for v in response.headers.getlist("Set-Cookie")}


def used_this_month(app, tenant: str, room: str, tenants) -> None:
    """A room of `tenant` that LiveKit says started, with a participant: usage this month."""
    minted = app.test_client().post(
        "/livekit/token",
        json={**BODY, "room_name": room, "participant_identity": "p1"},
        headers=tenants.headers(tenant),
    )
    assert minted.status_code == 200, minted.json
    owner = json.dumps({"auth_id": tenant})
    participant = {
        "sid": f"PA_{room}",
        "identity": "p1",
        "attributes": {"tokensvc.tenant": tenant},
        "joinedAt": str(int(time.time()) - 120),
    }
    for kind, extra in (("room_started", {}), ("participant_joined", {"participant": participant})):
        body, headers = signed_webhook(kind, room, metadata=owner, age=120, **extra)
        assert (
            app.test_client().post("/livekit/webhook", data=body, headers=headers).status_code
            == 200
        )


def test_without_admin_token_there_is_no_operator_console(make_app, backend):
    """ADMIN_TOKEN unset: every route of the operator's console is 404, as the admin API."""
    app = make_app(STORAGE_URL=backend)
    client = app.test_client()
    for method, path in (
        ("GET", "/admin/console/"),
        ("GET", "/admin/console/login"),
        ("POST", "/admin/console/login"),
        ("POST", "/admin/console/tenants/acme/suspend"),
    ):
        response = client.open(path, method=method, data={"admin_token": "x"})
        assert response.status_code == 404, path
        assert "tokensvc_operator" not in response.headers.get("Set-Cookie", "")


def test_the_sign_in_wants_admin_token_and_its_form(operated, tenants):
    """No session: the page sends to the form, an action is 401. A wrong token, a tenant's JWT
    or a sign-in without the form's CSRF token is refused and sets no session; ADMIN_TOKEN
    sets an HttpOnly, Secure, SameSite=Strict cookie on /admin/console/ for 15 minutes at most,
    which a tenant's console does not take, nor does the operator's take a tenant's."""
    client = operated.test_client()
    assert client.get("/admin/console/").headers["Location"] == "/admin/console/login"
    assert client.post("/admin/console/tenants/acme/suspend").status_code == 401
    for wrong in (ADMIN_TOKEN[:-1] + "x", "Bearer " + ADMIN_TOKEN, tenants.token("acme"), ""):
        refused = sign_in(client, wrong)
        assert refused.status_code == 401
        assert "not the operator" in refused.get_data(as_text=True)
        assert "tokensvc_operator" not in set_cookies(refused)
        assert ADMIN_TOKEN not in refused.get_data(as_text=True)
    forged = client.post(
        "/admin/console/login", data={"csrf_token": "0" * 64, "admin_token": ADMIN_TOKEN}
    )
    assert forged.status_code == 403
    assert client.get("/admin/console/").status_code == 303
    signed = sign_in(client)
    assert (signed.status_code, signed.headers["Location"]) == (303, "/admin/console/")
    cookie = set_cookies(signed)["tokensvc_operator"].split("; ")
    assert {"HttpOnly", "Secure", "SameSite=Strict", "Path=/admin/console/"} <= set(cookie)
    assert 0 < int(next(a for a in cookie if a.startswith("Max-Age="))[8:]) <= 900
    page = client.get("/admin/console/")
    assert page.status_code == 200
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    value = cookie[0].split("=", 1)[1]
    tenant_side = operated.test_client()
    tenant_side.set_cookie("tokensvc_console", value, path="/console/")
    assert tenant_side.get("/console/calls").status_code == 401
    other = operated.test_client()
    enter(other, tenants.headers("acme"))
    other.set_cookie(
        "tokensvc_operator",
        other.get_cookie("tokensvc_console", path="/console/").value,
        path="/admin/console/",
    )
    assert other.get("/admin/console/").status_code == 303
    token = csrf_of(page.get_data(as_text=True))
    assert client.post("/admin/console/logout", data={"csrf_token": token}).status_code == 303
    assert client.get("/admin/console/").status_code == 303


def test_every_tenant_with_a_record_or_usage_is_listed(operated, tenants):
    """acme has a record (a plan), globex only usage this month: both listed, with status,
    plan, live rooms and minutes."""
    api = operated.test_client()
    assert api.patch("/admin/tenants/acme", json={"max_rooms": 7}, headers=ADMIN).status_code == 200
    used_this_month(operated, "globex", "g-room", tenants)
    client = operated.test_client()
    sign_in(client)
    html = client.get("/admin/console/").get_data(as_text=True)
    assert re.findall(r'<tr data-tenant="([^"]+)" data-status="([^"]+)"', html) == [
        ("acme", "active"),
        ("globex", "active"),
    ]
    acme = html.split('data-tenant="acme"')[1].split("</tr>")[0]
    globex = html.split('data-tenant="globex"')[1].split("</tr>")[0]
    assert "<dd>7*</dd>" in acme
    assert '<td class="live">0</td>' in acme
    assert '<td class="live">1</td>' in globex
    minutes = re.findall(r"<td>([0-9.]+)</td>", globex)
    assert float(minutes[0]) >= 1.9 and float(minutes[1]) >= 1.9, globex


def test_suspending_from_the_page_suspends_the_tenant_and_is_audited(operated, tenants, livekit):
    """Suspend (asked first, then with a reason): the tenant's API answers 403
    tenant_suspended, its live room is ended, the page shows it suspended with the reason, and
    the audit trail keeps the operator's action; Resume restores the API."""
    api, acme = operated.test_client(), tenants.headers("acme")
    assert tenants.ask(api, "acme", room="live-one").status_code == 200
    assert livekit.get_room("live-one") is not None
    api.patch("/admin/tenants/acme", json={"max_rooms": 9}, headers=ADMIN)
    client = operated.test_client()
    sign_in(client)
    token = csrf_of(client.get("/admin/console/").get_data(as_text=True))
    path = "/admin/console/tenants/acme/suspend"
    asked = client.post(path, data={"csrf_token": token, "reason": "abuse report 7"})
    assert "Suspend &#39;acme&#39;?" in asked.get_data(as_text=True)
    assert api.get("/livekit/rooms", headers=acme).status_code == 200
    assert client.post(path, data={"reason": "x", "confirmed": "yes"}).status_code == 403
    done = client.post(
        path, data={"csrf_token": token, "reason": "abuse report 7", "confirmed": "yes"}
    )
    assert done.status_code == 303
    refused = api.get("/livekit/rooms", headers=acme)
    assert (refused.status_code, refused.json["code"]) == (403, "tenant_suspended")
    assert livekit.get_room("live-one") is None
    shown = client.get(done.headers["Location"]).get_data(as_text=True)
    assert 'data-tenant="acme" data-status="suspended"' in shown
    assert "abuse report 7" in shown and ">Resume<" in shown
    entries = api.get("/admin/audit", query_string={"tenant": "acme"}, headers=ADMIN).json
    newest = entries["entries"][0]
    assert (newest["actor"], newest["subject"], newest["action"], newest["outcome"]) == (
        "operator",
        "admin-console",
        "tenants.suspend",
        "ok",
    )
    assert newest["detail"] == {"reason": "abuse report 7"}
    resumed = client.post(
        "/admin/console/tenants/acme/resume", data={"csrf_token": token, "confirmed": "yes"}
    )
    assert resumed.status_code == 303
    assert api.get("/livekit/rooms", headers=acme).status_code == 200
    bad = client.post(
        "/admin/console/tenants/%20acme/suspend", data={"csrf_token": token, "confirmed": "yes"}
    )
    assert bad.status_code == 400


def test_a_tenants_console_opened_read_only(operated, tenants, livekit):
    """Open read-only: a tenant session with the read scopes only, no longer than the
    operator's, marked as the operator's; its pages draw no write button, and a POST forged
    with its own CSRF token is refused and changes nothing; the tenant's audit trail says the
    operator looked."""
    api, acme = operated.test_client(), tenants.headers("acme")
    assert tenants.ask(api, "acme", room="r1").status_code == 200
    endpoint = api.post(
        "/livekit/webhook-endpoints", json={"url": "http://127.0.0.1:9/x"}, headers=acme
    ).json["id"]
    client = operated.test_client()
    sign_in(client)
    token = csrf_of(client.get("/admin/console/").get_data(as_text=True))
    opened = client.post("/admin/console/tenants/acme/view", data={"csrf_token": token})
    assert (opened.status_code, opened.headers["Location"]) == (303, "/console/")
    cookie = set_cookies(opened)["tokensvc_console"].split("; ")
    assert {"HttpOnly", "Path=/console/"} <= set(cookie)
    assert 0 < int(next(a for a in cookie if a.startswith("Max-Age="))[8:]) <= 900
    pages = {
        path: client.get(path)
        for path in ("/console/calls", "/console/usage", "/console/webhooks", "/console/audit")
    }
    assert {path: page.status_code for path, page in pages.items()} == dict.fromkeys(pages, 200)
    texts = [page.get_data(as_text=True) for page in pages.values()]
    assert 'data-room="r1"' in texts[0] and endpoint in texts[2]
    for text in texts:
        assert "Read-only: the operator opened" in text
        for button in ("End room", "Remove", "Mute", "Add endpoint", "Delete", "Disable", "Retry"):
            assert f">{button}<" not in text
    assert 'data-action="console.view"' in texts[3]
    session_token = csrf_of(texts[0])
    done = {"csrf_token": session_token, "confirmed": "yes"}
    for path, form in {
        "/console/calls/end": {"room_name": "r1"},
        "/console/webhooks/endpoints": {"url": "http://127.0.0.1:9/y"},
        f"/console/webhooks/endpoints/{endpoint}/enabled": {"enabled": "false"},
        f"/console/webhooks/endpoints/{endpoint}/delete": {},
    }.items():
        assert client.post(path, data={**done, **form}).status_code == 403, path
    assert livekit.get_room("r1") is not None
    listed = service_state(operated).tenant_webhooks.endpoints("acme")
    assert [(e.id, e.enabled) for e in listed] == [(endpoint, True)]
    audit = api.get("/livekit/audit", headers=acme).json["entries"]
    assert (audit[0]["action"], audit[0]["actor"]) == ("console.view", "operator")
