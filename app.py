"""WSGI entry point: `gunicorn app:app` (settings from the environment)."""

import sys

from tokensvc import ConfigError, create_app

try:
    app = create_app()
except ConfigError as exc:
    # One clear line, then exit 4: gunicorn reads it as "app failed to load" and stops
    # instead of restarting workers in a loop.
    print(f"tokensvc: configuration error: {exc}", file=sys.stderr, flush=True)
    sys.exit(4)
