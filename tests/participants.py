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


async def _stay(url: str, token: str, seconds: float, refreshes: int) -> tuple[str, str, list]:
    """Join, stay `seconds` and until `refreshes` refreshed tokens came (at most 60 s more);
    return (room name, room metadata, the refreshed tokens in order)."""
    room = rtc.Room()
    tokens = []
    room.on("token_refreshed", lambda: tokens.append(room._token))
    await room.connect(url, token)
    try:
        await asyncio.sleep(seconds)
        for _ in range(600):
            if len(tokens) >= refreshes:
                break
            await asyncio.sleep(0.1)
        return room.name, room.metadata, tokens
    finally:
        await room.disconnect()


def stay(url: str, token: str, seconds: float = 0.0, refreshes: int = 1):
    """Join and stay a while, keeping every refreshed token LiveKit sends; then leave.
    Return (room name, room metadata, refreshed tokens)."""
    return asyncio.run(_stay(url, token, seconds, refreshes))


async def _meet(urls_and_tokens, seconds: float = 3.0) -> list[set]:
    """Join everyone at once; after `seconds`, return for each the identities it sees."""
    rooms = [rtc.Room() for _ in urls_and_tokens]
    await asyncio.gather(*(room.connect(url, token)
                           for room, (url, token) in zip(rooms, urls_and_tokens)))
    try:
        await asyncio.sleep(seconds)
        return [set(room.remote_participants) for room in rooms]
    finally:
        await asyncio.gather(*(room.disconnect() for room in rooms))


def meet(urls_and_tokens, seconds: float = 3.0) -> list[set]:
    """Join every (url, token) at once; the remote identities each participant sees."""
    return asyncio.run(_meet(urls_and_tokens, seconds))
