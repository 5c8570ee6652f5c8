"""Marshmallow schemas for the request and response bodies of the token, management and
webhook routes."""

from livekit.protocol import models
from marshmallow import (
    EXCLUDE,
    RAISE,
    Schema,
    ValidationError,
    fields,
    validate,
    validates,
    validates_schema,
)

from .egress import MAX_URL_LENGTH
from .names import MAX_LIVEKIT_NAME_BYTES
from .roles import DEFAULT_ROLE, RESERVED_PREFIX, SOURCES
from .webhooks import EVENT_TYPES, rfc3339
from .webhooks import STATUSES as DELIVERY_STATUSES

#: LiveKit's limit for room names, participant identities and names, in UTF-8 bytes.
MAX_NAME_BYTES = MAX_LIVEKIT_NAME_BYTES
#: LiveKit's limit for a participant's attributes, keys and values together, in UTF-8 bytes.
MAX_ATTRIBUTES_BYTES = 64 * 1024
#: LiveKit's limit for metadata (participant, room, agent dispatch), in UTF-8 bytes
#: (`limit.max_metadata_size`; a token over it cannot join).
MAX_METADATA_BYTES = 512 * 1024
#: Agents one token may dispatch: each rides in the token, and LiveKit starts each one.
MAX_AGENT_DISPATCHES = 4
#: What a client may put in `room_config` (LiveKit TokenSource): agent dispatch, nothing else.
ALLOWED_ROOM_CONFIG = {"agents"}
ALLOWED_AGENT_DISPATCH = {"agent_name", "metadata"}


def fields_not_allowed(document: dict) -> list[str]:
    """Name every `room_config` key a client may not set (room name, metadata above all)."""
    config = document.get("room_config")
    if not isinstance(config, dict):
        return []
    refused = [f"room_config.{key}" for key in config if key not in ALLOWED_ROOM_CONFIG]
    agents = config.get("agents")
    for number, agent in enumerate(agents if isinstance(agents, list) else []):
        if isinstance(agent, dict):
            refused += [
                f"room_config.agents.{number}.{key}"
                for key in agent
                if key not in ALLOWED_AGENT_DISPATCH
            ]
    return refused


