"""Where an app keeps the service's state: `app.extensions["tokensvc"]`, read through
`service_state()` alone; and the other name the service takes in a host's app, its converter of
room names in paths."""

from flask import current_app

EXTENSION_KEY = "tokensvc"
#: The name of the service's converter of room names in an app's `url_map` (http/routes.py;
#: letters only, as tools that read rules expect of a converter's name).
ROOM_NAME_CONVERTER = "tokensvcroom"


def service_state(app=None):
    """The `ServiceState` the extension keeps on `app` (the current app by default)."""
    return (app or current_app).extensions[EXTENSION_KEY]
