"""tokensvc: LiveKit access tokens for one room, with the authenticated tenant as its owner.

`create_app()` builds the standalone service; `TokenService(app)` mounts it in a host app. Both
are imported on first use, so `tokensvc.config` loads without Flask, LiveKit or prometheus_client
(gunicorn.conf.py reads its settings before prometheus_client may be imported).
"""

import logging
from importlib import import_module

__all__ = ["ConfigError", "TokenService", "create_app", "environ_config", "load_settings"]

#: Where each public name lives.
_HOMES = {
    "ConfigError": "config",
    "environ_config": "config",
    "load_settings": "config",
    "TokenService": "extension",
    "create_app": "factory",
}

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name):
    """Import a public name from its module when it is first asked for."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_HOMES[name]}", __name__), name)
