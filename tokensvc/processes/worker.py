"""The webhook worker: `python -m tokensvc.processes.worker` (the Procfile's `worker:`).

It reads the same settings as the web process (`create_app`), so it finds the same storage, and
runs the delivery engine (`delivery.py`): one asyncio loop that claims due deliveries from the
store, fairly across tenants, and sends up to TENANT_WEBHOOK_IN_FLIGHT of them at once. SIGTERM
stops it gracefully (attempts under way finish, within the timeout); a SIGKILL loses nothing: a
delivery whose attempt was cut short is claimed again once its lease runs out. Run as many
workers as you like, on any hosts that share the storage (Redis for more than one host).
Beside it runs the reconciliation with LiveKit (reconcile.py: one sweeper per deployment,
under a storage lease).
"""

import logging
import sys
import threading

from ..config import ConfigError, exit_on
from ..context import service_state
from ..extension import check_storage_at_start
from ..factory import create_app
from ..reconcile import ReconcileLoop, Reconciler
from .delivery import DeliveryEngine

#: The package's logger by name: run as `python -m`, `__name__` is "__main__", whose lines the
#: service's log handler never sees.
log = logging.getLogger("tokensvc.worker")


class Worker:
    """The delivery engine of one app's tenants' webhooks and, given a reconciler, the
    reconciliation with LiveKit."""

    def __init__(
        self,
        webhooks,
        paused=None,
        in_flight: int | None = None,
        reconciler: Reconciler | None = None,
    ):
        """Deliver for `webhooks` (holding the tenants `paused(tenant)` names); reconcile with
        LiveKit through `reconciler` when given."""
        self.webhooks = webhooks
        options = {"paused": paused} if paused is not None else {}
        self.engine = DeliveryEngine(webhooks, in_flight=in_flight, **options)
        self.reconcile = ReconcileLoop(reconciler) if reconciler is not None else None

    def start(self) -> "Worker":
        """Run in background threads (tests, an embedding host); `stop` ends it."""
        self.engine.start()
        if self.reconcile is not None:
            self.reconcile.start()
        return self

    def stop(self) -> None:
        """Stop, letting running attempts finish."""
        if self.reconcile is not None:
            self.reconcile.stop()
        self.engine.stop()

    def run(self) -> None:
        """Run in the foreground until SIGTERM or SIGINT (the worker process)."""
        if self.reconcile is not None:
            self.reconcile.start()
        try:
            self.engine.run(signals=True)
        finally:
            if self.reconcile is not None:
                self.reconcile.stop()


class ContinuityWatch:
    """A thread that checks the storage's continuity every STORAGE_CHECK_INTERVAL (a loss it
    finds starts the quarantine every instance reads), until stopped."""

    def __init__(self, holds, interval: float):
        """Check `holds` every `interval` seconds."""
        self.holds, self.interval = holds, interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="storage-watch", daemon=True)

    def start(self) -> "ContinuityWatch":
        """Start checking."""
        self.thread.start()
        return self

    def _run(self) -> None:
        """Check until stopped; a failing storage is logged by the store and tried again."""
        while not self.stopped.wait(self.interval):
            try:
                self.holds.check_continuity()
            except Exception as exc:
                log.warning("storage continuity check failed (%s)", type(exc).__name__)

    def stop(self) -> None:
        """Stop, and wait for the thread."""
        self.stopped.set()
        self.thread.join(5)


def suspended_tenants(state):
    """The predicate that holds a suspended tenant's deliveries, kept, until the operator
    resumes it (None when the app keeps no tenant records)."""
    return state.tenants.is_suspended if state.tenants is not None else None


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
    check_storage_at_start(state)
    assert state.issuer.ownership is not None  # tenant webhooks: the issuer keeps the record
    watch = ContinuityWatch(state.issuer.ownership.holds, settings.storage_check_interval)
    log.info(
        "starting: webhook worker with up to %d attempts in flight on the storage at %s",
        settings.tenant_webhook_in_flight,
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
    watch.start()
    try:
        Worker(state.tenant_webhooks, suspended_tenants(state), reconciler=reconciler).run()
    finally:
        watch.stop()
        state.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
