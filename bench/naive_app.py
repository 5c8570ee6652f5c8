"""Benchmark row 4: the service with the naive LiveKit pattern, for comparison only.

Every LiveKit call runs in `asyncio.run()` with a fresh `LiveKitAPI`: a new event loop, aiohttp
session and TCP connection per call. Same route, schemas, auth and minting as the service.
"""

import asyncio

import aiohttp
from livekit import api

from tokensvc import create_app
from tokensvc.livekit_client import RoomServiceClient


class NaiveRoomServiceClient(RoomServiceClient):
    """The obvious synchronous wrapper: one `asyncio.run()` and one fresh client per call."""

    def _call(self, method, request):
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
                return await lkapi.room.create_room(request)
            finally:
                await lkapi.aclose()

        self._counter.calls = getattr(self._counter, "calls", 0) + 1
        return asyncio.run(once())


app = create_app()
_issuer = app.extensions["tokensvc"].issuer
_issuer.rooms = NaiveRoomServiceClient(
    _issuer.settings.livekit_url,
    _issuer.settings.livekit_api_key,
    _issuer.settings.livekit_api_secret,
    _issuer.settings.livekit_timeout,
)
