"""Participant tokens: the payload livekit-api's `AccessToken` builds, built directly, and signed
with PyJWT's HS256 (`HMACAlgorithm`), the LiveKit secret's checks made once rather than on every
token.

`tests/test_minting.py` checks that `Minter` gives the payload livekit-api gives (key order
included), and a token byte for byte `jwt.encode`'s that livekit-api's own verifier accepts.
"""

import dataclasses
import json
import time
import warnings
from collections.abc import Mapping

from google.protobuf.json_format import MessageToDict
from jwt.algorithms import HMACAlgorithm
from jwt.api_jws import PyJWS
from jwt.utils import base64url_encode
from jwt.warnings import InsecureKeyLengthWarning
from livekit import api
from livekit.api.access_token import snake_to_lower_camel

from ..config import Settings
from ..roles import ROLE_ATTRIBUTE, TENANT_ATTRIBUTE, video_grants

ALGORITHM = "HS256"  # what livekit-api signs with, and what LiveKit expects
PLAIN_CONFIGS_MAX = 4096


#: The header segment PyJWT writes for an HS256 token (made once, by PyJWT).
HEADER_SEGMENT = PyJWS().encode(b"", "header-only-" * 3, ALGORITHM).partition(".")[0].encode()
#: The claims serialised as PyJWT serialises them (`json.dumps` with compact separators), with one
#: encoder made once.
encode_claims = json.JSONEncoder(separators=(",", ":")).encode


def _camel_dict(items) -> dict:
    """A dataclass's fields as livekit-api serialises them: lowerCamel keys, None and "" out."""
    return {snake_to_lower_camel(k): v for k, v in items if v is not None and v != ""}


class Minter:
    """Builds and signs join tokens for one LiveKit key; each role's video grant is built once
    (with `room` in its place), and the room's name put in per token."""

    def __init__(self, settings: Settings, room_options: Mapping):
        """Sign with the settings' LiveKit key; `room_options` go in every room configuration."""
        self.api_key = settings.livekit_api_key
        self.api_secret = settings.livekit_api_secret or ""
        self.room_options = dict(room_options)
        self.hmac = HMACAlgorithm(HMACAlgorithm.SHA256)
        self.prepared: tuple[str, bytes] | None = None  # (secret, key as PyJWT prepares it)
        self.plain_configs: dict = {}  # room metadata -> its room configuration claim
        self.videos = {
            role: dataclasses.asdict(
                api.VideoGrants(room_join=True, room="-", **video_grants(preset)),
                dict_factory=_camel_dict,
            )
            for role, preset in settings.role_presets.items()
        }

    def payload(
        self,
        *,
        identity: str,
        name: str,
        metadata: str,
        attributes: Mapping,
        role: str,
        room: str,
        tenant: str | None,
        room_metadata: str | None,
        agents=(),
        ttl: int,
        now: int | None = None,
    ) -> dict:
        """The claims livekit-api's AccessToken would sign for this participant, in its order."""
        claims: dict = {}
        if name:
            claims["name"] = name
        if metadata:
            claims["metadata"] = metadata
        video = self.videos[role].copy()
        video["room"] = room
        claims["video"] = video
        claims["attributes"] = {**attributes, ROLE_ATTRIBUTE: role}
        if tenant is not None:
            claims["attributes"][TENANT_ATTRIBUTE] = tenant
        if agents:
            config = self.room_config(room_metadata, agents)
        elif room_metadata or self.room_options:
            config = self.plain_room_config(room_metadata or "")
        else:
            config = None
        if config:
            claims["roomConfig"] = config
        issued = int(time.time()) if now is None else now
        claims.update({"sub": identity, "iss": self.api_key, "nbf": issued, "exp": issued + ttl})
        return claims

    def room_config(self, room_metadata: str | None, agents=()) -> dict | None:
        """The room configuration's claim (None when it would be empty)."""
        config = api.RoomConfiguration(
            metadata=room_metadata or "", agents=agents, **self.room_options
        )
        return MessageToDict(config) if config.ByteSize() else None

    def plain_room_config(self, room_metadata: str) -> dict | None:
        """`room_config` without agents, remembered per metadata (the owner's, mostly)."""
        found = self.plain_configs.get(room_metadata, False)
        if found is False:
            if len(self.plain_configs) >= PLAIN_CONFIGS_MAX:
                self.plain_configs.clear()
            found = self.plain_configs[room_metadata] = self.room_config(room_metadata)
        return found

    def sign(self, claims: dict) -> str:
        """The signed JWT, byte for byte PyJWT's `jwt.encode(claims, secret, "HS256")`: PyJWT's
        header, claims and HMAC, with PyJWT's checks of the secret made once (`key`)."""
        signed = HEADER_SEGMENT + b"." + base64url_encode(encode_claims(claims).encode())
        return (signed + b"." + base64url_encode(self.hmac.sign(signed, self.key()))).decode()

    def key(self) -> bytes:
        """The secret as PyJWT prepares it, prepared again only for another secret: refused as
        PyJWT refuses it (empty, a PEM, SSH, DER or JWK key), and warned of as PyJWT warns when
        it is shorter than SHA-256's 32 bytes (DEV_MODE allows that)."""
        if self.prepared is None or self.prepared[0] != self.api_secret:
            key = self.hmac.prepare_key(self.api_secret)
            too_short = self.hmac.check_key_length(key)
            if too_short:
                warnings.warn(too_short, InsecureKeyLengthWarning, stacklevel=3)
            self.prepared = (self.api_secret, key)
        return self.prepared[1]
