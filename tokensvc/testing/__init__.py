"""Testing helpers: a LiveKit-compatible RoomService emulator for development and tests."""

from .emulator import Faults, LiveKitEmulator

__all__ = ["Faults", "LiveKitEmulator"]
