"""The LiveKit-facing service: token minting, with ownership asked of `ownership.py` (no Flask).

`TokenIssuer.issue` validates what only the service knows (LiveKit's name for the caller's room
name), asks the ownership rule for the room when a tenant (or the anonymous namespace beside a
key) asks, and signs a join-only token with the role's grants. The cost of each case, in LiveKit
and storage calls, is the table in `ownership.py`.
"""

import dataclasses
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache

from google.protobuf.json_format import MessageToDict
from livekit import api
from livekit.api.access_token import Claims, snake_to_lower_camel

from .config import Settings
from .errors import InvalidRequest, LiveKitNotConfigured, TokenGenerationFailed
from .livekit_client import RoomServiceClient
from .names import NameTooLong, RoomNames
from .ownership import ANONYMOUS, Ownership, room_options
from .roles import DEFAULT_ROLE, ROLE_ATTRIBUTE, TENANT_ATTRIBUTE, video_grants


@dataclass(frozen=True)
class TokenRequest:
    """What a participant asks for: one room, a display name and an identity."""

    room_name: str
    participant_name: str
    participant_identity: str
    participant_metadata: str = ""
    participant_attributes: dict = field(default_factory=dict)
    room_config: dict | None = None
    role: str = DEFAULT_ROLE


@dataclass(frozen=True)
class IssuedToken:
    """A minted participant token and what the client needs to use it."""

    token: str = field(repr=False)
    room_name: str
    participant_identity: str
    livekit_url: str
    room_created: bool = False
    livekit_room_name: str | None = None  # with ROOM_NAMES=per-tenant: LiveKit's name

    @property
    def participant_token(self) -> str:
        """The token under LiveKit TokenSource's name."""
        return self.token

    @property
    def server_url(self) -> str:
        """The URL under LiveKit TokenSource's name."""
        return self.livekit_url


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


def agent_dispatches(request: TokenRequest) -> list:
    """The agents the request dispatches to its room (TokenSource `room_config.agents`)."""
    return [
        api.RoomAgentDispatch(agent_name=agent["agent_name"], metadata=agent["metadata"])
        for agent in (request.room_config or {}).get("agents", ())
    ]


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

    def __init__(
        self,
        settings: Settings,
        rooms: RoomServiceClient | None = None,
        room_creations=None,
        observe_call=None,
        holds=None,
        observe_event=None,
    ):
        """Use `rooms` for LiveKit calls (built from the settings, reporting each call to
        `observe_call`, when not given) and `holds` as the ownership record (see `Ownership`
        for `room_creations` and `observe_event`)."""
        self.settings = settings
        self.names = RoomNames(settings.room_names == "per-tenant")
        if rooms is None and settings.livekit_configured:
            rooms = RoomServiceClient(
                settings.livekit_url,
                settings.livekit_api_key,
                settings.livekit_api_secret,
                settings.livekit_timeout,
                observe_call,
            )
        self.rooms = rooms
        self.ownership = None
        if holds is not None:
            self.ownership = Ownership(
                settings, holds, rooms, self.names.per_tenant, room_creations, observe_event
            )

    def issue(self, request: TokenRequest, tenant: str | None) -> IssuedToken:
        """Return a token for `request`; with a tenant (or anonymous beside a key), only for a
        room name that is the caller's."""
        self.require_livekit()
        metadata, created = None, False
        holder = tenant if tenant is not None else ANONYMOUS
        room_name = self.livekit_name(holder, request.room_name)
        agents = agent_dispatches(request)
        if tenant is not None or self.settings.anonymous_checked:
            metadata, created = self.ownership.for_token(
                room_name, holder, request.participant_identity, agents
            )
        return IssuedToken(
            token=self.mint_token(request, metadata, tenant, room_name, agents),
            room_name=request.room_name,
            participant_identity=request.participant_identity,
            livekit_url=self.settings.client_url,
            room_created=created,
            livekit_room_name=room_name if self.names.per_tenant else None,
        )

    def livekit_name(self, holder: str, room_name: str) -> str:
        """LiveKit's name for the caller's room name (per tenant, an injective encoding); 400
        when it would not fit LiveKit's limit."""
        try:
            return self.names.livekit_name(holder, room_name)
        except NameTooLong as exc:
            raise InvalidRequest(str(exc), fields={"room_name": [str(exc)]}) from None

    def require_livekit(self) -> RoomServiceClient:
        """Return the LiveKit client, or raise 500 livekit_not_configured naming the settings."""
        if not self.settings.livekit_configured:
            raise LiveKitNotConfigured()
        return self.rooms

    def token_ttl(self) -> int:
        """TOKEN_TTL, counted on the storage's clock when this instance's is off by more than
        CLOCK_SKEW_MAX (a token's `exp` must not outlive the hold that covers it)."""
        ttl = self.settings.token_ttl
        skew_ms = self.ownership.skew_ms if self.ownership is not None else 0
        if abs(skew_ms) > self.settings.clock_skew_max * 1000:
            ttl = max(1, ttl + int(skew_ms // 1000))
        return ttl

    def mint_token(
        self,
        request: TokenRequest,
        room_metadata: str | None,
        tenant: str | None = None,
        room_name: str | None = None,
        agents=(),
    ) -> str:
        """Sign a join-only token for one room with its role's grants; `room_metadata` and the
        agent dispatches ride along in `roomConfig`, the role and the tenant in reserved
        attributes."""
        settings = self.settings
        grants = api.VideoGrants(
            room_join=True,
            room=room_name or request.room_name,
            **video_grants(settings.role_presets[request.role]),
        )
        token = api.AccessToken(settings.livekit_api_key, settings.livekit_api_secret)
        token.claims = FlatClaims()
        (
            token.with_identity(request.participant_identity)
            .with_name(request.participant_name)
            .with_grants(grants)
            .with_ttl(timedelta(seconds=self.token_ttl()))
        )
        if request.participant_metadata:
            token.with_metadata(request.participant_metadata)
        attributes = {**request.participant_attributes, ROLE_ATTRIBUTE: request.role}
        if tenant is not None:
            attributes[TENANT_ATTRIBUTE] = tenant
        token.with_attributes(attributes)
        config = api.RoomConfiguration(
            metadata=room_metadata or "", agents=agents, **room_options(settings)
        )
        if config.ByteSize():
            token.with_room_config(config)
        try:
            return token.to_jwt()
        except Exception as exc:
            raise TokenGenerationFailed(f"the token could not be signed ({type(exc).__name__})")

    def close(self) -> None:
        """Close the LiveKit client's pooled connections and the storage's."""
        if self.rooms is not None:
            self.rooms.close()
        if self.ownership is not None:
            self.ownership.holds.close()
