"""Talking to LiveKit: the RoomService client, minting join tokens."""
