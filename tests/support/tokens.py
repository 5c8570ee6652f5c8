"""Keys, tenant tokens and checks of minted tokens, shared by the tests, the soak and the bench."""

import asyncio
import base64
import hashlib
import json
import re
import secrets
import time

import jwt
from livekit import api

LIVEKIT_KEY = "test-key"


LIVEKIT_SECRET = "test-livekit-secret-at-least-32-bytes-long"


TENANT_SECRET = "test-tenant-secret-long-enough-for-hs512-" + "0123456789abcdef" * 2
#: The key that seals tenants' webhook secrets in every test's storage (32 bytes in base64).
WEBHOOK_SECRETS_KEY = "dGVzdHMtd2ViaG9vay1zZWNyZXRzLWtleS0zMmJ5dGU="


#: The operator's bearer token (ADMIN_TOKEN) in tests, and its Authorization header.
ADMIN_TOKEN = "operator-token-" + "0123456789abcdef" * 2
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

BODY = {"room_name": "room-1", "participant_name": "Alice Smith", "participant_identity": "alice"}


class Tenants:
    """Mints tenant JWTs the way the authentication service would."""

    def token(self, tenant="acme", secret=TENANT_SECRET, algorithm="HS256", ttl=300, **claims):
        """Return a signed tenant token (`sub` = tenant unless overridden)."""
        now = int(time.time())
        payload = {"sub": tenant, "iat": now, "exp": now + ttl, **claims}
        return jwt.encode({k: v for k, v in payload.items() if v is not None}, secret, algorithm)

    def headers(self, tenant="acme", **kwargs):
        """Return an Authorization header for `tenant`."""
        return {"Authorization": f"Bearer {self.token(tenant, **kwargs)}"}

    def ask(
        self, client, tenant="acme", room=BODY["room_name"], identity=BODY["participant_identity"]
    ):
        """POST a token request for `room` as `tenant` (anonymous when None) through a Flask
        test client; return the response."""
        headers = self.headers(tenant) if tenant is not None else {}
        body = {**BODY, "room_name": room, "participant_identity": identity}
        return client.post("/livekit/token", json=body, headers=headers)


def verify_token(token: str):
    """Decode a minted token with LiveKit's own verifier; return (claims, raw payload)."""
    claims = api.TokenVerifier(LIVEKIT_KEY, LIVEKIT_SECRET).verify(token)
    raw = jwt.decode(token, LIVEKIT_SECRET, algorithms=["HS256"], issuer=LIVEKIT_KEY)
    return claims, raw


JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")


SECRETS = (LIVEKIT_SECRET, TENANT_SECRET, "Bearer ey")


def assert_no_secrets(text: str) -> None:
    """No JWT (participant or tenant), API secret or bearer value appears in `text`."""
    assert not JWT.search(text), f"a JWT leaked: {JWT.search(text).group()[:40]}..."
    for secret in SECRETS:
        assert secret not in text, f"a secret leaked: {secret[:12]}..."


GRANTS = {"roomJoin", "room", "canPublish", "canSubscribe", "canPublishData"}


def audit_token(token: str, room: str, identity: str, ttl: int, livekit) -> dict:
    """Check a minted token is least-privilege and useless on the server API; return its payload."""
    claims, raw = verify_token(token)
    assert set(raw["video"]) == GRANTS
    assert raw["video"]["room"] == room and raw["video"]["roomJoin"] is True
    assert claims.identity == identity
    assert raw["exp"] - raw["nbf"] == ttl
    assert set(raw) <= {
        "name",
        "video",
        "roomConfig",
        "sub",
        "iss",
        "nbf",
        "exp",
        "metadata",
        "attributes",
    }

    async def try_server_api():
        refused = 0
        lkapi = api.LiveKitAPI.with_token(token, livekit.ws_url, failover=False)
        calls = (
            lambda: lkapi.room.list_rooms(api.ListRoomsRequest()),
            lambda: lkapi.room.create_room(api.CreateRoomRequest(name=room)),
            lambda: lkapi.room.delete_room(api.DeleteRoomRequest(room=room)),
            lambda: lkapi.room.update_room_metadata(
                api.UpdateRoomMetadataRequest(room=room, metadata='{"auth_id":"mallory"}')
            ),
        )
        try:
            for call in calls:
                try:
                    await call()
                except api.ServerError as error:
                    refused += error.status == 401
        finally:
            await lkapi.aclose()
        return refused

    assert asyncio.run(try_server_api()) == 4
    return raw


def signed_webhook(
    kind: str,
    room: str,
    metadata: str = "",
    event_id: str | None = None,
    age: int = 0,
    participant: dict | None = None,
    room_sid: str | None = None,
    created_at: int | None = None,
    track: dict | None = None,
) -> tuple[str, dict]:
    """(body, headers) of a LiveKit webhook event signed as LiveKit signs it: `kind` for `room`
    (its sid `RM_<room>` unless given; with a participant and a track when given), created
    `age` seconds ago (or at `created_at`, epoch seconds), with a fresh id unless one is given."""
    created = created_at if created_at is not None else int(time.time()) - age
    event = {
        "event": kind,
        "id": event_id or "EV_" + secrets.token_hex(6),
        "createdAt": str(created),
        "room": {"name": room, "metadata": metadata, "sid": room_sid or f"RM_{room}"},
    }
    if participant is not None:
        event["participant"] = participant
    if track is not None:
        event["track"] = track
    body = json.dumps(event)
    return body, webhook_headers(body)


def webhook_headers(body: str) -> dict:
    """The headers LiveKit sends a webhook `body` with: its signature by LiveKit's key pair."""
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    now = int(time.time())
    auth = jwt.encode(
        {"iss": LIVEKIT_KEY, "sha256": digest, "nbf": now - 10, "exp": now + 300}, LIVEKIT_SECRET
    )
    return {"Content-Type": "application/webhook+json", "Authorization": auth}
