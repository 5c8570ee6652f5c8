"""A host Flask app with its own routes that mounts tokensvc under /api/rtc.

Run it after `make install`, with a LiveKit on 127.0.0.1:7880: the one `make run` starts, whose
development key pair is the default below (LIVEKIT_URL and the other settings in the environment
override the defaults, as they do for the standalone service):

    .venv/bin/flask --app examples/embed/host.py run --port 5000
    .venv/bin/flask --app examples/embed/host.py tenant-token --tenant acme
"""

import logging

from flask import Flask, request

from tokensvc import TokenService, app_config, environ_config
from tokensvc.logs import ServiceFormatter

#: The host's own development key for tenant tokens; a real host uses its auth service's key.
DEVELOPMENT_TENANT_SECRET = "host-development-tenant-secret-change-me-0123456789"
#: The development LiveKit key pair of `make run` (scripts/dev): public, for development only.
DEVELOPMENT_LIVEKIT_KEY = "devkey"
DEVELOPMENT_LIVEKIT_SECRET = "development-livekit-secret-change-me"
#: The key that seals tenants' webhook secrets, as `make run` sets it: for development only
#: (a real host sets its own: openssl rand -base64 32).
DEVELOPMENT_WEBHOOK_SECRETS_KEY = "ZGV2ZWxvcG1lbnQtd2ViaG9vay1rZXktY2hhbmdlLW0="


def create_app(config=None) -> Flask:
    """The host site: its own config and pages, plus the token service under /api/rtc."""
    app = Flask(__name__)
    # The service's settings are its TOKENSVC_* keys, clear of the host's own.
    app.config.update(
        TOKENSVC_LIVEKIT_URL="ws://127.0.0.1:7880",
        TOKENSVC_LIVEKIT_API_KEY=DEVELOPMENT_LIVEKIT_KEY,
        TOKENSVC_LIVEKIT_API_SECRET=DEVELOPMENT_LIVEKIT_SECRET,
        TOKENSVC_AUTH_JWT_SECRET=DEVELOPMENT_TENANT_SECRET,
        TOKENSVC_TENANT_WEBHOOK_SECRETS_KEY=DEVELOPMENT_WEBHOOK_SECRETS_KEY,
    )
    app.config.update(app_config(environ_config()))  # LIVEKIT_URL -> TOKENSVC_LIVEKIT_URL, ...
    app.config.update(app_config(config or {}))
    # The host decides where logs go. Its own lines: plain text; tokensvc's (the access record
    # of each request is INFO on "tokensvc.access"): one JSON line each, from its formatter.
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    service_log = logging.getLogger("tokensvc")
    if not any(isinstance(h, logging.StreamHandler) for h in service_log.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(ServiceFormatter("json"))
        service_log.addHandler(handler)
        service_log.propagate = False

    @app.get("/")
    def home():
        """The host's own page."""
        return "<h1>Host site</h1>"

    @app.post("/upload")
    def upload():
        """A host route with no body limit of tokensvc's."""
        return {"received": len(request.get_data())}

    TokenService(app, url_prefix="/api/rtc")
    return app
