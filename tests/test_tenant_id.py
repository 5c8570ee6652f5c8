"""The tenant id is exactly what the authentication service signed: never trimmed or normalised
into someone else's. Through HTTP, on the emulator and on the real livekit-server."""

import json

import pytest


pytestmark = pytest.mark.livekit_server

ROOM = "acme-room"


@pytest.mark.parametrize(
    ("tenant", "problem"),
    [
        (" acme", "has leading or trailing white space"),
        ("acme ", "has leading or trailing white space"),
        ("\tacme", "has leading or trailing white space"),
        ("acme\n", "has leading or trailing white space"),
        ("acme\u00a0", "has leading or trailing white space"),
        ("\u2003acme", "has leading or trailing white space"),
        ("ac\u0000me", "holds a control character"),
        ("ac\u0085me", "holds a control character"),
        ("ac\u007fme", "holds a control character"),
    ],
    ids=[
        "leading-space",
        "trailing-space",
        "tab",
        "newline",
        "no-break-space",
        "em-space",
        "nul",
        "c1-next-line",
        "delete",
    ],
)
def test_lookalike_of_a_tenant_is_refused_and_writes_nothing(
    client, tenants, livekit, tenant, problem
):
    """acme owns a room; a token whose tenant differs from "acme" by white space or a control
    character is 401, names the claim and not its value, and reaches no LiveKit call."""
    assert tenants.ask(client, "acme", room=ROOM).status_code == 200
    livekit.calls.clear()
    response = tenants.ask(client, tenant, room=ROOM)
    assert response.status_code == 401
    assert response.json == {
        "error": f"the bearer token's tenant claim 'sub' {problem}",
        "code": "unauthorized",
    }
    assert livekit.call_count() == 0
    assert json.loads(livekit.get_room(ROOM).metadata) == {"auth_id": "acme"}


@pytest.mark.parametrize("other", ["ACME", "\uff41\uff43\uff4d\uff45"], ids=["upper", "fullwidth"])
def test_case_and_unicode_variants_are_distinct_tenants(client, tenants, livekit, other):
    """No case folding or Unicode normalisation: "ACME" and fullwidth "ａｃｍｅ" are other tenants."""
    assert tenants.ask(client, "acme", room=ROOM).status_code == 200
    refused = tenants.ask(client, other, room=ROOM)
    assert (refused.status_code, refused.json["code"]) == (403, "room_forbidden")
    assert tenants.ask(client, other, room="own-room").status_code == 200
    assert json.loads(livekit.get_room("own-room").metadata) == {"auth_id": other}
    assert tenants.ask(client, "acme", room="own-room").status_code == 403


@pytest.mark.livekit_server("emulator")
@pytest.mark.parametrize("tenant", [" acme", "acme\n", "ac\u0000me", "t" * 257])
def test_tenant_token_command_refuses_an_unusable_tenant(make_app, tenant):
    """`flask tenant-token` will not mint a tenant the service would refuse."""
    result = make_app().test_cli_runner().invoke(args=["tenant-token", "--tenant", tenant])
    assert result.exit_code != 0
    assert "--tenant" in result.output and "the service would refuse it" in result.output
