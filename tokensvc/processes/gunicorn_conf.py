"""Gunicorn settings: `tokensvc serve` gives them to gunicorn (`-c python:` this module); the
repository's gunicorn.conf.py re-exports them for `gunicorn app:app` from a checkout."""

import gc
import glob
import os
import shutil
import tempfile

# gevent: every connection is a greenlet, so an idle or slow client (a slowloris trickling its
# headers, a keep-alive connection left open) costs a little memory, never a worker thread. With
# gthread, 16 such connections took /healthz down (tests/test_slow_clients.py holds 64 idle and
# 64 trickling ones open and asks for answers within 1 s). A token request is a little CPU and
# one or two LiveKit round trips, which gevent's patched sockets wait on without a thread each.
# Patched here, in the master, before the app is loaded (preload_app below), so the locks,
# thread-locals and sockets the app makes at start-up are gevent's too.
import gevent
from gevent import monkey

monkey.patch_all()

from tokensvc.config import ConfigError, exit_on, server_settings  # noqa: E402

# Every setting read here is parsed in tokensvc/config.py (ServerSettings); a bad one stops
# gunicorn with one line and exit 4, as the service's own settings do.
try:
    server = server_settings()
except ConfigError as exc:
    exit_on(exc)

# A PaaS sets $PORT; elsewhere default to 8000 on every interface.
bind = f"0.0.0.0:{server.port}"


# Metrics (METRICS_ENABLED): every worker writes its samples to files in
# PROMETHEUS_MULTIPROC_DIR and /metrics adds them up. prometheus_client reads the variable when it
# is imported, so it is set here, before the app is: a fresh directory per start (an operator's
# own directory is emptied of an earlier run's files), forgotten for each dead worker, removed at
# exit when it was made here.
if server.prometheus_multiproc_dir:
    for stale in glob.glob(os.path.join(server.prometheus_multiproc_dir, "*.db")):
        os.remove(stale)
    made_metrics_dir = None
else:
    made_metrics_dir = tempfile.mkdtemp(prefix="tokensvc-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = made_metrics_dir

from gunicorn import util as gunicorn_util  # noqa: E402

from tokensvc.processes import gunicorn_glue  # noqa: E402

worker_class = "gevent"
# Workers default to the core count; on a PaaS set WEB_CONCURRENCY to the cores the dyno has.
workers = server.web_concurrency
# Connections one worker holds open at once (idle, slow or busy); over it, new ones wait in the
# listen queue.
worker_connections = server.gunicorn_worker_connections

# Load the app once in the master: a configuration error stops the service with one line,
# and workers share the loaded code. Each worker opens its own LiveKit connections on first use.
preload_app = True

timeout = 30
graceful_timeout = 10
keepalive = 5

# Errors gunicorn answers itself (a malformed request line or header, a 414 or 431) are JSON
# like every other error, and its log lines never carry an Authorization value: its parser
# quotes a header line that lacks its colon whole, bearer token and all. gunicorn has no hook for
# the error page, so its one writer is replaced.
gunicorn_glue.replace_write_error(gunicorn_util)
logger_class = gunicorn_glue.logger_for(server.log_format)

# The service is managed by signals (PaaS, systemd); without this, every instance on a host
# would contend for the same per-user control socket path.
control_socket_disable = True


def pre_fork(server, worker):
    """Move everything the master has loaded (the app, its modules) out of the collector's
    reach before forking: a worker's collections then neither walk those objects nor write to
    the pages it shares with the master (the `gc.freeze` documentation's advice)."""
    gc.freeze()


def post_request(worker, req, environ, resp):
    """Yield to the worker's other connections after every request: a kept-alive client whose
    next request is already waiting would otherwise be served again and again before them."""
    gevent.sleep(0)


def child_exit(server, worker):
    """Forget a dead worker's live-only samples (prometheus_client's multiprocess mode)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Remove the metrics directory made at start."""
    if made_metrics_dir:
        shutil.rmtree(made_metrics_dir, ignore_errors=True)
