"""Real participants: LiveKit's own Python realtime SDK (`livekit.rtc`) joining over WebRTC."""

import asyncio
import logging
import threading
import time
from collections import defaultdict

from livekit import rtc
from livekit.rtc.participant import PublishTrackError

# The SDK's native core logs the whole token with every failed connect; the test sees the failure
# as the ConnectError it raises, and the suite's leak check must not see a test token as a leak.
logging.getLogger("livekit").setLevel(logging.CRITICAL)

#: What `Call.publish` raises when the server refuses the publish (or never answers it).
PUBLISH_REFUSED = (PublishTrackError, TimeoutError)


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
    await asyncio.gather(
        *(
            room.connect(url, token)
            for room, (url, token) in zip(rooms, urls_and_tokens, strict=True)
        )
    )
    try:
        await asyncio.sleep(seconds)
        return [set(room.remote_participants) for room in rooms]
    finally:
        await asyncio.gather(*(room.disconnect() for room in rooms))


def meet(urls_and_tokens, seconds: float = 3.0) -> list[set]:
    """Join every (url, token) at once; the remote identities each participant sees."""
    return asyncio.run(_meet(urls_and_tokens, seconds))


class Call:
    """Real participants kept connected on a background event loop while a test goes on: each
    joins with a token, may publish a microphone, and records what it sees (disconnections,
    muted tracks, data messages, remote participants)."""

    def __init__(self):
        """Start the loop."""
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.rooms, self.events, self.sources = {}, defaultdict(list), []
        self.frames = defaultdict(int)  # audio frames each participant received
        self.tasks = []

    def run(self, coroutine, timeout: float = 30):
        """Run a coroutine on the loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def join(self, name: str, url: str, token: str) -> None:
        """Join as participant `name` (the test's own label) and stay."""

        async def connect():
            room = rtc.Room()
            events = self.events[name]
            room.on("disconnected", lambda reason: events.append(("disconnected",)))
            room.on(
                "track_muted",
                lambda participant, publication: events.append(
                    ("muted", participant.identity, publication.sid)
                ),
            )
            room.on("token_refreshed", lambda: events.append(("token", room._token)))
            room.on(
                "data_received",
                lambda packet: events.append(("data", packet.topic, bytes(packet.data))),
            )
            room.on(
                "track_subscribed",
                lambda track, publication, participant: self._listen(name, track),
            )
            await room.connect(url, token)
            return room

        self.rooms[name] = self.run(connect())

    def publish(self, name: str, source: str = "microphone") -> str:
        """Publish a track (a microphone, or a camera) as `name`; return its sid. A publish
        the server refuses raises."""

        async def go():
            room = self.rooms[name]
            if source == "camera":
                media = rtc.VideoSource(64, 64)
                track = rtc.LocalVideoTrack.create_video_track("camera", media)
                kind = rtc.TrackSource.SOURCE_CAMERA
            else:
                media = rtc.AudioSource(48000, 1)
                track = rtc.LocalAudioTrack.create_audio_track("microphone", media)
                kind = rtc.TrackSource.SOURCE_MICROPHONE
            self.sources.append(media)
            options = rtc.TrackPublishOptions(source=kind)
            publication = await asyncio.wait_for(
                room.local_participant.publish_track(track, options), 10
            )
            if source != "camera":  # a microphone that sends 10 ms of silence at a time
                self.tasks.append(asyncio.ensure_future(self._speak(media)))
            return publication.sid

        return self.run(go(), timeout=20)

    async def _speak(self, source) -> None:
        """Feed an audio source 10 ms frames of silence, as a microphone would."""
        while True:
            await source.capture_frame(rtc.AudioFrame.create(48000, 1, 480))
            await asyncio.sleep(0.005)

    def _listen(self, name: str, track) -> None:
        """Count the audio frames participant `name` receives on a subscribed track."""
        if track.kind != rtc.TrackKind.KIND_AUDIO:
            return

        async def count():
            async for _ in rtc.AudioStream(track):
                self.frames[name] += 1

        self.tasks.append(asyncio.ensure_future(count()))

    def sees(self, name: str) -> set:
        """The identities participant `name` sees in its room."""
        return set(self.rooms[name].remote_participants)

    def wait_for(self, condition, seconds: float = 15) -> bool:
        """Wait until `condition()` holds; return whether it did."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.1)
        return condition()

    def close(self) -> None:
        """Everyone leaves; the loop stops."""

        async def leave():
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            await asyncio.gather(
                *(room.disconnect() for room in self.rooms.values()), return_exceptions=True
            )

        try:
            self.run(leave())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
