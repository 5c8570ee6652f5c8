"""The tenant's console: server-rendered pages of its calls, usage, webhooks and audit trail,
opened with a one-use ticket from `POST /livekit/console-sessions` (sessions.py), its routes in
a table of their own (routes.py), its views (views.py), templates and static files (the vendored
htmx and uPlot among them: scripts/console-assets copies them from npm's packages). And the
operator's console (operator.py, `/admin/console`, behind ADMIN_TOKEN)."""

from .operator import bp as operator_bp
from .routes import CONSOLE_ROUTES, OPERATOR_ROUTES, PAGES
from .views import bp

__all__ = ["CONSOLE_ROUTES", "OPERATOR_ROUTES", "PAGES", "bp", "operator_bp"]
