"""Marshmallow schemas for the token route's request and response bodies."""

from marshmallow import EXCLUDE, Schema, ValidationError, fields

#: LiveKit's limit for room names, participant identities and names, in UTF-8 bytes.
MAX_NAME_BYTES = 256


class LiveKitName(fields.String):
    """A string LiveKit accepts as a name: not blank, valid UTF-8, at most 256 bytes."""

    def _deserialize(self, value, attr, data, **kwargs):
        """Check the string and return it unchanged (white space is significant to LiveKit)."""
        text = super()._deserialize(value, attr, data, **kwargs)
        if not text.strip():
            raise ValidationError("Must not be empty.")
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValidationError("Must be valid Unicode text (no lone surrogates).") from None
        if size > MAX_NAME_BYTES:
            raise ValidationError(f"Must be at most {MAX_NAME_BYTES} bytes in UTF-8, got {size}.")
        return text


class TokenRequestSchema(Schema):
    """Body of `POST /livekit/token`; fields not listed are ignored."""

    class Meta:
        unknown = EXCLUDE

    room_name = LiveKitName(
        required=True,
        metadata={"description": "The LiveKit room to join.", "example": "conversation-room-123"},
    )
    participant_name = LiveKitName(
        required=True,
        metadata={"description": "Display name of the participant.", "example": "Alice Smith"},
    )
    participant_identity = LiveKitName(
        required=True,
        metadata={
            "description": "Unique identifier of the participant in the room.",
            "example": "user-alice-456",
        },
    )


class TokenResponseSchema(Schema):
    """Body of a successful `POST /livekit/token`."""

    token = fields.String(
        required=True, metadata={"description": "The LiveKit access token (a JWT)."}
    )
    room_name = fields.String(required=True, metadata={"example": "conversation-room-123"})
    participant_identity = fields.String(required=True, metadata={"example": "user-alice-456"})
    livekit_url = fields.String(
        required=True,
        metadata={"description": "URL clients connect to.", "example": "ws://localhost:7880"},
    )


class ErrorSchema(Schema):
    """Body of every error response."""

    error = fields.String(required=True, metadata={"description": "Human-readable message."})
    code = fields.String(required=True, metadata={"description": "Stable snake_case code."})
    fields_ = fields.Dict(
        data_key="fields",
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata={"description": "With invalid_request: field -> messages."},
    )
