"""The Flask extension: `TokenService(app)` or `TokenService().init_app(app)` mounts the service:
one parent blueprint, "tokensvc", with every route of the service nested in it."""

import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, current_app, request
from flask_cors import CORS
from livekit import api
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, default_exceptions
from werkzeug.routing import RequestRedirect, Rule

from .auth import TenantVerifier, tenant_token_command
from .commands import COMMANDS
from .config import ConfigError, Settings, from_app_config, load_settings
from .console import bp as console_bp
from .console import operator_bp
from .context import EXTENSION_KEY, service_state
from .errors import StorageUnavailable, error_response, http_error_response
from .http import routes
from .http.health import Readiness
from .http.metrics import Instruments, instruments
from .logs import finish_request, start_request
from .moderation import Moderator
from .ratelimit import RateLimits
from .service import TokenIssuer
from .storage import (
    ObservedHolds,
    open_audit,
    open_console_tickets,
    open_holds,
    open_reconcile,
    open_tenants,
    open_usage,
    open_webhook_store,
)
from .tenants import Tenants
from .usage import DAY_MS
from .webhooks import TenantWebhooks

#: The embedded ownership record, in the app's instance folder unless STORAGE_URL names another.
DEFAULT_STORAGE_FILE = "tokensvc.sqlite3"

log = logging.getLogger(__name__)

#: The parent of the service's blueprints (api: token and management routes; health; openapi;
#: metrics; console: the tenant's console, and operator: the operator's, their routes in
#: tokensvc/console/routes.py), so its endpoint names ("tokensvc.api.issue_token") cannot
#: collide with a host's.
service_bp = Blueprint("tokensvc", __name__)
for child in (*routes.BLUEPRINTS.values(), console_bp, operator_bp):
    service_bp.register_blueprint(child)
service_bp.after_request(finish_request)


@service_bp.before_request
def start_service_request():
    """Before each of the service's requests: its id and clock (`logs.start_request`), and the
    service's body limit (MAX_CONTENT_LENGTH, default 64 KiB) on its routes only. (One hook
    for both: Flask's work per hook is a measurable part of a token.)"""
    state = service_state()
    start_request(state)
    request.max_content_length = state.settings.max_content_length


@service_bp.errorhandler(HTTPException)
def render_http_error(error):
    """Every HTTP error raised on the service's routes, as JSON."""
    return http_error_response(error)


# Flask looks for a handler by status code (blueprint, then app) before it looks by class, so a
# host's own `errorhandler(404)` would answer for the service's routes: register by code too.
for _status in default_exceptions:
    service_bp.register_error_handler(_status, render_http_error)


@service_bp.errorhandler(Exception)
def render_unexpected_error(error):
    """An unexpected failure on the service's routes (standalone: on any route), logged with
    its traceback: a JSON 500."""
    log.exception("request failed unexpectedly")
    return error_response(500, "internal_error", "internal error")


@service_bp.before_app_request
def check_routes_and_routing_errors():
    """Before every request of the app (the host's too): on the first one, warn of route
    collisions; then answer the service's own routing errors as JSON."""
    state = service_state()
    if not state.routes_checked:
        state.routes_checked = True
        warn_of_collisions(current_app, state)
    return own_routing_errors(state)


def warn_of_collisions(app: Flask, state: "ServiceState") -> None:
    """One warning per path and method that both a host route and a service route serve,
    naming both endpoints and the one that answers."""
    owners: dict[tuple[str, str], list[Rule]] = {}
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            owners.setdefault((rule.rule, method), []).append(rule)
    adapter = app.url_map.bind("localhost")
    for (path, method), rules in owners.items():
        ours = [r.endpoint for r in rules if r.endpoint.startswith("tokensvc.")]
        theirs = [r.endpoint for r in rules if not r.endpoint.startswith("tokensvc.")]
        if not ours or not theirs or (path, method) in state.collisions:
            continue
        state.collisions.add((path, method))
        winner = "one of them"
        if not rules[0].arguments:
            try:
                found = adapter.match(path, method=method)[0]
                winner = "the service's" if found.startswith("tokensvc.") else "the host's"
            except HTTPException:
                pass
        log.warning(
            "route collision: %s %s is both the host's (%s) and the service's (%s); %s "
            "answers (mount the service with a url_prefix, or move the host's route)",
            method,
            path,
            ", ".join(theirs),
            ", ".join(ours),
            winner,
        )


def own_routing_errors(state: "ServiceState"):
    """A path of the service's with no route (404), the wrong method (405) or a doubled slash
    (werkzeug would redirect): JSON, like every answer of the service; the host's own paths
    keep the host's error pages."""
    error = request.routing_exception
    if error is None:
        return None
    prefix = state.url_prefix
    if isinstance(error, RequestRedirect):
        target = urlsplit(error.new_url).path.removeprefix(request.script_root)
        if _own_path(target, prefix) or _own_path(request.path, prefix):
            return http_error_response(NotFound())
    elif isinstance(error, (NotFound, MethodNotAllowed)) and _own_path(request.path, prefix):
        return http_error_response(error)
    return None


