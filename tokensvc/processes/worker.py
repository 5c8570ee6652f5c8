"""The webhook worker: `python -m tokensvc.worker` (the Procfile's `worker:`).

It reads the same settings as the web process (`create_app`), so it finds the same storage and
queue, and runs huey's consumer with TENANT_WEBHOOK_WORKERS threads, each making one attempt at
a time, beside a sweeper thread that hands out again deliveries whose wake-up was lost, and the
reconciliation with LiveKit (reconcile.py: one sweeper per deployment, under a storage lease).
SIGTERM stops it gracefully (attempts running finish, within the timeout); a SIGKILL loses
nothing: a delivery whose attempt was cut short is tried again once its lease runs out. Run
as many workers as you like, on any hosts that share the storage (Redis for more than one host).
"""

import logging
import sys

from huey.consumer import Consumer

from ..config import ConfigError, exit_on
from ..context import service_state
from ..factory import create_app
from ..reconcile import ReconcileLoop, Reconciler
from ..webhooks import Sweeper

#: The package's logger by name: run as `python -m`, `__name__` is "__main__", whose lines the
#: service's log handler never sees.
log = logging.getLogger("tokensvc.worker")

#: How often an idle consumer thread looks at an embedded (SQLite) queue at most, seconds;
#: on Redis it waits on the queue itself.
POLL_MAX_S = 0.1


class Worker:
    """huey's consumer for the deliveries of one app's tenants' webhooks, the sweeper of lost
    deliveries, and (given a reconciler) the reconciliation with LiveKit."""

    def __init__(self, webhooks, threads: int, reconciler: Reconciler | None = None):
        """Make the consumer (`threads` threads) that runs `webhooks.attempt` for each task, and
        the reconciliation loop when given a `reconciler`."""
        self.webhooks = webhooks
        self.reconcile = ReconcileLoop(reconciler) if reconciler is not None else None
        webhooks.queue.handler = webhooks.attempt
        timeout = webhooks.settings.tenant_webhook_timeout
        self.consumer = QuietConsumer(
            webhooks.queue.huey,
            workers=threads,
            worker_type="thread",
            periodic=False,
            initial_delay=0.01,
            backoff=1.5,
            max_delay=POLL_MAX_S,
            shutdown_timeout=timeout + 2,
            graceful_signal="TERM",
        )
        self.sweeper = Sweeper(webhooks)

    def start(self) -> "Worker":
        """Run in background threads (tests, an embedding host); `stop` ends it."""
        self.consumer.start()
        self.sweeper.start()
        if self.reconcile is not None:
            self.reconcile.start()
        return self

    def stop(self) -> None:
        """Stop, letting running attempts finish."""
        if self.reconcile is not None:
            self.reconcile.stop()
        self.sweeper.stop()
        self.consumer.stop(graceful=True)

    def run(self) -> None:
        """Run in the foreground until SIGTERM or SIGINT (the worker process)."""
        self.sweeper.start()
        if self.reconcile is not None:
            self.reconcile.start()
        try:
            self.consumer.run_with_signals()
        finally:
            if self.reconcile is not None:
                self.reconcile.stop()
            self.sweeper.stop()


class QuietConsumer(Consumer):
    """huey's consumer, which installs its signal handlers only when run as the process's
    foreground loop (`run_with_signals`), so that it can also run in threads of a host."""

    signals = False

    def _set_signal_handlers(self):
        """Install huey's handlers only in the foreground loop."""
        if self.signals:
            super()._set_signal_handlers()

    def run_with_signals(self) -> None:
        """huey's own loop, with its handlers for SIGTERM (graceful) and SIGINT."""
        self.signals = True
        self.run()


def reconciler_of(state) -> Reconciler | None:
    """The reconciliation of an app's service state with its LiveKit (None without LiveKit
    settings or a record)."""
    issuer = state.issuer
    if issuer.rooms is None or issuer.ownership is None or issuer.usage is None:
        return None
    return Reconciler(
        state.settings, issuer.ownership, issuer.usage, issuer.rooms, state.reconcile_store
    )


def main() -> None:
    """Start the worker from the environment's settings; a setting it cannot run with (or no
    tenant key: no tenant, no webhooks) stops it with one line and exit 4."""
    try:
        app = create_app()
    except ConfigError as exc:
        exit_on(exc)
    state = service_state(app)
    if state.tenant_webhooks is None:
        exit_on(
            ConfigError(
                "AUTH_JWT_SECRET, AUTH_JWT_PUBLIC_KEY or AUTH_JWKS_URL: tenants' "
                "webhooks need tenants; no tenant key is configured"
            )
        )
    settings = state.settings
    logging.getLogger("huey").setLevel(
        max(logging.WARNING, logging.getLevelName(settings.log_level))
    )
    logging.getLogger("huey").handlers = logging.getLogger("tokensvc").handlers
    log.info(
        "starting: webhook worker with %d threads on the storage at %s",
        settings.tenant_webhook_workers,
        state.tenant_webhooks.store.where,
    )
    reconciler = reconciler_of(state)
    if reconciler is None:
        log.warning("starting: LiveKit is not configured; no reconciliation with it")
    else:
        log.info(
            "starting: reconciliation with LiveKit every %g s, rooms under watch every %g s",
            settings.reconcile_interval,
            settings.watch_interval,
        )
    try:
        Worker(state.tenant_webhooks, settings.tenant_webhook_workers, reconciler).run()
    finally:
        state.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
