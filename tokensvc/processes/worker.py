"""The webhook worker: `python -m tokensvc.worker` (the Procfile's `worker:`).

It reads the same settings as the web process (`create_app`), so it finds the same storage and
queue, and runs huey's consumer with TENANT_WEBHOOK_WORKERS threads, each making one attempt at
a time, beside a sweeper thread that hands out again deliveries whose wake-up was lost.
SIGTERM stops it gracefully (attempts running finish, within the timeout); a SIGKILL loses
nothing: a delivery whose attempt was cut short is tried again once its lease runs out. Run
as many workers as you like, on any hosts that share the storage (Redis for more than one host).
"""

import logging
import sys
import threading

from huey.consumer import Consumer

from ..config import ConfigError, exit_on
from ..context import service_state
from ..extension import check_storage_at_start
from ..factory import create_app
from ..webhooks import Sweeper

#: The package's logger by name: run as `python -m`, `__name__` is "__main__", whose lines the
#: service's log handler never sees.
log = logging.getLogger("tokensvc.worker")

#: How often an idle consumer thread looks at an embedded (SQLite) queue at most, seconds;
#: on Redis it waits on the queue itself.
POLL_MAX_S = 0.1


class Worker:
    """huey's consumer for the deliveries of one app's tenants' webhooks, and the sweeper."""

    def __init__(self, webhooks, threads: int):
        """Make the consumer (`threads` threads) that runs `webhooks.attempt` for each task."""
        self.webhooks = webhooks
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
        return self

    def stop(self) -> None:
        """Stop, letting running attempts finish."""
        self.sweeper.stop()
        self.consumer.stop(graceful=True)

    def run(self) -> None:
        """Run in the foreground until SIGTERM or SIGINT (the worker process)."""
        self.sweeper.start()
        try:
            self.consumer.run_with_signals()
        finally:
            self.sweeper.stop()


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
    logging.getLogger("huey").setLevel(
        max(logging.WARNING, logging.getLevelName(settings.log_level))
    )
    logging.getLogger("huey").handlers = logging.getLogger("tokensvc").handlers
    log.info(
        "starting: webhook worker with %d threads on the storage at %s",
        settings.tenant_webhook_workers,
        state.tenant_webhooks.store.where,
    )
    watch.start()
    try:
        Worker(state.tenant_webhooks, settings.tenant_webhook_workers).run()
    finally:
        watch.stop()
        state.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
