"""The LiveKit-facing service: room ownership and token minting, with no Flask in sight.

Ownership is a property of the room **name**, kept in the service's own record (`holds.py`),
because a token names a room, not one life of it, and LiveKit keeps refreshing the tokens of
connected participants. `metadata.auth_id` in LiveKit is the mirror other systems read. For a
tenant (or, with AUTH_REQUIRED=false beside a key, the anonymous namespace "") asking for name N:

1. `claim(N)`: one atomic storage step. Another holder whose hold has not run out: 403, no
   LiveKit call. The caller's own hold is extended to at least now + TOKEN_TTL + 60 s.
2. Another holder whose hold ran out: ask LiveKit (ListRooms). Listed: the holder keeps it for
   another grace (max(600 s, TOKEN_TTL) + 60 s, the life of a token LiveKit refreshed), 403.
   Absent and not yet seen gone: the grace starts now, 403. Absent once the grace after it was
   seen gone is over: the name is free, and passes to the caller (compare-and-set, so a
   concurrent token of the holder wins).
3. The caller's checked hold: the token is minted at once. No other tenant can get a token for
   N while the hold lasts, and a join re-creates a missing room from the token's `roomConfig`,
   owned by the holder.
4. A pending hold (a fresh claim, or a name just passed on), under the per-name lock (one
   creator per name across every instance): LiveKit's word first. A room the store lists with
   another owner (or no valid `auth_id`) is refused with no write and recorded as that owner's.
   Then CreateRoom with the caller's metadata (or the caller's own stored room replayed as it
   is); only the live room's `auth_id` in the answer decides, and the hold is checked.

LiveKit calls per request: unauthenticated 0; a name another holds 0; the caller's own name 0;
a new name 2 (ListRooms, CreateRoom). A CreateRoom that timed out keeps the lock until it
expires (LOCK_TTL_MS outlasts what LiveKit may still be running).
"""

import dataclasses
import json
import time
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache

from google.protobuf.json_format import MessageToDict
from livekit import api
from livekit.api.access_token import Claims, snake_to_lower_camel

from .config import Settings
from .errors import (
    InvalidRequest,
    LiveKitNotConfigured,
    LiveKitTimeout,
    LiveKitUnavailable,
    LiveKitUnreached,
    ParticipantRemoved,
    RoomBusy,
    RoomForbidden,
    StorageUnavailable,
    TokenGenerationFailed,
)
from .holds import Hold, now_ms
from .livekit_client import RoomServiceClient
from .names import NameTooLong, RoomNames
from .roles import DEFAULT_ROLE, ROLE_ATTRIBUTE, TENANT_ATTRIBUTE, video_grants

OWNER_KEY = "auth_id"
#: The holder of names used by anonymous tokens (never a tenant id: those are 1 to 256 bytes).
ANONYMOUS = ""
#: LiveKit's own CreateRoom may run create_room_attempts (3) x create_room_timeout (10 s) after
#: the service gave up; the per-name lock outlasts that.
LOCK_TTL_MS = 40_000
#: LiveKit accepts a token until about 60 s past its exp.
LIVEKIT_LEEWAY_MS = 60_000
#: LiveKit's refreshed tokens are valid for at least 10 minutes.
REFRESHED_TOKEN_MS = 600_000


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


def owner_metadata(tenant: str) -> str:
    """Return the room metadata that makes `tenant` the owner (always JSON-encoded); for the
    anonymous namespace, an object without an owner."""
    document = {OWNER_KEY: tenant} if tenant != ANONYMOUS else {}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


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


