"""Where an app keeps the service's state: `app.extensions["tokensvc"]`, read through
`service_state()` alone."""

from flask import current_app

EXTENSION_KEY = "tokensvc"


def service_state(app=None):
    """The `ServiceState` the extension keeps on `app` (the current app by default)."""
    return (app or current_app).extensions[EXTENSION_KEY]