def _utf8_size(text: str) -> int:
    """Size in UTF-8 bytes; a lone surrogate cannot be encoded and is refused."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValidationError("Must be valid Unicode text (no lone surrogates).") from None


class Utf8Text(fields.String):
    """A string LiveKit can carry: valid UTF-8, at most `max_bytes` bytes of it."""

    def __init__(self, max_bytes: int = MAX_METADATA_BYTES, **kwargs):
        """Document the limit (JSON Schema counts characters; the limit is bytes of UTF-8)."""
        self.max_bytes = max_bytes
        metadata = {"maxLength": max_bytes, **kwargs.pop("metadata", {})}
        metadata["description"] = (
            metadata.get("description", "") + f" At most {max_bytes} bytes in UTF-8."
        ).strip()
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        """Check the string and return it unchanged (white space is significant to LiveKit)."""
        text = super()._deserialize(value, attr, data, **kwargs)
        size = _utf8_size(text)
        if size > self.max_bytes:
            raise ValidationError(f"Must be at most {self.max_bytes} bytes in UTF-8, got {size}.")
        return text


class LiveKitName(Utf8Text):
    """A string LiveKit accepts as a name: not blank, valid UTF-8, at most 256 bytes."""

    def __init__(self, **kwargs):
        """A name is never blank."""
        metadata = {"minLength": 1, "pattern": r"\S", **kwargs.pop("metadata", {})}
        metadata["description"] = metadata.get("description", "") + " Not blank."
        super().__init__(MAX_NAME_BYTES, metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        """Refuse a blank name."""
        text = super()._deserialize(value, attr, data, **kwargs)
        if not text.strip():
            raise ValidationError("Must not be empty.")
        return text


class AgentDispatchSchema(Schema):
    """One agent to dispatch to the room when it starts (TokenSource `room_config.agents[]`)."""

    class Meta:
        unknown = RAISE

    agent_name = Utf8Text(MAX_NAME_BYTES, load_default="", metadata={"example": "support-agent"})
    metadata = Utf8Text(load_default="", metadata={"example": '{"language": "en"}'})


class RoomConfigSchema(Schema):
    """The part of LiveKit's room configuration a client may set: agent dispatch only."""

    class Meta:
        unknown = RAISE

    agents = fields.List(
        fields.Nested(AgentDispatchSchema),
        load_default=list,
        validate=validate.Length(max=MAX_AGENT_DISPATCHES),
        metadata={"description": f"At most {MAX_AGENT_DISPATCHES} agents."},
    )


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
    participant_metadata = Utf8Text(
        load_default="",
        metadata={"description": "Participant metadata, as LiveKit's TokenSource sends it."},
    )
    participant_attributes = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        load_default=dict,
        metadata={"description": "Participant attributes (64 KiB in all)."},
    )
    room_config = fields.Nested(
        RoomConfigSchema,
        load_default=None,
        metadata={"description": "Only `agents` (agent dispatch); other keys: 400."},
    )
    role = fields.String(
        load_default=DEFAULT_ROLE,
        metadata={
            "description": "A role preset: speaker (default), viewer, observer, or one of "
            "ROLE_PRESETS; limited by the tenant JWT's roles claim.",
            "example": "viewer",
        },
    )

    @validates("participant_attributes")
    def check_attributes(self, value, **kwargs):
        """Attributes must fit LiveKit's 64 KiB limit."""
        reserved = sorted(key for key in value if key.startswith(RESERVED_PREFIX))
        if reserved:
            raise ValidationError(
                f"Attributes starting with {RESERVED_PREFIX!r} are the "
                f"service's own: {', '.join(reserved)}."
            )
        size = sum(_utf8_size(key) + _utf8_size(text) for key, text in value.items())
        if size > MAX_ATTRIBUTES_BYTES:
            raise ValidationError(
                f"Must be at most {MAX_ATTRIBUTES_BYTES} bytes in all, got {size}."
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
    server_url = fields.String(
        required=True,
        metadata={
            "description": "Same as livekit_url (LiveKit TokenSource).",
            "example": "ws://localhost:7880",
        },
    )
    participant_token = fields.String(
        required=True, metadata={"description": "Same as token (LiveKit TokenSource)."}
    )
    livekit_room_name = fields.String(
        metadata={"description": "With ROOM_NAMES=per-tenant: LiveKit's name for the room."}
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
    scope = fields.String(
        metadata={"description": "With scope_forbidden: the scope the bearer token lacks."}
    )


#: Track sources the mute and permissions routes take.
SOURCE_CHOICES = SOURCES  # roles.py's: what a role and the routes may name


class ParticipantSchema(Schema):
    """Body naming one participant of one room (`DELETE /livekit/participant`)."""

    class Meta:
        unknown = EXCLUDE

    room_name = LiveKitName(required=True, metadata={"example": "conversation-room-123"})
    participant_identity = LiveKitName(required=True, metadata={"example": "user-alice-456"})


class MuteSchema(ParticipantSchema):
    """Body of `POST /livekit/participant/mute`: one track, by `track_sid` or by `source`."""

    track_sid = fields.String(metadata={"example": "TR_AMkSoTzZbFDy"})
    source = fields.String(validate=validate.OneOf(SOURCE_CHOICES))
    muted = fields.Boolean(required=True, metadata={"example": True})

    @validates_schema
    def one_track(self, data, **kwargs):
        """Exactly one of track_sid and source names the track."""
        if ("track_sid" in data) == ("source" in data):
            raise ValidationError("Give exactly one of track_sid and source.", "track_sid")


class PermissionsSchema(ParticipantSchema):
    """Body of `POST /livekit/participant/permissions`: a `role`, or explicit grants."""

    role = fields.String(
        metadata={
            "description": "A role preset (speaker, viewer, observer, or one of ROLE_PRESETS)."
        }
    )
    can_publish = fields.Boolean()
    can_subscribe = fields.Boolean()
    can_publish_data = fields.Boolean()
    can_publish_sources = fields.List(fields.String(validate=validate.OneOf(SOURCE_CHOICES)))

    @validates_schema
    def role_or_grants(self, data, **kwargs):
        """A role alone, or at least one explicit grant."""
        grants = set(data) - {"room_name", "participant_identity", "role"}
        if "role" in data and grants:
            raise ValidationError("Give a role or explicit grants, not both.", "role")
        if "role" not in data and not grants:
            raise ValidationError("Give a role or at least one grant.", "role")


class RoomSummarySchema(Schema):
    """One room in `GET /livekit/rooms`."""

    name = fields.String(required=True)
    sid = fields.String(required=True)
    num_participants = fields.Integer(required=True)
    max_participants = fields.Integer(required=True)
    creation_time = fields.Integer(required=True, metadata={"description": "Epoch seconds."})


class TrackSchema(Schema):
    """One published track."""

    sid = fields.String(required=True)
    type = fields.Function(lambda track: models.TrackType.Name(track.type).lower())
    source = fields.Function(lambda track: models.TrackSource.Name(track.source).lower())
    muted = fields.Boolean(required=True)
    name = fields.String(required=True)


class PermissionSchema(Schema):
    """A participant's permissions."""

    can_publish = fields.Boolean()
    can_subscribe = fields.Boolean()
    can_publish_data = fields.Boolean()
    can_publish_sources = fields.Function(
        lambda permission: [
            models.TrackSource.Name(source).lower() for source in permission.can_publish_sources
        ]
    )
    hidden = fields.Boolean()


class ParticipantInfoSchema(Schema):
    """One participant and its tracks."""

    identity = fields.String(required=True)
    name = fields.String(required=True)
    state = fields.Function(lambda info: models.ParticipantInfo.State.Name(info.state).lower())
    joined_at = fields.Integer(required=True, metadata={"description": "Epoch seconds."})
    metadata = fields.String(required=True)
    attributes = fields.Function(lambda info: dict(info.attributes))
    permission = fields.Nested(PermissionSchema)
    tracks = fields.List(fields.Nested(TrackSchema))


class RoomDetailSchema(RoomSummarySchema):
    """One room and who is in it (`GET /livekit/rooms/{room_name}`)."""

    metadata = fields.String(required=True)
    participants = fields.List(fields.Nested(ParticipantInfoSchema))


class RoomUsageSchema(Schema):
    """One room name's usage over the period (`GET /livekit/usage`)."""

    room_name = fields.String(required=True, metadata={"description": "The tenant's own name."})
    participant_seconds = fields.Float(required=True)
    room_seconds = fields.Float(required=True)
    peak_participants = fields.Integer(required=True)
    participants = fields.Integer(required=True, metadata={"description": "Distinct identities."})


class UsageSchema(Schema):
    """The tenant's usage over a period (`GET /livekit/usage`)."""

    from_ = fields.String(required=True, data_key="from", metadata={"format": "date-time"})
    to = fields.String(required=True, metadata={"format": "date-time"})
    participant_seconds = fields.Float(required=True)
    room_seconds = fields.Float(required=True)
    rooms = fields.List(fields.Nested(RoomUsageSchema), required=True)


#: The longest description of a webhook endpoint, in UTF-8 bytes.
MAX_DESCRIPTION_BYTES = 256


class WebhookEndpointRequestSchema(Schema):
    """Body of `POST /livekit/webhook-endpoints`; fields not listed are ignored."""

    class Meta:
        unknown = EXCLUDE

    url = fields.String(
        required=True,
        validate=validate.Length(min=1, max=MAX_URL_LENGTH),
        metadata={
            "example": "https://example.com/hooks/livekit",
            "description": "https (http too with TENANT_WEBHOOKS_ALLOW_PRIVATE=true).",
        },
    )
    events = fields.List(
        fields.String(validate=validate.OneOf(EVENT_TYPES)),
        validate=validate.Length(min=1),
        metadata={"description": "Default: every event type."},
    )
    description = Utf8Text(MAX_DESCRIPTION_BYTES, load_default="")


class WebhookEndpointSchema(Schema):
    """One of the tenant's webhook endpoints (never with its secret)."""

    id = fields.String(required=True)
    url = fields.String(required=True)
    events = fields.List(fields.String(), required=True)
    description = fields.String(required=True)
    created_at = fields.Function(
        lambda endpoint: rfc3339(endpoint.created_at),
        metadata={"type": "string", "format": "date-time"},
    )
    status = fields.Function(
        lambda endpoint: "enabled" if endpoint.enabled else "disabled",
        metadata={
            "type": "string",
            "enum": ["enabled", "disabled"],
            "description": "disabled: no attempt until enabled again; its deliveries wait.",
        },
    )
    disabled_reason = fields.Function(
        lambda endpoint: endpoint.disabled_reason or None,
        metadata={"type": ["string", "null"]},
    )
    disabled_at = fields.Function(
        lambda endpoint: rfc3339(endpoint.disabled_at),
        metadata={"type": ["string", "null"], "format": "date-time"},
    )
    failing_since = fields.Function(
        lambda endpoint: rfc3339(endpoint.failing_since),
        metadata={
            "type": ["string", "null"],
            "format": "date-time",
            "description": "Since when every attempt failed (null after a success).",
        },
    )


class WebhookEndpointUpdateSchema(Schema):
    """Body of `PATCH /livekit/webhook-endpoints/{id}`."""

    class Meta:
        unknown = EXCLUDE

    enabled = fields.Boolean(
        required=True,
        truthy={True},
        falsy={False},
        metadata={"description": "true: attempts resume, what waited is sent oldest first."},
    )


class WebhookEndpointCreatedSchema(WebhookEndpointSchema):
    """A new endpoint, with its secret (shown only here)."""

    secret = fields.String(required=True, metadata={"example": "whsec_..."})


class WebhookDeliverySchema(Schema):
    """One delivery of one event to one endpoint."""

    id = fields.String(required=True, metadata={"description": "Also its webhook-id header."})
    endpoint_id = fields.String(required=True)
    event_id = fields.String(required=True)
    type = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(DELIVERY_STATUSES))
    attempts = fields.Integer(required=True)
    last_status_code = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    next_attempt_at = fields.Function(
        lambda delivery: rfc3339(delivery.next_attempt_at),
        allow_none=True,
        metadata={"type": ["string", "null"], "format": "date-time"},
    )
    created_at = fields.Function(
        lambda delivery: rfc3339(delivery.created_at),
        metadata={"type": "string", "format": "date-time"},
    )


class TenantLimitsSchema(Schema):
    """A tenant's limits as the operator sets them (`PATCH /admin/tenants/{tenant}`): each a
    whole number from 0, agents a list of names; `null` removes the override."""

    max_rooms = fields.Integer(allow_none=True)
    max_participants = fields.Integer(allow_none=True)
    max_webhook_endpoints = fields.Integer(allow_none=True)
    agents = fields.List(fields.String(), allow_none=True)


class TenantSchema(TenantLimitsSchema):
    """A tenant as the operator sees it (the admin API and `flask tenants`): its overrides
    (null: the deployment's default), what applies (`effective`), its status and reason, and
    its record's times (null: no record)."""

    id = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": ["active", "suspended"]})
    reason = fields.String(required=True)
    effective = fields.Nested(TenantLimitsSchema, required=True)
    created_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    updated_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    rooms_ended = fields.Integer(metadata={"description": "(suspend) the live rooms it ended"})


class AuditEntrySchema(Schema):
    """One entry of the audit trail: who (`actor` tenant or operator, the bearer's `subject`
    and bound `identity`), what (`action` on `target`), when, and the `outcome` (ok or the
    error code)."""

    id = fields.String(required=True)
    at = fields.String(required=True, metadata={"format": "date-time"})
    tenant = fields.String(required=True)
    actor = fields.String(required=True, metadata={"enum": ["tenant", "operator"]})
    subject = fields.String(required=True)
    identity = fields.String(required=True)
    action = fields.String(required=True)
    target = fields.String(required=True)
    outcome = fields.String(required=True)
    detail = fields.Dict(required=True)
