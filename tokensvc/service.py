"""The LiveKit-facing service: room ownership and token minting, with no Flask in sight.

livekit-server keeps two views of a room: the live room (what `CreateRoom` answers from and what
participants join) and the store entry (what `ListRooms` reads). After two concurrent creates of
one new room they can disagree until the live room next changes, and a `CreateRoom` for a room that
is only in the store overwrites the stored metadata. So ownership is decided in two steps, and
neither writes anything that belongs to another tenant:

1. `ListRooms`: a room the store holds whose `auth_id` is not the caller's (or that has no valid
   `auth_id`) is refused at once, with no write. A room only in the store (its node failed) is
   therefore never re-created for a tenant that does not own it.
2. `CreateRoom`: for a new room with the caller as owner; for the caller's own stored room with the
   store's own metadata and options, so it changes nothing (a live room comes back untouched; a
   store-only one is made live as it was). The answer is the live room, and only its `auth_id`
   decides: the tenant whose create made the live room gets tokens, every other tenant gets 403,
   whatever the store says meanwhile.

With `RATE_LIMIT_ROOM_CREATES_PER_TENANT`, a tenant over its limit is refused with 429 between the
two steps, before anything is written; a room is counted once `CreateRoom` gave it to the caller.

LiveKit calls per request: unauthenticated 0; a room the store gives another owner 1 (ListRooms);
a new room, or the caller's own room, 2 (ListRooms, CreateRoom). UpdateRoomMetadata is never used.
A store that names the caller while the live room names another tenant (the loser of a create
race) is refused on the CreateRoom answer; the opposite case (the winner, before anyone joined) is
refused on ListRooms until the first participant joins and the server re-writes its store.
"""

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache

from google.protobuf.json_format import MessageToDict
from livekit import api
from livekit.api.access_token import Claims, snake_to_lower_camel

from .config import Settings
from .errors import LiveKitNotConfigured, RoomForbidden, TokenGenerationFailed
from .livekit_client import RoomServiceClient

OWNER_KEY = "auth_id"


@dataclass(frozen=True)
class TokenRequest:
    """What a participant asks for: one room, a display name and an identity."""

    room_name: str
    participant_name: str
    participant_identity: str
    participant_metadata: str = ""
    participant_attributes: dict = field(default_factory=dict)
    room_config: dict | None = None


@dataclass(frozen=True)
class IssuedToken:
    """A minted participant token and what the client needs to use it."""

    token: str = field(repr=False)
    room_name: str
    participant_identity: str
    livekit_url: str
    room_created: bool = False

    @property
    def participant_token(self) -> str:
        """The token under LiveKit TokenSource's name."""
        return self.token

    @property
    def server_url(self) -> str:
        """The URL under LiveKit TokenSource's name."""
        return self.livekit_url


def owner_metadata(tenant: str) -> str:
    """Return the room metadata that makes `tenant` the owner (always JSON-encoded)."""
    return json.dumps({OWNER_KEY: tenant}, ensure_ascii=False, separators=(",", ":"))


def room_owner(metadata: str) -> str | None:
    """Return the tenant that owns a room by its metadata, or None when it has no valid owner."""
    try:
        document = json.loads(metadata) if metadata else None
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    owner = document.get(OWNER_KEY)
    return owner if isinstance(owner, str) and owner else None


class FlatClaims(Claims):
    """LiveKit's `Claims`, serialised without `dataclasses.asdict`'s recursive deep copies.

    `asdict()` returns exactly what `Claims.asdict()` returns (a test checks this over arbitrary
    claims); it is the hot part of minting, and the stock one costs more than the rest together.
    """

    def asdict(self) -> dict:
        """Claims as a JWT payload: lowerCamel keys, None and "" left out, grants one level down."""
        claims = _flat_dict(self)
        if self.room_config:
            claims["roomConfig"] = MessageToDict(self.room_config)
        return claims


@cache
def _field_names(kind: type) -> tuple:
    """(attribute, lowerCamel key) for each field of a dataclass type."""
    return tuple((f.name, snake_to_lower_camel(f.name)) for f in dataclasses.fields(kind))


def _flat_dict(instance) -> dict:
    """One dataclass as a dict the way `Claims.asdict` builds it, copying only containers."""
    result = {}
    for name, key in _field_names(type(instance)):
        value = getattr(instance, name)
        if value is None or value == "":
            continue
        if dataclasses.is_dataclass(value):
            value = _flat_dict(value)
        elif isinstance(value, (list, dict)):
            value = type(value)(value)
        result[key] = value
    return result


