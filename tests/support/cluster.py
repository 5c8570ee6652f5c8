"""Two real livekit-server nodes sharing a real redis-server, and one gunicorn instance of the
service per node on the same storage, each node sending its webhooks to both instances; worker
processes on the same storage when a test asks for them."""

import time
from pathlib import Path

import redis

from support.livekit import MEDIA_IP, twirp
from support.processes import GunicornProcess, RedisServer, WorkerProcess
from support.storage import initialise
from support.tokens import BODY, LIVEKIT_KEY, LIVEKIT_SECRET, TENANT_SECRET
from tokensvc.testing import LiveKitServer
from tokensvc.testing.processes import find_free_port


class Cluster:
    """A redis-server, two livekit-server nodes on it, and one gunicorn instance per node."""

    def __init__(
        self,
        binary: str,
        redis_binary: str,
        extra: dict | None = None,
        settings: dict | None = None,
    ):
        """Start everything, node 1 first (so each node's id in Redis is known); `extra` is
        merged into both nodes' config, `settings` into both instances' environment. Every node
        sends its webhooks to both instances, as production should: each event reaches the
        service twice and counts once."""
        self.redis = RedisServer(redis_binary, find_free_port()).start()
        initialise(self.redis.url)
        self.client = redis.Redis.from_url(self.redis.url)
        self.nodes, self.node_ids, self.services, self.workers = [], [], [], []
        self.envs: list[dict] = []
        keys = {LIVEKIT_KEY: LIVEKIT_SECRET}
        service_ports = [find_free_port() for _ in range(2)]
        webhook = {
            "webhook": {
                "api_key": LIVEKIT_KEY,
                "urls": [f"http://127.0.0.1:{port}/livekit/webhook" for port in service_ports],
            }
        }
        for _ in range(2):
            known = set(self.client.hkeys("nodes"))
            ports = tuple(find_free_port() for _ in range(3))
            node = LiveKitServer(
                binary,
                keys,
                ports,
                MEDIA_IP,
                redis_url=self.redis.url,
                extra={**webhook, **(extra or {})},
            ).start()
            self.nodes.append(node)
            self.node_ids.append(self._new_node_id(known))
        for node, port in zip(self.nodes, service_ports, strict=False):
            env = {
                "LIVEKIT_URL": node.ws_url,
                "LIVEKIT_API_KEY": LIVEKIT_KEY,
                "LIVEKIT_API_SECRET": LIVEKIT_SECRET,
                "AUTH_JWT_SECRET": TENANT_SECRET,
                "STORAGE_URL": self.redis.url,
                "WEB_CONCURRENCY": "2",
                "ROOM_EMPTY_TIMEOUT": "900",
                "ROOM_DEPARTURE_TIMEOUT": "900",
                **(settings or {}),
            }
            self.envs.append(env)
            self.services.append(GunicornProcess(env, port))

    def _new_node_id(self, known: set) -> bytes:
        """The id the node that just started registered in Redis."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            new = set(self.client.hkeys("nodes")) - known
            if new:
                return new.pop()
            time.sleep(0.1)
        raise RuntimeError("the livekit-server node did not register in Redis")

    def node_of(self, room: str) -> int | None:
        """Which node (0 or 1) LiveKit's room->node map sends `room` to."""
        node_id = self.client.hget("room_node_map", room)
        return self.node_ids.index(node_id) if node_id in self.node_ids else None

    def delete_room(self, room: str) -> None:
        """End a room (DeleteRoom through node 1)."""
        twirp(self.nodes[0].ports[0], {LIVEKIT_KEY: LIVEKIT_SECRET}, "DeleteRoom", {"room": room})

    def tokens(self, tenants, tenant: str, room: str) -> list:
        """One (node URL, token) per node for `room`, from the service instance of that node."""
        tokens = []
        for index, service in enumerate(self.services):
            body = {**BODY, "room_name": room, "participant_identity": f"{tenant}-{index}"}
            status, answer, _ = service.post("/livekit/token", body, tenants.headers(tenant))
            assert status == 200, answer
            tokens.append((self.nodes[index].ws_url, answer["token"]))
        return tokens

    def start_worker(self, node: int, log: Path) -> WorkerProcess:
        """A worker process (webhook deliveries and the reconciliation) with the settings of
        the instance of `node` (its LiveKit URL), logging at INFO to `log`; started."""
        worker = WorkerProcess({**self.envs[node], "LOG_LEVEL": "INFO"}, log)
        self.workers.append(worker)
        worker.wait_started()
        return worker

    def close(self) -> None:
        """Stop the workers, the services, the nodes and Redis."""
        for worker in self.workers:
            worker.stop()
        for service in self.services:
            service.close()
        for node in self.nodes:
            node.stop()
        self.redis.stop()
