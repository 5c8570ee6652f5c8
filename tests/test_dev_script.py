"""`make run` (scripts/dev) is safe by default: loopback only, and no silent LiveKit fallback."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.processes import ROOT, livekit_settings
from support.tokens import TENANT_SECRET

VENV_BIN = str(Path(sys.executable).parent)
pytestmark = pytest.mark.slow


def dev_env(**settings) -> dict:
    """The environment `make run` gives scripts/dev, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "AUTH_"))}
    return {**env, "PATH": f"{VENV_BIN}:{env['PATH']}", "AUTH_JWT_SECRET": TENANT_SECRET,
            **settings}


def listening(port: int) -> set[str]:
    """The local addresses listening on TCP `port` (from /proc/net/tcp)."""
    addresses = set()
    with open("/proc/net/tcp") as table:
        for row in list(table)[1:]:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                addresses.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return addresses


def test_service_listens_on_loopback_only(livekit, free_port):
    """With LIVEKIT_URL given (no development LiveKit started), gunicorn binds 127.0.0.1."""
    env = dev_env(PORT=str(free_port), **livekit_settings(livekit))
    process = subprocess.Popen([str(ROOT / "scripts" / "dev")], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not listening(free_port):
            assert process.poll() is None, process.stdout.read()
            time.sleep(0.2)
        assert listening(free_port) == {"127.0.0.1"}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
        process.stdout.close()


def test_busy_service_port_is_one_line_and_exit_1(free_port):
    """Something already on PORT: one line saying so and suggesting PORT=, exit 1, before any
    LiveKit is started."""
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", free_port))
    blocker.listen()
    try:
        result = subprocess.run([str(ROOT / "scripts" / "dev")], cwd=ROOT,
                                env=dev_env(PORT=str(free_port)), capture_output=True, text=True,
                                timeout=60)
    finally:
        blocker.close()
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"make run: port {free_port} is already in use; stop what listens there, or choose "
        f"another with PORT=8001 make run"]
    assert "LiveKit" not in result.stdout + result.stderr


def test_busy_livekit_port_is_one_line_and_exit_1():
    """Something already on 7880: one line saying so, exit 1, and nothing else started."""
    blocker = socket.socket()
    try:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", 7880))
        blocker.listen()
    except OSError:
        pass  # something else holds it already: busy either way
    try:
        result = subprocess.run([str(ROOT / "scripts" / "dev")], cwd=ROOT, env=dev_env(),
                                capture_output=True, text=True, timeout=60)
    finally:
        blocker.close()
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "make run: port 7880 is already in use; stop what listens there, or set LIVEKIT_URL to use it"
    ]
