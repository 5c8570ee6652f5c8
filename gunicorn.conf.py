"""Gunicorn settings, read by `gunicorn app:app` from the working directory."""

import os

# A PaaS sets $PORT; elsewhere default to 8000 on every interface.
bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"

# gthread: a token request mostly waits on LiveKit, and each worker process keeps one LiveKit
# connection pool on one event loop thread, shared by its request threads.
# Chosen by measurement (bench/run.py, 2 cores, 8 concurrent clients, authenticated request on
# an existing room): 2 workers x 4 threads gave ~780-860 req/s at ~1.9-2.0 ms CPU/request;
# 2 x 8 gave ~720-750 req/s at 2.1 ms (more GIL contention, longer tail); 2 x 2 starved the
# kept-alive connections (~280 req/s); 1 x 4 or 1 x 8 left a core idle (~350-400 req/s);
# 4 x 2 was no faster than 2 x 4 on two cores and doubled memory. Workers default to the
# core count; on a PaaS set WEB_CONCURRENCY to the cores the dyno really has.
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY") or os.cpu_count() or 2)
threads = int(os.environ.get("GUNICORN_THREADS", "4"))

# Load the app once in the master: a configuration error stops the service with one line,
# and workers share the loaded code. The LiveKit client starts lazily in each worker.
preload_app = True

timeout = 30
graceful_timeout = 10
keepalive = 5

# The service is managed by signals (PaaS, systemd); without this, every instance on a host
# would contend for the same per-user control socket path.
control_socket_disable = True
