"""A tenant's own rooms: list, inspect and end them; remove, mute and re-permission their
participants. Every route needs a tenant's bearer token, in every mode."""

from ..auth import check_grants, check_target
from ..context import service_state
from ..roles import permission
from ..schemas import (
    MuteSchema,
    ParticipantInfoSchema,
    ParticipantSchema,
    PermissionsSchema,
    RoomDetailSchema,
    RoomSummarySchema,
    TrackSchema,
)
from .inputs import check_role, load_body, load_room_name, require_tenant


def list_rooms():
    """The tenant's live rooms (one ListRooms for the names the record gives it)."""
    state, tenant = service_state(), require_tenant()
    rooms = state.moderator.list_rooms(tenant)
    return {"rooms": [own_room(room_summary.dump(room), tenant) for room in rooms]}


def get_room(room_name):
    """One of the tenant's rooms and who is in it."""
    tenant, room_name = require_tenant(), load_room_name(room_name)
    room, participants = service_state().moderator.room(tenant, livekit_name(tenant, room_name))
    detail = room_detail.dump(
        {**room_summary.dump(room), "metadata": room.metadata, "participants": participants}
    )
    return own_room(detail, tenant)


def end_room(room_name):
    """End one of the tenant's rooms for everyone; the name stays the tenant's."""
    tenant, room_name = require_tenant(), load_room_name(room_name)
    service_state().moderator.end_room(tenant, livekit_name(tenant, room_name))
    return {"status": "ended", "room_name": room_name}


def remove_participant():
    """Remove a participant from one of the tenant's rooms, durably."""
    tenant = require_tenant()
    fields = load_body(participant_schema)
    check_target(fields["participant_identity"])
    service_state().moderator.remove_participant(
        tenant, livekit_name(tenant, fields["room_name"]), fields["participant_identity"]
    )
    return {"status": "removed", **fields}


def mute_track():
    """Mute or unmute one track a participant of one of the tenant's rooms publishes."""
    tenant = require_tenant()
    fields = load_body(mute_schema)
    check_target(fields["participant_identity"])
    track = service_state().moderator.mute(
        tenant,
        livekit_name(tenant, fields["room_name"]),
        fields["participant_identity"],
        fields.get("track_sid"),
        fields.get("source"),
        fields["muted"],
    )
    return track_schema.dump(track)


def set_permissions():
    """Change a connected participant's permissions live (a role preset or explicit grants)."""
    tenant = require_tenant()
    fields = load_body(permissions_schema)
    room_name, identity = fields.pop("room_name"), fields.pop("participant_identity")
    check_target(identity)
    role, presets = fields.pop("role", None), service_state().settings.role_presets
    grants = fields
    if role is not None:
        check_role(role, presets)
        grants = permission(presets[role])
    else:
        check_grants(grants, presets)
    participant = service_state().moderator.set_permissions(
        tenant, livekit_name(tenant, room_name), identity, grants
    )
    return participant_schema_out.dump(participant)


def livekit_name(tenant: str, room_name: str) -> str:
    """LiveKit's name for one of the tenant's room names (the same with shared names)."""
    return service_state().issuer.livekit_name(tenant, room_name)


def own_room(rendered: dict, tenant: str) -> dict:
    """A rendered room under the tenant's own name (and LiveKit's, with per-tenant names)."""
    issuer = service_state().issuer
    if issuer.ownership is not None and issuer.ownership.per_tenant:
        rendered["livekit_room_name"] = rendered["name"]
        rendered["name"] = issuer.ownership.own_name(tenant, rendered["name"])
    return rendered


participant_schema = ParticipantSchema()
mute_schema = MuteSchema()
permissions_schema = PermissionsSchema()
room_summary = RoomSummarySchema()
room_detail = RoomDetailSchema()
track_schema = TrackSchema()
participant_schema_out = ParticipantInfoSchema()
