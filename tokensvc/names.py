"""Room names: shared (the request's name is LiveKit's) or per tenant (`ROOM_NAMES=per-tenant`).

Per tenant, the LiveKit room for (tenant, room_name) is named

    <n>:<tenant>:<room_name>      n = the tenant id's length in UTF-8 bytes, in decimal

and the anonymous namespace's room for room_name is `~:<room_name>`. The encoding is injective:
a reader takes the digits up to the first `:`, then exactly n bytes of tenant, then one `:`,
and the rest is the room name, so one LiveKit name decodes to exactly one pair whatever either
part holds (`:` included); and an anonymous name starts with `~`, never a digit. It is readable
(`4:acme:standup`) and stable: these rules and the test vectors in tests/test_names.py are the
format, version 1. A pair whose encoding is over LiveKit's 256 bytes is refused (400).
"""

from dataclasses import dataclass

#: LiveKit's limit for a room name, in UTF-8 bytes.
MAX_LIVEKIT_NAME_BYTES = 256
ANONYMOUS_PREFIX = "~:"


class NameTooLong(ValueError):
    """The encoded LiveKit name would be over LiveKit's limit."""


@dataclass(frozen=True)
class RoomNames:
    """Translates between the caller's room names and LiveKit's."""

    per_tenant: bool = False

    def livekit_name(self, holder: str, room_name: str) -> str:
        """LiveKit's name for `room_name` of `holder` ("" for the anonymous namespace)."""
        if not self.per_tenant:
            return room_name
        name = encode(holder, room_name)
        if len(name.encode("utf-8")) > MAX_LIVEKIT_NAME_BYTES:
            raise NameTooLong(
                f"room_name is too long for this tenant: LiveKit's name for it "
                f"would be over {MAX_LIVEKIT_NAME_BYTES} bytes"
            )
        return name

    def own_name(self, holder: str, livekit_name: str) -> str | None:
        """The caller's name for a LiveKit room name, or None when it is not in its namespace."""
        if not self.per_tenant:
            return livekit_name
        try:
            decoded = decode(livekit_name)
        except ValueError:
            return None
        return decoded[1] if decoded[0] == holder else None


def encode(holder: str, room_name: str) -> str:
    """The per-tenant LiveKit name of (holder, room_name); holder "" is anonymous."""
    if holder == "":
        return ANONYMOUS_PREFIX + room_name
    return f"{len(holder.encode('utf-8'))}:{holder}:{room_name}"


def decode(livekit_name: str) -> tuple[str, str]:
    """(holder, room_name) of a per-tenant LiveKit name; ValueError for any other name."""
    if livekit_name.startswith(ANONYMOUS_PREFIX):
        return "", livekit_name[len(ANONYMOUS_PREFIX) :]
    digits, colon, rest = livekit_name.partition(":")
    if not colon or not digits.isascii() or not digits.isdigit() or digits != str(int(digits)):
        raise ValueError("not a per-tenant room name")
    size, data = int(digits), rest.encode("utf-8")
    if size == 0 or len(data) <= size or data[size : size + 1] != b":":
        raise ValueError("not a per-tenant room name")
    try:
        holder = data[:size].decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("not a per-tenant room name") from None
    return holder, data[size + 1 :].decode("utf-8")
