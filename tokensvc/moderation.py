"""A tenant manages its own rooms: list, inspect, end, remove, mute, re-permission (no Flask).

Every call is decided by the token route's ownership rule (`Ownership.owned`, and
`Ownership.live_rooms` for the list): the service's record, else LiveKit's word on the room's
owner, failing closed. A room that does not exist
and a room that is not the tenant's get the same answer (404 `room_not_found`). LiveKit is
called with the service's own keys, scoped per room: `roomAdmin` on the one room for the
participant calls, `roomCreate` for DeleteRoom.

A removal sticks: LiveKit cannot revoke a token and the removed participant holds refreshed
tokens for about 11 minutes, so the record keeps the (room, identity) pair for the same grace as
a hold; the token route refuses that identity a token for that room meanwhile (403
`participant_removed`), and LiveKit's `participant_joined` webhook for it removes it again
(`Ownership.on_event`).
"""

from livekit.protocol import models

from .errors import LiveKitNotFound, ParticipantNotFound, RoomNotFound, TrackNotFound
from .roles import SOURCES as TRACK_SOURCES
from .service import TokenIssuer

#: Track sources by the names the routes take.
SOURCES = {name: getattr(models.TrackSource, name.upper()) for name in TRACK_SOURCES}


class Moderator:
    """The management operations of one tenant's rooms, on the issuer's record and LiveKit."""

    def __init__(self, issuer: TokenIssuer):
        """Share the issuer's settings, ownership record and LiveKit client."""
        self.issuer = issuer

    @property
    def rooms(self):
        """The LiveKit client (500 livekit_not_configured without one)."""
        return self.issuer.require_livekit()

    @property
    def ownership(self):
        """The ownership rule the token route uses."""
        return self.issuer.ownership

    def list_rooms(self, tenant: str) -> list:
        """The tenant's live rooms, as the ownership rule finds them (one ListRooms for the
        names the record gives it)."""
        self.issuer.require_livekit()
        return self.ownership.live_rooms(tenant)

    def room(self, tenant: str, name: str):
        """(room, participants) of one of the tenant's rooms."""
        room = self.owned_room(tenant, name)
        return room, self.rooms.list_participants(name)

    def end_room(self, tenant: str, name: str) -> None:
        """End the room for everyone; the name stays the tenant's for a grace, since the
        participants it disconnected still hold refreshed tokens."""
        self.owned_room(tenant, name)
        try:
            self.rooms.delete_room(name)
        except LiveKitNotFound:
            raise RoomNotFound() from None
        self.ownership.ended(tenant, name)

    def remove_participant(self, tenant: str, name: str, identity: str) -> None:
        """Disconnect a participant and refuse it tokens for this room for a grace."""
        self.participant(tenant, name, identity)
        self.ownership.remove(name, identity)
        try:
            self.rooms.remove_participant(name, identity)
        except LiveKitNotFound:
            pass  # it left meanwhile; the removal holds all the same

    def mute(
        self,
        tenant: str,
        name: str,
        identity: str,
        track_sid: str | None,
        source: str | None,
        muted: bool,
    ):
        """Mute or unmute one published track, found by sid or by source; return the track."""
        participant = self.participant(tenant, name, identity)
        track = next(
            (
                t
                for t in participant.tracks
                if (track_sid and t.sid == track_sid) or (source and t.source == SOURCES[source])
            ),
            None,
        )
        if track is None:
            raise TrackNotFound()
        try:
            return self.rooms.mute_track(name, identity, track.sid, muted)
        except LiveKitNotFound:
            raise TrackNotFound() from None

    def set_permissions(self, tenant: str, name: str, identity: str, grants: dict):
        """Change the named grants of a connected participant live, keeping the others as it
        has them (UpdateParticipant replaces the whole permission, so read, change, write);
        return the participant."""
        permission = models.ParticipantPermission()
        permission.CopyFrom(self.participant(tenant, name, identity).permission)
        for grant, value in grants.items():
            if grant == "can_publish_sources":
                del permission.can_publish_sources[:]
                permission.can_publish_sources.extend(SOURCES[source] for source in value)
            else:
                setattr(permission, grant, value)
        try:
            return self.rooms.update_permission(name, identity, permission)
        except LiveKitNotFound:
            raise ParticipantNotFound() from None

    def participant(self, tenant: str, name: str, identity: str):
        """One participant of one of the tenant's rooms, or 404."""
        self.owned(tenant, name)
        try:
            return self.rooms.get_participant(name, identity)
        except LiveKitNotFound:
            raise ParticipantNotFound() from None

    def owned_room(self, tenant: str, name: str):
        """The tenant's room as LiveKit lists it, or 404 (missing and foreign alike)."""
        stored = self.owned(tenant, name)
        if stored is None:
            stored = self.rooms.find_room(name)
        if stored is None:
            raise RoomNotFound()
        return stored

    def owned(self, tenant: str, name: str):
        """404 for a name that is not the tenant's (the token route's rule); LiveKit's stored
        room when it was asked, else None."""
        return self.ownership.owned(tenant, name)
