"""Testing helpers: a LiveKit-compatible RoomService emulator, and the real livekit-server as a
child process, for development, tests and benchmarks."""

from .emulator import Faults, LiveKitEmulator
from .livekit_server import LiveKitServer

__all__ = ["Faults", "LiveKitEmulator", "LiveKitServer"]