def _own_path(path: str, prefix: str) -> bool:
    """Whether `path` is under the service's routes (its `/livekit/` paths, or one of its
    exact paths such as /healthz)."""
    if path.startswith(prefix + "/livekit/") or path == prefix + "/livekit":
        return True
    return any(
        rule.rule == path
        for rule in current_app.url_map.iter_rules()
        if rule.endpoint.startswith("tokensvc.")
    )


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
    url_prefix: str = ""
    #: Whether the first request checked the routes; the (path, method) collisions warned of.
    routes_checked: bool = False
    collisions: set[tuple[str, str]] = field(default_factory=set)
    tenant_webhooks: TenantWebhooks | None = None
    #: The console's one-use tickets, beside the holds (None without a tenant key).
    console_tickets: ObservedHolds | None = None
    tenants: Tenants | None = None
    #: The reconciliation's store (the sweeper's lease, the watches, the repairs counted).
    reconcile_store: Any = None

    def close(self) -> None:
        """Close the LiveKit client's pooled connections and the storage's."""
        if self.tenant_webhooks is not None:
            self.tenant_webhooks.close()
        if self.tenants is not None:
            self.tenants.close()
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
        settings = load_settings(from_app_config(app.config))
        metrics = instruments() if settings.metrics_enabled else None
        rate_limits = RateLimits(settings) if settings.rate_limited else None
        verifier = None
        if settings.auth_configured:
            verifier = TenantVerifier(settings, metrics and metrics.jwks_fetch)
        holds = usage_store = None
        if settings.auth_configured:
            url = settings.storage_url or "sqlite:///" + os.path.join(
                app.instance_path, DEFAULT_STORAGE_FILE
            )
            holds = open_holds(
                url,
                settings.storage_timeout,
                metrics and metrics.storage_call,
                settings.storage_replicas,
                metrics.storage_lost if metrics else None,
                settings.storage_check_interval,
            )
            _refuse_a_forgetful_storage(holds)
            _warn_if_unpersisted(holds)
            usage_store = open_usage(
                holds, settings.usage_retention_days * DAY_MS, metrics and metrics.storage_call
            )
        issuer = TokenIssuer(
            settings,
            room_creations=rate_limits,
            observe_call=metrics and metrics.livekit_call,
            holds=holds,
            observe_event=metrics,
            usage_store=usage_store,
        )
        tenant_webhooks = console_tickets = tenants = None
        reconcile_store: Any = None
        if holds is not None:
            tenant_webhooks = _tenant_webhooks(settings, holds, issuer, metrics)
            tenants = _tenants(settings, holds, issuer, metrics)
            tenant_webhooks.endpoints_max = tenants.max_webhook_endpoints
            console_tickets = ObservedHolds(
                open_console_tickets(holds.store), metrics.storage_call if metrics else None
            )
            reconcile_store = open_reconcile(holds, metrics and metrics.storage_call)
            assert issuer.ownership is not None
            issuer.ownership.watches = reconcile_store
        _warn_if_anonymous(settings)
        webhooks = None
        if settings.livekit_configured:
            webhooks = api.WebhookReceiver(
                api.TokenVerifier(settings.livekit_api_key, settings.livekit_api_secret)
            )
        prefix = (url_prefix or self.url_prefix or "").rstrip("/")
        state = ServiceState(
            settings,
            verifier,
            issuer,
            Readiness(issuer, observe=metrics),
            rate_limits,
            metrics,
            Moderator(issuer),
            webhooks,
            prefix,
            tenant_webhooks=tenant_webhooks,
            console_tickets=console_tickets,
            tenants=tenants,
            reconcile_store=reconcile_store,
        )
        app.extensions[EXTENSION_KEY] = state
        app.register_blueprint(service_bp, url_prefix=prefix or None)
        warn_of_collisions(app, state)  # the host's routes so far; later ones at first request
        app.cli.add_command(tenant_token_command)
        for command in COMMANDS:
            app.cli.add_command(command)
        if settings.cors_allowed_origins:
            CORS(app, **cors_options(settings, routes.cors_paths(prefix)))
        return state


def _tenant_webhooks(settings: Settings, holds, issuer: TokenIssuer, metrics) -> TenantWebhooks:
    """Tenants' webhooks in the storage of the holds, fed by the ownership rule's events."""
    store = ObservedHolds(open_webhook_store(holds.store), metrics and metrics.storage_call)
    try:
        store.prepare()
    except StorageUnavailable:
        log.warning(
            "starting: the storage at %s did not answer; tenants' webhooks wait for it", holds.where
        )
    if not settings.tenant_webhook_secrets_key and not settings.dev_mode:
        raise ConfigError(
            "TENANT_WEBHOOK_SECRETS_KEY: tenants' webhooks keep their signing secrets sealed "
            "with it; set it (or TENANT_WEBHOOK_SECRETS_KEY_FILE) to a 32-byte key in base64 "
            "(openssl rand -base64 32); DEV_MODE=true keeps them in clear for development only"
        )
    if not settings.tenant_webhook_secrets_key:
        log.warning(
            "starting: TENANT_WEBHOOK_SECRETS_KEY is not set: tenants' webhook secrets are kept "
            "in clear (DEV_MODE, development only)"
        )
    webhooks = TenantWebhooks(settings, store)
    assert issuer.ownership is not None  # holds given: the issuer keeps the ownership record
    issuer.ownership.forward = webhooks.on_event
    issuer.ownership.announce = webhooks.on_service_event
    if settings.tenant_webhooks_allow_private:
        log.warning(
            "starting: TENANT_WEBHOOKS_ALLOW_PRIVATE=true: tenants' webhooks may be sent "
            "to loopback and private addresses and over plain http (development only)"
        )
    return webhooks


