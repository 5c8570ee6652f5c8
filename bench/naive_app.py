"""Benchmark row 4: the service with the naive LiveKit pattern, for comparison only.

Every LiveKit call runs in `asyncio.run()` with a fresh `LiveKitAPI`: a new event loop, aiohttp
session and TCP connection per call, and ownership is decided the way a service without a record
of its own must: ListRooms, then CreateRoom, on every request. Same route, schemas, auth and
minting as the service.
"""

import asyncio

import aiohttp
from livekit import api

from tokensvc import create_app
from tokensvc.context import service_state
from tokensvc.errors import RoomForbidden
from tokensvc.livekit.client import RoomServiceClient
from tokensvc.ownership import holder_of, owner_metadata


class NaiveRoomServiceClient(RoomServiceClient):
    """The obvious synchronous wrapper: one `asyncio.run()` and one fresh client per call."""

    def _round_trip(self, method, request, admin_of=None):
        """Run the call on a brand-new loop with a brand-new `LiveKitAPI`."""

        async def once():
            lkapi = api.LiveKitAPI(
                self._base,
                self._api_key,
                self._api_secret,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            )
            try:
                if method == "ListRooms":
                    return await lkapi.room.list_rooms(request)
                if method == "CreateRoom":
                    return await lkapi.room.create_room(request)
                raise NotImplementedError(f"the naive row makes no {method} call")
            finally:
                await lkapi.aclose()

        return asyncio.run(once())


def naive_for_token(
    room_name: str, holder: str, identity=None, agents=(), admit=None
) -> tuple[str, bool]:
    """The room's owner from LiveKit alone: refuse on the store's word, create, check the live
    room's answer (`admit`, the quota check the service makes before creating, is skipped)."""
    stored = _issuer.rooms.find_room(room_name)
    if stored is not None and holder_of(stored.metadata) != holder:
        raise RoomForbidden(f"room {room_name!r} is not owned by this tenant")
    request = api.CreateRoomRequest(name=room_name, metadata=owner_metadata(holder), agents=agents)
    room = _issuer.rooms.create_room(request)
    if holder_of(room.metadata) != holder:
        raise RoomForbidden(f"room {room_name!r} is not owned by this tenant")
    return room.metadata, stored is None


app = create_app()
_issuer = service_state(app).issuer
_issuer.rooms = NaiveRoomServiceClient(
    _issuer.settings.livekit_url,
    _issuer.settings.livekit_api_key,
    _issuer.settings.livekit_api_secret,
    _issuer.settings.livekit_timeout,
)
_issuer.ownership.for_token = naive_for_token
