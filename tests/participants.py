"""Real participants: LiveKit's own Python realtime SDK (`livekit.rtc`) joining over WebRTC."""

import asyncio
import logging

from livekit import rtc

# The SDK's native core logs the whole token with every failed connect; the test sees the failure
# as the ConnectError it raises, and the suite's leak check must not see a test token as a leak.
logging.getLogger("livekit").setLevel(logging.CRITICAL)


async def _join(url: str, token: str) -> tuple[str, str]:
    """Join with `token`; return (room name, room metadata) as the participant sees them."""
    room = rtc.Room()
    await room.connect(url, token)
    try:
        return room.name, room.metadata
    finally:
        await room.disconnect()


def join(url: str, token: str) -> tuple[str, str]:
    """Join one room, leave again; return (room name, room metadata) seen while in it."""
    return asyncio.run(_join(url, token))


def join_all(url: str, tokens: list[str], at_once: int = 20) -> list[tuple[str, str]]:
    """Join with every token, `at_once` participants at a time; (name, metadata) for each."""

    async def run():
        limit = asyncio.Semaphore(at_once)

        async def one(token):
            async with limit:
                return await _join(url, token)

        return await asyncio.gather(*(one(token) for token in tokens))

    return asyncio.run(run())
