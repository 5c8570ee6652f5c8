"""WSGI entry point: `gunicorn app:app` (settings from the environment)."""

from tokensvc import ConfigError, create_app
from tokensvc.config import exit_on

try:
    app = create_app(server=True)  # without LiveKit settings it refuses to start
except ConfigError as exc:
    exit_on(exc)
