"""`POST /livekit/webhook`: LiveKit's signed events, which keep the ownership record true. No
tenant's bearer token: LiveKit signs its own requests."""

from flask import g, request

from ..context import service_state
from ..errors import Unauthorized


def livekit_webhook():
    """LiveKit's signed webhook events keep the ownership record true (`Ownership.on_event`)."""
    state = service_state()
    state.issuer.require_livekit()
    body = request.get_data(as_text=True)
    try:
        event = state.webhooks.receive(body, request.headers.get("Authorization", ""))
    except Exception:  # a bad or expired signature, a hash mismatch, or garbage alike
        raise Unauthorized("the webhook's signature does not verify") from None
    g.room = event.room.name or None
    if state.issuer.ownership is not None:
        state.issuer.ownership.on_event(event)
    return {"status": "received"}