def check_storage_at_start(state: ServiceState) -> None:
    """A server's or worker's first check of the storage's continuity, at start: a loss is
    reported (with what to run when the record is missing: `storage init`) and quarantines;
    a storage that does not answer is checked by the first claim that reaches it."""
    ownership = state.issuer.ownership
    if ownership is None:
        return
    holds = ownership.holds
    try:
        found = holds.check_continuity()
    except StorageUnavailable:
        log.warning(
            "starting: the storage at %s did not answer; its continuity is checked when it does",
            holds.where,
        )
        return
    if found.problem:
        log.warning("starting: %s; the token route answers 503 until then", found.problem)
    if found.quarantine_ms and not found.lost:
        log.warning(
            "starting: the storage at %s is recovering from a loss: shared names without a "
            "record are quarantined for %d s more",
            holds.where,
            found.quarantine_ms // 1000,
        )
    log.info(
        "starting: the record at %s, epoch %s (%s), born %d ms ago on its clock",
        holds.where,
        found.epoch,
        found.origin,
        max(0, holds.time_ms() + holds.clock.shift_ms - found.born),
    )


def _tenants(settings: Settings, holds, issuer: TokenIssuer, metrics) -> Tenants:
    """The operator's records of tenants and the audit trail in the storage of the holds; the
    quotas and the ownership rule's events ask them."""
    observe = metrics and metrics.storage_call
    tenants = Tenants(
        settings,
        ObservedHolds(open_tenants(holds.store), observe),
        ObservedHolds(open_audit(holds.store, settings.audit_retention * DAY_MS), observe),
        issuer.ownership,
    )
    assert issuer.ownership is not None  # holds given: the issuer keeps the ownership record
    issuer.ownership.tenants = tenants
    if issuer.usage is not None:
        issuer.usage.tenants = tenants
    return tenants


def _refuse_a_forgetful_storage(holds) -> None:
    """A storage that may evict holds stops the start (ConfigError: exit 4 as a server); one
    that cannot be asked now is left to /readyz, which asks again."""
    try:
        problem = holds.durability_problem()
    except StorageUnavailable:
        log.warning(
            "starting: the storage at %s did not answer; /readyz checks it again", holds.where
        )
        return
    if problem:
        raise ConfigError(f"STORAGE_URL: {problem}")


def _warn_if_unpersisted(holds) -> None:
    """One start-up line when a Redis keeps the record in memory only (no AOF, no RDB saves):
    its restart forgets every hold. Said only when its CONFIG tells; nothing when it is down."""
    store = holds.store
    if store.backend != "redis":
        return
    import redis

    try:
        appendonly = store.client.config_get("appendonly").get("appendonly")
        saves = store.client.config_get("save").get("save")
    except redis.RedisError:
        return
    if appendonly == "no" and not (saves or "").strip():
        log.warning(
            "starting: Redis at %s has no persistence (appendonly no, no save points): a "
            "restart of it forgets every hold; set appendonly yes (with appendfsync everysec) "
            "or save points",
            holds.where,
        )


def cors_options(settings: Settings, own_paths: re.Pattern) -> dict:
    """Every flask-cors option, each given explicitly: flask-cors fills any option left out
    from the app's `CORS_*` keys, which belong to the host when the service is embedded.
    Resources: the service's own paths only; credentials only when CORS_ALLOW_CREDENTIALS."""
    return {
        "resources": {own_paths: {}},
        "origins": list(settings.cors_allowed_origins),
        "methods": ["GET", "HEAD", "POST", "DELETE", "OPTIONS"],
        "allow_headers": ["Authorization", "Content-Type", "X-Request-ID"],
        "expose_headers": ["X-Request-ID"],
        "supports_credentials": settings.cors_allow_credentials,
        "max_age": 600,
        "send_wildcard": False,
        "automatic_options": True,
        "vary_header": True,
        "intercept_exceptions": True,
        "always_send": True,
        "allow_private_network": False,
    }


def _warn_if_anonymous(settings: Settings) -> None:
    """One start-up line whenever tokens can be had without a tenant bearer token."""
    if not settings.auth_configured:
        log.warning(
            "starting: no tenant key is configured (AUTH_JWT_SECRET, AUTH_JWT_PUBLIC_KEY, "
            "AUTH_JWKS_URL): anyone who reaches the service gets tokens for any room"
        )
    elif not settings.auth_required:
        log.warning(
            "starting: AUTH_REQUIRED=false: requests without a bearer token get anonymous "
            "tokens, for room names no tenant holds"
        )
