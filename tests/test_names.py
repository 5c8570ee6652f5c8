"""Tenant-scoped room names (ROOM_NAMES=per-tenant): an injective, stable, readable encoding of
(tenant, room_name) into LiveKit's name; tenants never contend for a name; through HTTP on the
emulator and the real livekit-server, with real participants for the old-token scenarios."""

import json

import pytest
from hypothesis import given, settings, strategies as st

from support.participants import join, stay
from tokensvc.names import MAX_LIVEKIT_NAME_BYTES, RoomNames, decode, encode

#: The format, version 1: these must never change.
VECTORS = [
    ("acme", "standup", "4:acme:standup"),
    ("a:b", "c", "3:a:b:c"),
    ("a", "b:c", "1:a:b:c"),
    ("ü", "x", "2:ü:x"),
    ("~", "lobby", "1:~:lobby"),
    ("", "lobby", "~:lobby"),
    ("12", ":", "2:12::"),
    ("tenant with spaces", " room ", "18:tenant with spaces: room "),
]

TENANTS = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40).filter(
    lambda text: len(text.encode("utf-8")) <= 256
)
HOLDERS = st.one_of(st.just(""), TENANTS, st.sampled_from(["a", "a:b", "~", "1", ":", "9:"]))
ROOMS = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40),
    st.sampled_from([":", "::", "~:x", "1:a:b", "a", "b:c"]),
)


@pytest.mark.parametrize("holder, room, name", VECTORS)
def test_vectors(holder, room, name):
    """The documented encoding, both ways."""
    assert encode(holder, room) == name
    assert decode(name) == (holder, room)


@settings(max_examples=3000, deadline=None)
@given(HOLDERS, ROOMS, HOLDERS, ROOMS)
def test_encoding_is_injective(holder, room, other_holder, other_room):
    """Two different (holder, room) pairs never share a LiveKit name; each decodes back."""
    assert decode(encode(holder, room)) == (holder, room)
    if (holder, room) != (other_holder, other_room):
        assert encode(holder, room) != encode(other_holder, other_room)


@pytest.mark.parametrize(
    "name", ["standup", "x:acme:room", "04:acme:x", "9:acme:x", "0::x", "4:acme"]
)
def test_other_names_are_not_per_tenant_names(name):
    """Names the encoding never makes do not decode (so a shared-mode room is nobody's)."""
    with pytest.raises(ValueError):
        decode(name)
    assert RoomNames(per_tenant=True).own_name("acme", name) is None


@pytest.fixture
def per_tenant(make_app):
    """The service with ROOM_NAMES=per-tenant."""
    return make_app(ROOM_NAMES="per-tenant").test_client()


@pytest.mark.livekit_server
def test_two_tenants_get_rooms_of_their_own(per_tenant, tenants, livekit):
    """Both tenants ask for "standup": both 200, two LiveKit rooms owned by each; one LiveKit
    call for a new name, none for an existing one; neither list shows the other's room."""
    acme = tenants.ask(per_tenant, "acme", room="standup")
    globex = tenants.ask(per_tenant, "globex", room="standup")
    assert (acme.status_code, globex.status_code) == (200, 200)
    assert acme.json["room_name"] == globex.json["room_name"] == "standup"
    assert (acme.json["livekit_room_name"], globex.json["livekit_room_name"]) == (
        "4:acme:standup",
        "6:globex:standup",
    )
    for tenant, name in (("acme", "4:acme:standup"), ("globex", "6:globex:standup")):
        assert json.loads(livekit.get_room(name).metadata) == {"auth_id": tenant}
    assert livekit.calls == {"CreateRoom": 2}
    livekit.calls.clear()
    assert tenants.ask(per_tenant, "acme", room="standup").status_code == 200
    assert livekit.calls == {}
    listed = per_tenant.get("/livekit/rooms", headers=tenants.headers("acme")).json["rooms"]
    assert [(room["name"], room["livekit_room_name"]) for room in listed] == [
        ("standup", "4:acme:standup")
    ]
    detail = per_tenant.get("/livekit/rooms/standup", headers=tenants.headers("globex")).json
    assert (detail["name"], detail["livekit_room_name"]) == ("standup", "6:globex:standup")


def test_the_256_byte_boundary(per_tenant, tenants, livekit):
    """acme's encoding takes 7 bytes: a 249-byte name fits, a 250-byte one is 400 naming the
    limit, before anything is written."""
    fits = "x" * (MAX_LIVEKIT_NAME_BYTES - len("4:acme:"))
    assert tenants.ask(per_tenant, "acme", room=fits).status_code == 200
    livekit.calls.clear()
    refused = tenants.ask(per_tenant, "acme", room=fits + "x")
    assert (refused.status_code, refused.json["code"]) == (400, "invalid_request")
    assert "256 bytes" in refused.json["fields"]["room_name"][0]
    assert livekit.calls == {}


def test_anonymous_tokens_have_a_namespace_of_their_own(make_app, tenants, livekit):
    """AUTH_REQUIRED=false: an anonymous "standup" is `~:standup`, never a tenant's."""
    client = make_app(ROOM_NAMES="per-tenant", AUTH_REQUIRED="false").test_client()
    anonymous = tenants.ask(client, None, room="standup")
    assert anonymous.json["livekit_room_name"] == "~:standup"
    assert tenants.ask(client, "acme", room="standup").json["livekit_room_name"] == "4:acme:standup"


@pytest.mark.slow
@pytest.mark.livekit_server("livekit-server")
@pytest.mark.usefixtures("media_network")
def test_old_and_refreshed_tokens_land_only_in_their_tenants_room(make_app, tenants, livekit):
    """acme joins (keeping its refreshed token) and leaves; the room is ended; globex makes its
    own "standup". acme's join token and refreshed token each land in acme's room only."""
    client = make_app(
        ROOM_NAMES="per-tenant", ROOM_EMPTY_TIMEOUT="2", ROOM_DEPARTURE_TIMEOUT="1"
    ).test_client()
    acme = tenants.ask(client, "acme", room="standup").json
    name, metadata, refreshed = stay(acme["livekit_url"], acme["token"], seconds=1)
    assert name == "4:acme:standup" and refreshed
    livekit.close_room("4:acme:standup")
    globex = tenants.ask(client, "globex", identity="gina", room="standup").json
    assert globex["livekit_room_name"] == "6:globex:standup"
    for token in (acme["token"], refreshed[-1]):
        name, metadata = join(acme["livekit_url"], token)
        assert (name, json.loads(metadata)["auth_id"]) == ("4:acme:standup", "acme")
    name, metadata = join(globex["livekit_url"], globex["token"])
    assert (name, json.loads(metadata)["auth_id"]) == ("6:globex:standup", "globex")
