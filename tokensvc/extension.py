"""The Flask extension: `TokenService(app)` or `TokenService().init_app(app)` mounts the service."""

import logging
import os
from dataclasses import dataclass

from flask import Flask
from flask_cors import CORS
from livekit import api

from .auth import TenantVerifier, tenant_token_command
from .config import Settings, load_settings
from .context import EXTENSION_KEY
from .health import Readiness
from .holds import open_holds
from .health import bp as health_bp
from .metrics import Instruments, instruments
from .metrics import bp as metrics_bp
from .openapi import bp as openapi_bp
from .moderation import Moderator
from .ratelimit import RateLimits
from .service import TokenIssuer
from .views import bp

#: The embedded ownership record, in the app's instance folder unless STORAGE_URL names another.
DEFAULT_STORAGE_FILE = "tokensvc.sqlite3"

log = logging.getLogger(__name__)


@dataclass
class ServiceState:
    """What one app's routes need, kept in `app.extensions["tokensvc"]`."""

    settings: Settings
    verifier: TenantVerifier | None
    issuer: TokenIssuer
    readiness: Readiness
    rate_limits: RateLimits | None = None
    metrics: Instruments | None = None
    moderator: Moderator | None = None
    webhooks: api.WebhookReceiver | None = None

    def close(self) -> None:
        """Close the LiveKit client's pooled connections and the storage's."""
        self.issuer.close()


class TokenService:
    """Mounts the token blueprint on an app, configured from `app.config`."""

    def __init__(self, app: Flask | None = None, url_prefix: str | None = None):
        """Initialise at once when given an app (otherwise call `init_app` later)."""
        self.url_prefix = url_prefix
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, url_prefix: str | None = None) -> ServiceState:
        """Validate the settings in `app.config`, register the blueprint, keep state on the app."""
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError("tokensvc is already initialised on this app")
        settings = load_settings(app.config)
        metrics = instruments() if settings.metrics_enabled else None
        rate_limits = RateLimits(settings) if settings.rate_limited else None
        verifier = None
        if settings.auth_configured:
            verifier = TenantVerifier(settings, metrics and metrics.jwks_fetch)
        holds = None
        if settings.auth_configured:
            url = settings.storage_url or "sqlite:///" + os.path.join(
                app.instance_path, DEFAULT_STORAGE_FILE)
            holds = open_holds(url, settings.storage_timeout, metrics and metrics.storage_call)
        issuer = TokenIssuer(settings, room_creations=rate_limits,
                             observe_call=metrics and metrics.livekit_call, holds=holds)
        _warn_if_anonymous(settings)
        webhooks = None
        if settings.livekit_configured:
            webhooks = api.WebhookReceiver(
                api.TokenVerifier(settings.livekit_api_key, settings.livekit_api_secret))
        state = ServiceState(settings, verifier, issuer, Readiness(issuer), rate_limits, metrics,
                             Moderator(issuer), webhooks)
        app.extensions[EXTENSION_KEY] = state
        prefix = (url_prefix or self.url_prefix or "").rstrip("/")
        app.register_blueprint(bp, url_prefix=prefix or None)
        app.register_blueprint(health_bp, url_prefix=prefix or None)
        app.register_blueprint(openapi_bp, url_prefix=prefix or None)
        if metrics is not None:
            app.register_blueprint(metrics_bp, url_prefix=prefix or None)
        app.cli.add_command(tenant_token_command)
        if settings.cors_allowed_origins:
            CORS(
                app,
                resources={prefix + "/*": {}},
                origins=list(settings.cors_allowed_origins),
                allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
                expose_headers=["X-Request-ID"],
                methods=["GET", "HEAD", "POST", "DELETE", "OPTIONS"],
                max_age=600,
            )
        return state


def _warn_if_anonymous(settings: Settings) -> None:
    """One start-up line whenever tokens can be had without a tenant bearer token."""
    if not settings.auth_configured:
        log.warning("starting: no tenant key is configured (AUTH_JWT_SECRET, AUTH_JWT_PUBLIC_KEY, "
                    "AUTH_JWKS_URL): anyone who reaches the service gets tokens for any room")
    elif not settings.auth_required:
        log.warning("starting: AUTH_REQUIRED=false: requests without a bearer token get anonymous "
                    "tokens, for room names no tenant holds")
