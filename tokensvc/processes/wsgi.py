"""The service as gunicorn runs it (`tokensvc serve`): settings from the environment; without
LiveKit settings it refuses to start (one line, exit 4)."""

from ..config import ConfigError, exit_on
from ..factory import create_app

try:
    app = create_app(server=True)
except ConfigError as exc:
    exit_on(exc)
