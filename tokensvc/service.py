"""The LiveKit-facing service: token minting, with ownership asked of `ownership.py` (no Flask).

`TokenIssuer.issue` validates what only the service knows (LiveKit's name for the caller's room
name), asks the ownership rule for the room when a tenant (or the anonymous namespace beside a
key) asks, and signs a join-only token with the role's grants. The cost of each case, in LiveKit
and storage calls, is the table in `ownership.py`.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

from livekit import api

from .config import Settings
from .errors import InvalidRequest, LiveKitNotConfigured, TokenGenerationFailed
from .livekit.client import RoomServiceClient
from .livekit.minting import Minter
from .names import NameTooLong, RoomNames
from .ownership import ANONYMOUS, Ownership, room_options
from .roles import DEFAULT_ROLE
from .usage import Usage


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


def agent_dispatches(request: TokenRequest) -> list:
    """The agents the request dispatches to its room (TokenSource `room_config.agents`)."""
    return [
        api.RoomAgentDispatch(agent_name=agent["agent_name"], metadata=agent["metadata"])
        for agent in (request.room_config or {}).get("agents", ())
    ]


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
        usage_store=None,
    ):
        """Use `rooms` for LiveKit calls (built from the settings, reporting each call to
        `observe_call`, when not given), `holds` as the ownership record (see `Ownership`
        for `room_creations` and `observe_event`) and `usage_store` for usage and quotas."""
        self.settings = settings
        self.names = RoomNames(settings.room_names == "per-tenant")
        self.minter = Minter(settings, room_options(settings))
        url, key, secret = (
            settings.livekit_url,
            settings.livekit_api_key,
            settings.livekit_api_secret,
        )
        if rooms is None and url and key and secret:  # settings.livekit_configured
            rooms = RoomServiceClient(
                url,
                key,
                secret,
                settings.livekit_timeout,
                observe_call,
            )
        self.rooms = rooms
        self.ownership: Ownership | None = None
        if holds is not None:
            self.ownership = Ownership(
                settings, holds, rooms, self.names, room_creations, observe_event
            )
            if isinstance(rooms, RoomServiceClient):
                rooms.clock_skew = self.ownership.clock_skew_ms
        self.usage: Usage | None = None
        if usage_store is not None and self.ownership is not None:
            self.usage = Usage(settings, usage_store, self.ownership, observe_event)
            self.ownership.usage = self.usage

    def issue(
        self, request: TokenRequest, tenant: str | None, quotas: Mapping | None = None
    ) -> IssuedToken:
        """Return a token for `request`; with a tenant (or anonymous beside a key), only for a
        room name that is the caller's (decided first: another tenant's name is never a quota
        refusal); with a tenant, within its quotas (`quotas`: its JWT's claims, which only
        lower them), checked before LiveKit is asked to create the room."""
        self.require_livekit()
        metadata, created = None, False
        holder = tenant if tenant is not None else ANONYMOUS
        room_name = self.livekit_name(holder, request.room_name)
        agents = agent_dispatches(request)
        reserved = False

        def admit() -> None:
            """The quotas, once the name is the tenant's and before LiveKit creates it."""
            nonlocal reserved
            if tenant is not None and self.usage is not None:
                reserved = self.usage.check_mint(
                    tenant, room_name, request.participant_identity, quotas or {}
                )

        try:
            if tenant is not None or self.settings.anonymous_checked:
                # A tenant, or anonymous beside a key: a key is configured, so the record exists.
                assert self.ownership is not None
                metadata, created = self.ownership.for_token(
                    room_name, holder, request.participant_identity, agents, admit
                )
        except BaseException:
            if reserved and tenant is not None:
                self._release(tenant, room_name)
            raise
        return IssuedToken(
            token=self.mint_token(request, metadata, tenant, room_name, agents),
            room_name=request.room_name,
            participant_identity=request.participant_identity,
            livekit_url=self.settings.client_url or "",  # set: LiveKit is configured
            room_created=created,
            livekit_room_name=room_name if self.names.per_tenant else None,
        )

    def _release(self, tenant: str, room_name: str) -> None:
        """Release a room reserved for a token that was not issued; a storage failure only
        leaves the reservation to expire."""
        if self.usage is None:
            return
        try:
            self.usage.release(tenant, room_name)
        except Exception:  # already logged by the store
            pass

    def livekit_name(self, holder: str, room_name: str) -> str:
        """LiveKit's name for the caller's room name (per tenant, an injective encoding); 400
        when it would not fit LiveKit's limit."""
        try:
            return self.names.livekit_name(holder, room_name)
        except NameTooLong as exc:
            raise InvalidRequest(str(exc), fields={"room_name": [str(exc)]}) from None

    def require_livekit(self) -> RoomServiceClient:
        """Return the LiveKit client, or raise 500 livekit_not_configured naming the settings."""
        if not self.settings.livekit_configured or self.rooms is None:
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
        try:
            return self.minter.sign(
                self.minter.payload(
                    identity=request.participant_identity,
                    name=request.participant_name,
                    metadata=request.participant_metadata,
                    attributes=request.participant_attributes,
                    role=request.role,
                    room=room_name or request.room_name,
                    tenant=tenant,
                    room_metadata=room_metadata,
                    agents=agents,
                    ttl=self.token_ttl(),
                )
            )
        except Exception as exc:
            raise TokenGenerationFailed(
                f"the token could not be signed ({type(exc).__name__})"
            ) from exc

    def close(self) -> None:
        """Close the LiveKit client's pooled connections and the storage's."""
        if self.rooms is not None:
            self.rooms.close()
        if self.ownership is not None:
            self.ownership.holds.close()
