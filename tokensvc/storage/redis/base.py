"""The Redis backend's plumbing, shared by its three stores: one client (a URL, or Sentinel's
`redis+sentinel://host:port[,host:port]/name`), the Lua scripts read from this package's `.lua`
files, and the replica acknowledgement: with `STORAGE_REPLICAS`, every write of every store waits
(`WAIT`, on the connection that wrote) for that many replicas, else `StorageUnavailable`.
"""

import logging
from collections.abc import Sequence
from importlib.resources import files
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from ...errors import StorageUnavailable
from ..clock import StorageClock

log = logging.getLogger(__name__)

#: The prefix of every Redis key the service writes.
REDIS_PREFIX = "tokensvc:"
#: Script arguments and keys as redis-py takes them.
Arguments = Sequence[str | int]


def lua(name: str) -> str:
    """The text of this package's `<name>.lua`."""
    return files(__package__ or __name__).joinpath(f"{name}.lua").read_text(encoding="utf-8")


class RedisConnection:
    """The Redis all stores of one storage share: its client, its clock, its scripts, and the
    replicas every write waits for."""

    backend: Literal["redis"] = "redis"

    def __init__(self, url: str, timeout: float, replicas: int = 0) -> None:
        """Connect lazily to the Redis at `url`; every call is bounded by `timeout` seconds;
        with `replicas`, every write is acknowledged only once that many replicas have it."""
        import redis  # imported here: the embedded default needs no Redis client

        parts = urlsplit(url)
        self.where = parts.hostname or "redis"
        self.timeout = timeout
        self.replicas = replicas
        self.clock = StorageClock()
        options: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "retry_on_timeout": False,
        }
        self.client: Any
        if parts.scheme == "redis+sentinel":
            from redis.sentinel import Sentinel

            hosts = [
                (h.rsplit(":", 1)[0], int(h.rsplit(":", 1)[1]) if ":" in h else 26379)
                for h in parts.netloc.rsplit("@", 1)[-1].split(",")
            ]
            service = parts.path.strip("/").split("/")[0] or "mymaster"
            query = parse_qs(parts.query)
            sentinel = Sentinel(
                hosts,
                sentinel_kwargs=options,
                password=parts.password,
                db=int(query.get("db", ["0"])[0]),
                **options,
            )
            self.client = sentinel.master_for(service)
            self.where = hosts[0][0]
        else:
            self.client = redis.Redis.from_url(url, **options)
        self._scripts: dict[str, Any] = {}

    def script(self, name: str, *libraries: str) -> Any:
        """The registered script of `<name>.lua`, after the `libraries`' `.lua` text (each
        loaded and registered once per connection)."""
        found = self._scripts.get(name)
        if found is None:
            text = "".join(lua(library) for library in libraries) + lua(name)
            found = self._scripts[name] = self.client.register_script(text)
        return found

    def run(self, script: Any, keys: Arguments, args: Arguments, write: bool = True) -> Any:
        """Run a registered script; a write waits for the replicas."""
        if not (write and self.replicas):
            return script(keys=keys, args=args)
        pipe = self.client.pipeline(transaction=False)
        script(keys=keys, args=args, client=pipe)
        return self._acknowledged(pipe)

    def command(self, *command: str | int, write: bool = True) -> Any:
        """Run one Redis command; a write waits for the replicas."""
        if not (write and self.replicas):
            return self.client.execute_command(*command)
        pipe = self.client.pipeline(transaction=False)
        pipe.execute_command(*command)
        return self._acknowledged(pipe)

    def _acknowledged(self, pipe: Any) -> Any:
        """Execute `pipe` (one write) followed by WAIT on the same connection: its result once
        the replicas have it, else StorageUnavailable."""
        pipe.execute_command("WAIT", self.replicas, int(self.timeout * 1000))
        result, acknowledged = pipe.execute()
        if acknowledged < self.replicas:
            log.warning(
                "storage at %s: a write reached %d of %d replicas in time",
                self.where,
                acknowledged,
                self.replicas,
            )
            raise StorageUnavailable()
        return result

    def time_ms(self) -> int:
        """Redis's TIME, ms (unshifted)."""
        seconds, micros = self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


class RedisStore:
    """One store on a shared RedisConnection: its scripts by name, run through the connection
    (so every write waits for the replicas)."""

    backend: Literal["redis"] = "redis"
    #: Each script's name: (its `.lua` file, the library files before it).
    scripts: dict[str, tuple[str, tuple[str, ...]]] = {}

    def __init__(self, connection: RedisConnection) -> None:
        """Use `connection`'s client and clock."""
        self.connection = connection
        self.client = connection.client
        self.clock = connection.clock
        self.where = connection.where
        self._scripts = {
            name: connection.script(file, *libraries)
            for name, (file, libraries) in self.scripts.items()
        }

    def _run(self, script: str, keys: Arguments, args: Arguments, write: bool = True) -> Any:
        """Run one of the store's scripts; a write waits for the replicas."""
        return self.connection.run(self._scripts[script], keys, args, write)