class TokenIssuer:
    """Issues participant tokens; with a tenant, first makes sure the tenant owns the room."""

    def __init__(self, settings: Settings, rooms: RoomServiceClient | None = None,
                 room_creations=None, observe_call=None):
        """Use `rooms` for LiveKit calls (built from the settings, reporting each call to
        `observe_call`, when not given); `room_creations`, when given, is asked before a room
        is created (`test_room_create(tenant)`) and told after (`count_room_create(tenant)`)."""
        self.settings = settings
        if rooms is None and settings.livekit_configured:
            rooms = RoomServiceClient(
                settings.livekit_url,
                settings.livekit_api_key,
                settings.livekit_api_secret,
                settings.livekit_timeout,
                observe_call,
            )
        self.rooms = rooms
        self.room_creations = room_creations

    def issue(self, request: TokenRequest, tenant: str | None) -> IssuedToken:
        """Return a token for `request`; with a tenant, only for a room the tenant owns."""
        self.require_livekit()
        metadata, created = None, False
        if tenant is not None:
            metadata, created = self.ensure_room_owner(request.room_name, tenant)
        return IssuedToken(
            token=self.mint_token(request, metadata),
            room_name=request.room_name,
            participant_identity=request.participant_identity,
            livekit_url=self.settings.client_url,
            room_created=created,
        )

    def require_livekit(self) -> RoomServiceClient:
        """Return the LiveKit client, or raise 500 livekit_not_configured naming the settings."""
        if not self.settings.livekit_configured:
            raise LiveKitNotConfigured()
        return self.rooms

    def ensure_room_owner(self, room_name: str, tenant: str) -> tuple[str, bool]:
        """Create the room for `tenant` if missing; return (its live metadata, whether this
        call created it), or refuse a room that the store or the live room gives to anyone else
        (see the module docstring)."""
        stored = self.rooms.find_room(room_name)
        if stored is not None and room_owner(stored.metadata) != tenant:
            raise RoomForbidden(f"room {room_name!r} is not owned by this tenant")
        if stored is None and self.room_creations is not None:
            self.room_creations.test_room_create(tenant)
        room = self.rooms.create_room(self._create_request(room_name, tenant, stored))
        if room_owner(room.metadata) != tenant:
            raise RoomForbidden(f"room {room_name!r} is not owned by this tenant")
        created = stored is None
        if created and self.room_creations is not None:
            self.room_creations.count_room_create(tenant)
        return room.metadata, created

    def mint_token(self, request: TokenRequest, room_metadata: str | None) -> str:
        """Sign a join-only token for one room; `room_metadata` rides along in `roomConfig`."""
        settings = self.settings
        grants = api.VideoGrants(
            room_join=True,
            room=request.room_name,
            can_publish=True,
            can_subscribe=True,
            can_publish_data=True,
        )
        token = api.AccessToken(settings.livekit_api_key, settings.livekit_api_secret)
        token.claims = FlatClaims()
        (
            token.with_identity(request.participant_identity)
            .with_name(request.participant_name)
            .with_grants(grants)
            .with_ttl(timedelta(seconds=settings.token_ttl))
        )
        if request.participant_metadata:
            token.with_metadata(request.participant_metadata)
        if request.participant_attributes:
            token.with_attributes(dict(request.participant_attributes))
        agents = [
            api.RoomAgentDispatch(agent_name=agent["agent_name"], metadata=agent["metadata"])
            for agent in (request.room_config or {}).get("agents", ())
        ]
        config = api.RoomConfiguration(
            metadata=room_metadata or "", agents=agents, **self._room_options()
        )
        if config.ByteSize():
            token.with_room_config(config)
        try:
            return token.to_jwt()
        except Exception as exc:
            raise TokenGenerationFailed(f"the token could not be signed ({type(exc).__name__})")

    def _create_request(self, room_name: str, tenant: str, stored) -> "api.CreateRoomRequest":
        """The CreateRoom request: a new room owned by `tenant`, or the stored room as it is."""
        if stored is None:
            return api.CreateRoomRequest(
                name=room_name, metadata=owner_metadata(tenant), **self._room_options()
            )
        return api.CreateRoomRequest(
            name=room_name,
            metadata=stored.metadata,
            empty_timeout=stored.empty_timeout,
            departure_timeout=stored.departure_timeout,
            max_participants=stored.max_participants,
        )

    def _room_options(self) -> dict:
        """Return the configured options for rooms (timeouts, participant limit)."""
        options = {
            "empty_timeout": self.settings.room_empty_timeout,
            "departure_timeout": self.settings.room_departure_timeout,
            "max_participants": self.settings.room_max_participants,
        }
        return {name: value for name, value in options.items() if value is not None}

    def close(self) -> None:
        """Close the LiveKit client's pooled connections."""
        if self.rooms is not None:
            self.rooms.close()
