"""The tenant's console: server-rendered pages of its calls, usage and webhooks, opened with a
one-use ticket from `POST /livekit/console-sessions` (sessions.py), its routes in a table of
their own (routes.py), its views (views.py), templates and static files (the vendored htmx and
uPlot among them: scripts/console-assets copies them from npm's packages)."""

from .routes import CONSOLE_ROUTES, PAGES
from .views import bp

__all__ = ["CONSOLE_ROUTES", "PAGES", "bp"]
