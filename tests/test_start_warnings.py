"""Start-up warnings a new operator needs to see: a Redis that keeps the record in memory only,
and tenants' webhooks allowed to private addresses; both reach the log the process writes."""

import logging
import shutil
import subprocess
import sys

from support.processes import ROOT, RedisServer, base_environment, unavailable
from support.tokens import TENANT_SECRET
from tokensvc.testing.processes import find_free_port

UNPERSISTED = "has no persistence (appendonly no, no save points)"


def started_warnings(caplog, make_app, **settings) -> list[str]:
    """The service's start-up warnings when an app is made with `settings`."""
    caplog.clear()
    with caplog.at_level(logging.WARNING, "tokensvc"):
        make_app(**settings)
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_redis_without_persistence_is_warned_of(caplog, make_app, redis_server):
    """No AOF and no save points: one warning naming the Redis and what to set."""
    (line,) = [
        line
        for line in started_warnings(caplog, make_app, STORAGE_URL=redis_server.url)
        if UNPERSISTED in line
    ]
    assert line == (
        f"starting: Redis at 127.0.0.1 {UNPERSISTED}: a restart of it "
        "forgets every hold; set appendonly yes (with appendfsync everysec) or save points"
    )


def test_a_redis_with_aof_or_save_points_is_not(caplog, make_app):
    """appendonly yes, or RDB save points: no such warning."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed (make test installs it)")
    for options in (("--appendonly", "yes"), ("--save", "3600 1")):
        server = RedisServer(binary, find_free_port(), *options).start()
        try:
            warnings = started_warnings(caplog, make_app, STORAGE_URL=server.url)
        finally:
            server.stop()
        assert not [line for line in warnings if UNPERSISTED in line], options


def test_the_private_webhooks_warning_reaches_the_processs_log(tmp_path):
    """TENANT_WEBHOOKS_ALLOW_PRIVATE=true: the warning docs/webhooks.md promises is on the
    started process's stderr (the log is set up before the extension starts)."""
    base = base_environment()
    result = subprocess.run(
        [sys.executable, "-c", "from tokensvc import create_app; create_app()"],
        cwd=ROOT,
        env={
            **base,
            "AUTH_JWT_SECRET": TENANT_SECRET,
            "STORAGE_URL": f"sqlite:///{tmp_path}/holds.sqlite3",
            "TENANT_WEBHOOKS_ALLOW_PRIVATE": "true",
            "LOG_FORMAT": "logfmt",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert (
        "starting: TENANT_WEBHOOKS_ALLOW_PRIVATE=true: tenants' webhooks may be sent to "
        "loopback and private addresses and over plain http (development only)"
    ) in result.stderr
