"""Child processes and ports for the tests, the soak and the benchmark: the one port picker, the
one wait for a process's port, and where the pinned livekit-server is."""

import os
import random
import socket
import subprocess
import time
from pathlib import Path


def find_free_port() -> int:
    """A loopback port nothing listens on right now, below the kernel's ephemeral range (so no
    outgoing connection can take it before the server it is meant for binds it)."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as handle:
        ephemeral_start = int(handle.read().split()[0])
    while True:
        port = random.randrange(10000, ephemeral_start)
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port


def wait_for_port(
    port: int, process: subprocess.Popen, seconds: float = 30, name: str = "the process"
) -> None:
    """Wait until something accepts connections on loopback `port`; RuntimeError when `process`
    exits first or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on port {port} within {seconds:g} s")


def find_livekit_server(lookup: Path) -> tuple[str | None, str]:
    """(path to the pinned livekit-server or None, what the lookup said): TOKENSVC_LIVEKIT_SERVER
    when set, else what the `lookup` script (scripts/livekit-server) finds without building."""
    named = os.environ.get("TOKENSVC_LIVEKIT_SERVER")
    if named:
        return (named, "") if os.access(named, os.X_OK) else (None, f"not executable: {named}")
    found = subprocess.run([str(lookup), "--no-build"], capture_output=True, text=True)
    if found.returncode == 0:
        return found.stdout.strip().splitlines()[-1], ""
    return None, found.stderr.strip()
