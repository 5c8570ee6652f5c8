"""Testing helpers: a LiveKit-compatible RoomService emulator, the real livekit-server as a
child process, and the interface both offer a test (`LiveKitUnderTest`), for development, tests
and benchmarks."""

from .emulator import Faults, LiveKitEmulator
from .interface import LiveKitUnderTest
from .livekit_server import LiveKitServer

__all__ = ["Faults", "LiveKitEmulator", "LiveKitServer", "LiveKitUnderTest"]
