"""A host Flask app with its own routes that mounts tokensvc under /api/rtc."""

from flask import Flask, request

from tokensvc import TokenService


def create_host_app(config=None) -> Flask:
    """The host site: its own config and pages, plus the token service under /api/rtc."""
    app = Flask(__name__)
    app.config.update(
        LIVEKIT_URL="ws://127.0.0.1:7880",
        LIVEKIT_API_KEY="devkey",
        LIVEKIT_API_SECRET="secret",
    )
    app.config.update(config or {})

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
