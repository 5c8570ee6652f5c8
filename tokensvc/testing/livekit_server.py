"""The real livekit-server as a child process on loopback ports, for tests and benchmarks."""

import ctypes
import json
import signal
import subprocess
import tempfile

from .processes import wait_for_port


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to end it when its parent dies (PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


class LiveKitServer:
    """A livekit-server process: API on loopback, media on `media_ip`."""

    def __init__(
        self,
        binary: str,
        keys: dict,
        ports: tuple[int, int, int],
        media_ip=None,
        redis_url: str | None = None,
        extra: dict | None = None,
    ):
        """Remember the binary, API keys, the (HTTP, WebRTC TCP, WebRTC UDP) ports, and the
        address for media (participants' WebRTC; loopback when None, where none can join).
        With `redis_url` (redis://host:port) the node joins every other node sharing that
        Redis; `extra` is merged into the server's config (e.g. webhook, room)."""
        self.binary, self.keys, self.ports = binary, keys, ports
        self.media_ip = media_ip or "127.0.0.1"
        self.redis_url, self.extra = redis_url, extra or {}
        self.process = None
        self.log = tempfile.TemporaryFile(mode="w+")

    @property
    def ws_url(self) -> str:
        """The URL participants and the server API use."""
        return f"ws://127.0.0.1:{self.ports[0]}"

    def start(self) -> "LiveKitServer":
        """Start the server and wait until its HTTP port answers."""
        http_port, tcp_port, udp_port = self.ports
        # The API and signalling on loopback; media on `media_ip` only, since WebRTC clients
        # offer no loopback candidates of their own.
        media_ip = self.media_ip
        config = {
            "port": http_port,
            "bind_addresses": ["127.0.0.1"],
            "rtc": {
                "tcp_port": tcp_port,
                "udp_port": udp_port,
                "use_external_ip": False,
                "node_ip": media_ip,
                "ips": {"includes": [f"{media_ip}/32"]},
            },
            "keys": self.keys,
            "logging": {"level": "warn"},
            **self.extra,
        }
        if self.redis_url:
            config["redis"] = {"address": self.redis_url.split("://", 1)[1].split("/")[0]}
        self.process = subprocess.Popen(
            [self.binary, "--config-body", json.dumps(config)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        try:
            wait_for_port(http_port, self.process, 30, "livekit-server")
        except RuntimeError as error:
            self.log.seek(0)
            output = self.log.read()[-2000:]
            self.stop()
            raise RuntimeError(f"{error}: {output}") from None
        return self

    def kill(self) -> None:
        """End the server at once with SIGKILL, as a crashed node (its rooms stay in Redis)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        """Stop the server and drop its log."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
