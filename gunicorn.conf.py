"""Gunicorn settings, read by `gunicorn app:app` from the working directory."""

import os

# A PaaS sets $PORT; elsewhere default to 8000 on every interface.
bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"

# Threads, not processes, carry concurrency: a token request spends most of its time waiting
# on LiveKit, and each worker process holds one LiveKit connection pool on one event loop.
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))

# Load the app once in the master: a configuration error stops the service with one line,
# and workers share the loaded code. The LiveKit client starts lazily in each worker.
preload_app = True

timeout = 30
graceful_timeout = 10
keepalive = 5

# The service is managed by signals (PaaS, systemd); without this, every instance on a host
# would contend for the same per-user control socket path.
control_socket_disable = True
