"""Participant roles: named presets of LiveKit's participant grants (no Flask).

A token request may name a `role` (default `speaker`); the token then carries exactly that
preset's grants and nothing else. `ROLE_PRESETS` (JSON: name -> grants) adds presets or narrows
the built-in ones, drawn only from the participant grants below; a role never grants
`roomAdmin`, `roomCreate`, `roomList` or `roomRecord`. A grant a preset leaves out is off.

The role and the tenant ride in the token as participant attributes in the reserved `tokensvc.`
namespace, which clients may not set and (without `canUpdateOwnMetadata`) participants cannot
change, so the management routes and webhooks can tell who a participant is.
"""

import json

#: The participant grants a preset may set: its JSON name -> `VideoGrants` field.
GRANTS = {
    "canPublish": "can_publish",
    "canSubscribe": "can_subscribe",
    "canPublishData": "can_publish_data",
    "canPublishSources": "can_publish_sources",
    "canUpdateOwnMetadata": "can_update_own_metadata",
    "hidden": "hidden",
}
#: What `canPublishSources` may list.
SOURCES = ("camera", "microphone", "screen_share", "screen_share_audio")
#: The built-in presets.
BUILT_IN = {
    "speaker": {"canPublish": True, "canSubscribe": True, "canPublishData": True},
    "viewer": {"canPublish": False, "canSubscribe": True, "canPublishData": True},
    "observer": {
        "canPublish": False,
        "canSubscribe": True,
        "canPublishData": False,
        "hidden": True,
    },
}
DEFAULT_ROLE = "speaker"
#: Participant attributes the service sets and clients may not.
RESERVED_PREFIX = "tokensvc."
ROLE_ATTRIBUTE = RESERVED_PREFIX + "role"
TENANT_ATTRIBUTE = RESERVED_PREFIX + "tenant"


def load_presets(text: str | None) -> dict:
    """The built-in presets overridden and extended by ROLE_PRESETS (JSON); ValueError saying
    what is wrong with it."""
    presets = {name: dict(grants) for name, grants in BUILT_IN.items()}
    if not text:
        return presets
    try:
        document = json.loads(text)
    except ValueError:
        raise ValueError("expected a JSON object of role name to grants") from None
    if not isinstance(document, dict):
        raise ValueError("expected a JSON object of role name to grants")
    for name, grants in document.items():
        if not name.strip() or not isinstance(grants, dict):
            raise ValueError(f"role {name!r}: expected a non-empty name and an object of grants")
        unknown = sorted(set(grants) - set(GRANTS))
        if unknown:
            raise ValueError(
                f"role {name!r}: {', '.join(unknown)} is not a participant grant "
                f"(allowed: {', '.join(GRANTS)})"
            )
        for grant, value in grants.items():
            if grant == "canPublishSources":
                if (
                    not isinstance(value, list)
                    or not set(value) <= set(SOURCES)
                    or not all(isinstance(source, str) for source in value)
                ):
                    raise ValueError(
                        f"role {name!r}: canPublishSources lists sources of {', '.join(SOURCES)}"
                    )
            elif not isinstance(value, bool):
                raise ValueError(f"role {name!r}: {grant} must be true or false")
        presets[name] = dict(grants)
    return presets


def video_grants(preset: dict) -> dict:
    """A preset as `VideoGrants` keyword arguments: every grant it leaves out is off."""
    grants = {field: False for field in ("can_publish", "can_subscribe", "can_publish_data")}
    for name, value in preset.items():
        grants[GRANTS[name]] = value
    return grants


def permission(preset: dict) -> dict:
    """A preset as `ParticipantPermission` keyword arguments (applied live): every grant a role
    governs, so applying it replaces them all (`can_publish_sources` empty: every source)."""
    fields = video_grants(preset)
    fields["can_update_metadata"] = fields.pop("can_update_own_metadata", False)
    fields.setdefault("hidden", False)
    fields.setdefault("can_publish_sources", [])
    return fields


def grants_beyond(grants: dict, presets: dict, roles) -> list[str]:
    """The names of the `grants` (ParticipantPermission fields: true/false, or source names)
    that no preset of `roles` gives: the union of the roles' grants caps what may be set.
    Turning a grant off is always within it; sources are a publishing grant (none listed: every
    source), within it when a role publishes them all or every one listed."""
    allowed = [permission(presets[role]) for role in roles if role in presets]
    beyond = []
    for name, value in grants.items():
        if name == "can_publish_sources":
            if not any(
                role["can_publish"] and _covers(role["can_publish_sources"], value)
                for role in allowed
            ):
                beyond.append(name)
        elif value is True and not any(role.get(name) is True for role in allowed):
            beyond.append(name)
    return beyond


def _covers(allowed_sources: list, wanted: list) -> bool:
    """Whether a role that publishes `allowed_sources` (empty: every one) covers `wanted`."""
    return not allowed_sources or (bool(wanted) and set(wanted) <= set(allowed_sources))
