"""WSGI entry point from a checkout: `gunicorn app:app` (settings from the environment); the
package's own is `tokensvc serve`."""

from tokensvc.processes.wsgi import app

__all__ = ["app"]
