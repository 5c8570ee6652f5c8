"""The standalone service: `create_app()` builds a Flask app around the extension, with its
logging, ProxyFix and JSON errors for every route."""

import logging

from flask import Flask
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from .config import (
    ConfigError,
    app_config,
    environ_config,
    from_app_config,
    load_settings,
    require_livekit,
)
from .errors import http_error_response
from .extension import TokenService, check_storage_at_start, render_unexpected_error
from .logs import ServiceFormatter

log = logging.getLogger("tokensvc")


def create_app(config=None, *, server: bool = False) -> Flask:
    """Build the standalone service: settings from the environment, overridden by `config`;
    as the `server` (app.py, what gunicorn runs), refuse to start without LiveKit."""
    app = Flask(__name__)
    # `//` in a path is a 404 like any unknown path, not a redirect built from the Host header.
    app.url_map.merge_slashes = False
    app.config.from_mapping(app_config(environ_config()))
    if config:
        app.config.from_mapping(app_config(config))
    # The log is set up before the extension starts, so that its start-up warnings are lines of
    # the log too; a server without LiveKit stops with one line (after any error the extension
    # finds first), its warnings unsaid.
    early = load_settings(from_app_config(app.config))
    missing_livekit = None
    if server:
        try:
            require_livekit(early)
        except ConfigError as exc:
            missing_livekit = exc
    if missing_livekit is None:
        _configure_logging(early.log_level, early.log_format)
    state = TokenService().init_app(app)
    settings = state.settings
    if missing_livekit is not None:
        state.close()
        raise missing_livekit
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length
    _log_livekit_target(state.issuer)
    if server:
        check_storage_at_start(state)
    if settings.proxy_fix:
        hops = settings.proxy_fix
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops
        )
    app.register_error_handler(HTTPException, http_error_response)
    app.register_error_handler(Exception, render_unexpected_error)
    return app


def _configure_logging(level: str, style: str) -> None:
    """Send the service's logs to stderr, one LOG_FORMAT line each, unless the host configured
    them."""
    logger = logging.getLogger("tokensvc")  # the package's logger: every module's parent
    logger.setLevel(level)
    if not any(not isinstance(h, logging.NullHandler) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(ServiceFormatter(style))
        logger.addHandler(handler)
        # Our lines name no caller, thread or process: logging need not look them up for every
        # record (the Logging HOWTO's "Optimization").
        logging._srcfile = None
        logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
        # Python warnings (PyJWT's for a short LiveKit secret, say) as LOG_FORMAT lines too.
        logging.captureWarnings(True)
        warnings_logger = logging.getLogger("py.warnings")
        if not warnings_logger.handlers:
            warnings_logger.addHandler(handler)
            warnings_logger.propagate = False


def _log_livekit_target(issuer) -> None:
    """One start-up line: which LiveKit the service will call, or that none is configured."""
    if issuer.settings.dev_mode:
        log.warning(
            "starting: DEV_MODE is on: secrets shorter than 32 bytes are accepted; "
            "never in production"
        )
    if issuer.settings.livekit_configured:
        log.info("starting: LiveKit server API at %s", issuer.rooms.host)
    else:
        log.warning(
            "starting: LiveKit is not configured (LIVEKIT_URL, LIVEKIT_API_KEY, "
            "LIVEKIT_API_SECRET); the token route answers 500 livekit_not_configured"
        )
