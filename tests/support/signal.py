"""A participant that connects LiveKit's signal websocket only (`/rtc?access_token=...`) and never
a peer connection: LiveKit keeps it in state JOINING, lists it, and sends no webhook for it."""

import asyncio
import threading

import aiohttp
from livekit.protocol import rtc as rtc_pb


class SignalOnly:
    """One signal-only participant, connected from its own thread until `close`."""

    def __init__(self, ws_url: str, token: str):
        """Connect to `ws_url` with `token`; `joined` is set once LiveKit answered `join`, and
        `closed` once the websocket ended (LiveKit removed it, or `close`)."""
        self.url = f"{ws_url.rstrip('/')}/rtc?access_token={token}&auto_subscribe=1&protocol=15"
        self.joined = threading.Event()
        self.closed = threading.Event()
        self.refreshed: list[str] = []
        self.leave_reason: int | None = None
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._run(),))
        self._thread.daemon = True
        self._thread.start()

    async def _run(self) -> None:
        """Read SignalResponses until the socket ends or `close` is asked."""
        self._stop = asyncio.Event()
        try:
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(self.url) as socket:
                    reader = asyncio.ensure_future(self._read(socket))
                    stopper = asyncio.ensure_future(self._stop.wait())
                    await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    reader.cancel()
                    stopper.cancel()
        except aiohttp.ClientError:
            pass
        finally:
            self.closed.set()

    async def _read(self, socket) -> None:
        """Handle each message: join, refreshed tokens, leave."""
        async for message in socket:
            if message.type != aiohttp.WSMsgType.BINARY:
                continue
            answer = rtc_pb.SignalResponse.FromString(message.data)
            kind = answer.WhichOneof("message")
            if kind == "join":
                self.joined.set()
            elif kind == "refresh_token":
                self.refreshed.append(answer.refresh_token)
            elif kind == "leave":
                self.leave_reason = answer.leave.reason
                return

    def close(self) -> None:
        """Disconnect (if still connected) and end the thread."""
        if self._stop is not None and not self.closed.is_set():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()
