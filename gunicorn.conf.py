"""Gunicorn settings, read by `gunicorn app:app` from the working directory."""

import os
import sys


def setting(name: str, default: int, minimum: int, maximum: int = 1 << 31) -> int:
    """A whole-number setting from the environment; a bad one stops gunicorn with one line and
    exit 4, as the service's own settings do (so a supervisor does not restart into it)."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if value.isdigit() and minimum <= int(value) <= maximum:
        return int(value)
    print(f"tokensvc: configuration error: {name}: expected a whole number from {minimum} "
          f"to {maximum}, got {value!r}", file=sys.stderr, flush=True)
    sys.exit(4)


# A PaaS sets $PORT; elsewhere default to 8000 on every interface.
bind = f"0.0.0.0:{setting('PORT', 8000, 1, 65535)}"

# gthread: a token request mostly waits on LiveKit, and each worker process keeps one
# keep-alive LiveKit connection pool, shared by its request threads.
# Chosen by measurement (bench/run.py, 2 cores, 8 concurrent clients, authenticated request on
# an existing room): 2 workers x 4 threads gave ~780-860 req/s at ~1.9-2.0 ms CPU/request;
# 2 x 8 gave ~720-750 req/s at 2.1 ms (more GIL contention, longer tail); 2 x 2 starved the
# kept-alive connections (~280 req/s); 1 x 4 or 1 x 8 left a core idle (~350-400 req/s);
# 4 x 2 was no faster than 2 x 4 on two cores and doubled memory. Workers default to the
# core count; on a PaaS set WEB_CONCURRENCY to the cores the dyno really has.
worker_class = "gthread"
workers = setting("WEB_CONCURRENCY", os.cpu_count() or 2, 1, 256)
threads = setting("GUNICORN_THREADS", 4, 1, 1024)

# Load the app once in the master: a configuration error stops the service with one line,
# and workers share the loaded code. Each worker opens its own LiveKit connections on first use.
preload_app = True

timeout = 30
graceful_timeout = 10
keepalive = 5

# The service is managed by signals (PaaS, systemd); without this, every instance on a host
# would contend for the same per-user control socket path.
control_socket_disable = True
