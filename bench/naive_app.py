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
    """The obvious synchronous wrapper: one `asyncio.run()` and one session per call."""

    def _call(self, make_call):
        """Run the call on a brand-new loop with a brand-new client."""

        async def once():
            lkapi = api.LiveKitAPI(
                self._url,
                self._api_key,
                self._api_secret,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            )
            try:
                return await make_call(lkapi)
            finally:
                await lkapi.aclose()

        return asyncio.run(once())


app = create_app()
_issuer = app.extensions["tokensvc"].issuer
_issuer.rooms = NaiveRoomServiceClient(
    _issuer.settings.livekit_url,
    _issuer.settings.livekit_api_key,
    _issuer.settings.livekit_api_secret,
    _issuer.settings.livekit_timeout,
)