def holder_of(metadata: str) -> str:
    """The holder a room's metadata names: its tenant, or ANONYMOUS when it has no valid owner."""
    return room_owner(metadata) or ANONYMOUS


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

    def __init__(self, settings: Settings, rooms: RoomServiceClient | None = None,
                 room_creations=None, observe_call=None, holds=None):
        """Use `rooms` for LiveKit calls (built from the settings, reporting each call to
        `observe_call`, when not given) and `holds` as the ownership record; `room_creations`,
        when given, is asked before a room is created (`test_room_create(tenant)`) and told
        after (`count_room_create(tenant)`)."""
        self.settings = settings
        self.holds = holds
        self.names = RoomNames(settings.room_names == "per-tenant")
        self.hold_ms = settings.token_ttl * 1000 + LIVEKIT_LEEWAY_MS
        self.grace_ms = max(REFRESHED_TOKEN_MS, settings.token_ttl * 1000) + LIVEKIT_LEEWAY_MS
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
        """Return a token for `request`; with a tenant (or anonymous beside a key), only for a
        room name that is the caller's."""
        self.require_livekit()
        metadata, created = None, False
        holder = tenant if tenant is not None else ANONYMOUS
        room_name = self.livekit_name(holder, request.room_name)
        agents = agent_dispatches(request)
        if tenant is not None or self.settings.anonymous_checked:
            metadata, created = self.ensure_room_owner(
                room_name, holder, request.participant_identity, agents)
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

    def ensure_room_owner(self, room_name: str, holder: str, identity: str | None = None,
                          agents=()) -> tuple[str, bool]:
        """Make sure `room_name` is `holder`'s, creating the room if missing (with `agents`
        dispatched to it, as a join would); return (the room metadata for the token, whether
        this call created the room), or raise 403 (see the module docstring): also for an
        `identity` removed from the room."""
        hold = self.holds.claim(room_name, holder, now_ms() + self.hold_ms, identity)
        if hold.holder != holder:
            hold = self._take_over(room_name, hold, holder)
        elif hold.removed:
            raise ParticipantRemoved()
        if not hold.pending:
            # The name is the holder's and LiveKit's word on it was checked: no other tenant can
            # get a token for it, and a join re-creates a missing room with the token's owner.
            return owner_metadata(holder), False
        token = self._lock(room_name)
        keep = False  # after a timeout LiveKit may still be creating the room: keep hold and lock
        try:
            hold = self._hold_under_lock(room_name, holder)
            if not hold.pending:  # another request of the holder checked it meanwhile
                return owner_metadata(holder), False
            # Per tenant no other tenant can make this name: only a room made outside the
            # service could be there, and CreateRoom's answer is checked all the same.
            stored = None if self.names.per_tenant else self._check_livekit_word(room_name, hold)
            if self.room_creations is not None and stored is None:
                self.room_creations.test_room_create(holder)
            try:
                room = self.rooms.create_room(
                    self._create_request(room_name, holder, stored, agents))
            except (LiveKitTimeout, LiveKitUnavailable) as exc:
                keep = not isinstance(exc, LiveKitUnreached)
                raise
            if holder_of(room.metadata) != holder:
                self._record_owner(room_name, holder, holder_of(room.metadata))
                raise RoomForbidden(f"room {room_name!r} is not owned by this tenant")
            self.holds.verify(room_name, holder)
        except BaseException as exc:
            if not keep and hold.holder == holder and hold.pending and not isinstance(
                    exc, (RoomForbidden, StorageUnavailable)):
                self.holds.drop(room_name, hold)  # refused (429) or LiveKit failed
            raise
        finally:
            if not keep:
                self._unlock(room_name, token)
        created = stored is None
        if created and self.room_creations is not None:
            self.room_creations.count_room_create(holder)
        return room.metadata, created

    def _hold_under_lock(self, room_name: str, holder: str) -> Hold:
        """The caller's hold, read again under the lock: another request of the same holder may
        have checked it (no longer pending), had it refused by LiveKit's word, or dropped it."""
        current = self.holds.get(room_name)
        if current is None:
            current = self.holds.claim(room_name, holder, now_ms() + self.hold_ms)
        if current.holder != holder:
            raise RoomForbidden(f"room {room_name!r} is not owned by this tenant")
        return current

    def _take_over(self, room_name: str, hold: Hold, holder: str) -> Hold:
        """Another holder has the name: refuse while its hold lasts; once it ran out, ask
        LiveKit, and pass the name on only after a full grace with the room gone."""
        forbidden = RoomForbidden(f"room {room_name!r} is not owned by this tenant")
        now = now_ms()
        if hold.until > now:
            raise forbidden
        if self.rooms.find_room(room_name) is not None:
            self.holds.claim(room_name, hold.holder, now + self.grace_ms)
            raise forbidden
        if not hold.gone:
            self.holds.mark_gone(room_name, hold, now + self.grace_ms)
            raise forbidden
        if not self.holds.transfer(room_name, hold, holder, now + self.hold_ms, True):
            raise forbidden  # the holder got a token meanwhile
        return Hold(holder, now + self.hold_ms, pending=True)

    def _check_livekit_word(self, room_name: str, hold: Hold):
        """For a pending hold: a room LiveKit's store lists with another owner (or none) is that
        owner's; record it and refuse, writing nothing to LiveKit. Return the stored room (the
        caller's), or None."""
        stored = self.rooms.find_room(room_name)
        if stored is not None and holder_of(stored.metadata) != hold.holder:
            self._record_owner(room_name, hold.holder, holder_of(stored.metadata))
            raise RoomForbidden(f"room {room_name!r} is not owned by this tenant")
        return stored

    def _record_owner(self, room_name: str, ours: str, owner: str) -> None:
        """LiveKit says the room is `owner`'s: the record follows while it still names us (a
        concurrent request of ours may extend the hold between the read and the write)."""
        for _ in range(10):
            current = self.holds.get(room_name)
            if current is None or current.holder != ours:
                return
            if self.holds.transfer(room_name, current, owner, now_ms() + self.grace_ms, False):
                return

    def _lock(self, room_name: str) -> str:
        """Take the per-name lock, waiting up to LIVEKIT_TIMEOUT for another creator."""
        deadline = time.monotonic() + self.settings.livekit_timeout
        pause = 0.005
        while True:
            token = self.holds.lock(room_name, LOCK_TTL_MS)
            if token is not None:
                return token
            if time.monotonic() >= deadline:
                raise RoomBusy()
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _unlock(self, room_name: str, token: str) -> None:
        """Release the lock; a storage failure here only leaves it to expire."""
        try:
            self.holds.unlock(room_name, token)
        except Exception:  # already logged by the store; the lock expires by itself
            pass

    def mint_token(self, request: TokenRequest, room_metadata: str | None,
                   tenant: str | None = None, room_name: str | None = None, agents=()) -> str:
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
            .with_ttl(timedelta(seconds=settings.token_ttl))
        )
        if request.participant_metadata:
            token.with_metadata(request.participant_metadata)
        attributes = {**request.participant_attributes, ROLE_ATTRIBUTE: request.role}
        if tenant is not None:
            attributes[TENANT_ATTRIBUTE] = tenant
        token.with_attributes(attributes)
        config = api.RoomConfiguration(
            metadata=room_metadata or "", agents=agents, **self._room_options()
        )
        if config.ByteSize():
            token.with_room_config(config)
        try:
            return token.to_jwt()
        except Exception as exc:
            raise TokenGenerationFailed(f"the token could not be signed ({type(exc).__name__})")

    def _create_request(self, room_name: str, holder: str, stored=None,
                        agents=()) -> "api.CreateRoomRequest":
        """The CreateRoom request: the room owned by `holder` with the configured options and
        the request's agents, or a room LiveKit's store already gives the holder replayed as it
        is (nothing changes)."""
        if stored is None:
            return api.CreateRoomRequest(
                name=room_name, metadata=owner_metadata(holder), agents=agents,
                **self._room_options()
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
        """Close the LiveKit client's pooled connections and the storage's."""
        if self.rooms is not None:
            self.rooms.close()
        if self.holds is not None:
            self.holds.close()
