"""The one interface of the two LiveKits the tests run on: the emulator, and the real
livekit-server behind the tests' recording proxy. A test written against it runs on either."""

from collections import Counter
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from livekit.protocol import models

from .emulator import Faults


@runtime_checkable
class LiveKitUnderTest(Protocol):
    """A LiveKit a test drives: its URLs, the calls the app made, switches, and direct room
    reads and writes that are not counted as the app's calls."""

    calls: Counter
    #: The caller's port of each call, in order: one port per connection it opened.
    client_ports: list[int]

    @property
    def url(self) -> str:
        """The HTTP URL of the server API (what a test calls directly)."""

    @property
    def ws_url(self) -> str:
        """The URL clients connect to."""

    @property
    def faults(self) -> Faults:
        """The fault switches; setting one this LiveKit cannot apply raises NotImplementedError."""

    def call_count(self, method: str | None = None) -> int:
        """How many calls of `method` (all when None) the app made, failed ones included."""

    def after_next_call(self, method: str, action: Callable[[], None]) -> None:
        """Run `action()` once, right after the app's next `method` call is answered."""

    def add_room(self, name: str, metadata: str = "", **options) -> models.Room:
        """Create a room directly, as another client of LiveKit would."""

    def stored_room(self, name: str) -> models.Room | None:
        """The room as ListRooms reports it (the store's view), or None."""

    def get_room(self, name: str) -> models.Room | None:
        """The room, read without writing anything, or None when there is none."""

    def close_room(self, name: str) -> bool:
        """Delete a room (DeleteRoom); True if it existed."""

    def reset(self) -> None:
        """Forget every room, recorded call, queued action and fault."""

    def stop(self) -> None:
        """Stop serving."""
