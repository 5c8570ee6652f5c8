"""gunicorn settings for benchmark row 4 (the naive pattern): the ordinary threaded deployment such
an app would have. The naive pattern runs `asyncio.run()` per LiveKit call, which does not work
inside the service's gevent workers, so it gets gthread: workers = cores, 4 threads each."""

import os

worker_class = "gthread"
workers = os.cpu_count() or 2
threads = 4
preload_app = True
timeout = 30
keepalive = 5
control_socket_disable = True
