"""Processes: gunicorn and redis-server as child processes (ports and waiting come from
tokensvc.testing.processes), and how a test says a real part is missing (skip, or fail where CI
requires it)."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from support.servers import HttpService
from support.tokens import LIVEKIT_KEY, LIVEKIT_SECRET, TENANT_SECRET, WEBHOOK_SECRETS_KEY
from tokensvc import environ_config
from tokensvc.testing.processes import wait_for_port


def unavailable(message: str):
    """Skip for a missing real part; fail instead under TOKENSVC_REQUIRE_LIVEKIT=1 (CI)."""
    if os.environ.get("TOKENSVC_REQUIRE_LIVEKIT") == "1":
        pytest.fail(message + " (TOKENSVC_REQUIRE_LIVEKIT=1)", pytrace=False)
    pytest.skip(message)


def livekit_settings(livekit) -> dict:
    """The LIVEKIT_* settings that point an app at `livekit` (through the proxy when real)."""
    settings = {"LIVEKIT_URL": getattr(livekit, "api_url", livekit.ws_url)}
    if settings["LIVEKIT_URL"] != livekit.ws_url:
        settings["LIVEKIT_PUBLIC_URL"] = livekit.ws_url
    return {**settings, "LIVEKIT_API_KEY": LIVEKIT_KEY, "LIVEKIT_API_SECRET": LIVEKIT_SECRET}


ROOT = Path(__file__).resolve().parent.parent.parent


class GunicornProcess(HttpService):
    """`gunicorn app:app` from the project root, with the shipped gunicorn.conf.py."""

    def __init__(self, env, port):
        """Start gunicorn and wait until it accepts connections."""
        base = base_environment()
        self.url = f"http://127.0.0.1:{port}"
        # A file, not a pipe: nobody reads while it runs, and a full pipe would block the workers.
        self.output = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "app:app"],
            cwd=ROOT,
            env={**base, "PORT": str(port), **env},
            stdout=self.output,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            wait_for_port(port, self.process, 30, "gunicorn")
        except RuntimeError as error:
            raise RuntimeError(f"{error}: {self.close()}") from None

    def workers(self) -> list[int]:
        """The pids of gunicorn's worker processes (the master's children)."""
        pid = self.process.pid
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(child) for child in handle.read().split()]

    def read_output(self) -> str:
        """Everything gunicorn and the service printed so far."""
        self.output.seek(0)
        return self.output.read()

    def close(self):
        """Stop gunicorn gracefully and return what it printed."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        output = self.read_output()
        self.output.close()
        return output


class WorkerProcess:
    """`python -m tokensvc.processes.worker` from the project root, as the Procfile's `worker:`
    runs it, with the service's settings `env`; what it prints goes to the file `log`."""

    def __init__(self, env: dict, log: Path):
        """Start the worker (the environment's own service settings left out)."""
        base = base_environment()
        self.log = log
        with open(log, "a") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tokensvc.processes.worker"],
                cwd=ROOT,
                env={**base, **env},
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def wait_started(self, timeout: float = 30.0) -> None:
        """Wait for its start-up line (LOG_LEVEL=INFO); fail with its output if it exits."""
        deadline = time.monotonic() + timeout
        while "starting: webhook worker" not in self.output():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start: {self.output()}")
            time.sleep(0.05)

    def output(self) -> str:
        """Everything it printed so far."""
        return self.log.read_text()

    def kill(self) -> None:
        """SIGKILL it, mid-attempt or not, and reap it."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int | None:
        """SIGTERM it (running attempts finish) and return its exit status (None if it was
        already reaped)."""
        if self.process.returncode is not None:
            return None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


def base_environment() -> dict:
    """This process's environment without the service's own settings, but with the tests' key
    for webhook secrets (which every test's service needs beside a tenant key)."""
    base = {k: v for k, v in os.environ.items() if k not in environ_config(os.environ)}
    return {**base, "TENANT_WEBHOOK_SECRETS_KEY": WEBHOOK_SECRETS_KEY}


def gunicorn_env(livekit, **settings):
    """The environment for the service under gunicorn on the emulator (2 workers), with
    make_app's defaults (a tenant key, AUTH_REQUIRED=false)."""
    return {
        **livekit_settings(livekit),
        "AUTH_JWT_SECRET": TENANT_SECRET,
        "AUTH_REQUIRED": "false",
        "WEB_CONCURRENCY": "2",
        **settings,
    }


class RedisServer:
    """A real redis-server on a loopback port, in a temporary directory, without persistence."""

    def __init__(self, binary: str, port: int, *options: str):
        """Remember how to start it (with extra command-line `options`); `start()` starts it."""
        self.binary, self.port, self.options = binary, port, options
        self.url = f"redis://127.0.0.1:{port}/0"
        self.directory = tempfile.mkdtemp(prefix="tokensvc-redis-")
        self.process = None

    def start(self) -> "RedisServer":
        """Start the server and wait until it answers PING."""
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.directory,
                *self.options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections are accepted and never answered."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server go on (SIGCONT)."""
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the server (what it had not written to disk is gone), and reap it."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def restart(self) -> "RedisServer":
        """Stop and start again on the same port: without persistence, it comes back empty."""
        self.stop()
        return self.start()

    def stop(self) -> None:
        """Stop the server (connections are refused afterwards)."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


def tcp_sockets(pid: int | None = None):
    """(local address, local port, remote port, state) of each TCP socket, IPv4 and IPv6, as
    process `pid`'s network namespace sees them (this one's by default), from /proc/net."""
    net = f"/proc/{pid}/net" if pid else "/proc/net"
    for table_name, family in ((f"{net}/tcp", socket.AF_INET), (f"{net}/tcp6", socket.AF_INET6)):
        with open(table_name) as table:
            for row in list(table)[1:]:
                local, remote, state = row.split()[1:4]
                address, hex_port = local.split(":")
                raw = bytes.fromhex(address)
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                yield (
                    socket.inet_ntop(family, raw),
                    int(hex_port, 16),
                    int(remote.split(":")[1], 16),
                    state,
                )


def listening(port: int, pid: int | None = None) -> set[str]:
    """The local addresses listening on TCP `port` (IPv6's any-address reads "::")."""
    return {
        address for address, local, _, state in tcp_sockets(pid) if state == "0A" and local == port
    }


def connections_to(port: int) -> int:
    """How many TCP connections of this machine to `port` are established (the connecting
    side's sockets, whose remote port is `port`)."""
    return sum(1 for _, _, remote, state in tcp_sockets() if state == "01" and remote == port)
