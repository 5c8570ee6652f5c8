"""The tenant's console in a real headless Chromium (tests/node/console.test.mjs, driven step by
step from here), on the real livekit-server with two real participants: the calls page lists
them within 2 s of joining and drops one within 2 s of its leaving, ending the room from the
page ends it in LiveKit, the usage table is GET /livekit/usage's, a failing endpoint's delivery
shows its attempts and a retry from the page delivers it, the audit page lists the tenant's
trail as GET /livekit/audit does; another tenant's session sees none of it and the used ticket
opens nothing; the operator signs in to /admin/console, suspends the tenant, and the tenant's
open console says so by itself within 5 s.

With TOKENSVC_CONSOLE_SCREENSHOTS=docs/console the pages' screenshots are saved there (for
docs/console.md); otherwise in the test's temporary folder."""

import json
import os
import queue
import shutil
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.request import Request, urlopen

import pytest

from support.processes import ROOT, unavailable
from support.tokens import ADMIN, ADMIN_TOKEN, BODY

NODE_DIR = Path(__file__).resolve().parent / "node"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
VENDOR = ROOT / "tokensvc" / "console" / "static" / "vendor"

pytestmark = [pytest.mark.slow, pytest.mark.waits, pytest.mark.usefixtures("media_network")]


class Driver:
    """The node script as a child process, spoken to a line at a time."""

    def __init__(self, env: dict):
        """Start it; its STEP lines are queued as they come."""
        self.process = subprocess.Popen(
            ["node", "console.test.mjs"],
            cwd=NODE_DIR,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue = queue.Queue()
        self.output: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        """Queue every STEP line; keep every line for the failure message."""
        for line in self.process.stdout:
            self.output.append(line)
            if line.startswith("STEP "):
                self.lines.put(line[5:].split())
        self.lines.put(None)

    def expect(self, word: str, seconds: float = 60) -> list[str]:
        """The next step's words after `word` (fails with the script's output otherwise)."""
        try:
            step = self.lines.get(timeout=seconds)
        except queue.Empty:
            step = None
        assert step is not None and step[0] == word, "".join(self.output)[-6000:]
        return step[1:]

    def tell(self, *words: str) -> None:
        """Send one line."""
        self.process.stdin.write(" ".join(words) + "\n")
        self.process.stdin.flush()

    def finish(self) -> None:
        """Wait for it to end; it must have passed."""
        self.process.stdin.close()
        code = self.process.wait(timeout=30)
        assert code == 0, "".join(self.output)[-6000:]

    def close(self) -> None:
        """Stop it if it still runs; close its pipes."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        self.reader.join(timeout=10)
        for pipe in (self.process.stdin, self.process.stdout):
            if not pipe.closed:
                pipe.close()


def open_console(service_url: str, headers: dict) -> str:
    """A console URL from the served service, as a tenant's backend asks for it."""
    asked = Request(f"{service_url}/livekit/console-sessions", method="POST", headers=headers)
    with urlopen(asked, timeout=10) as answer:
        assert answer.status == 201
        return json.load(answer)["url"]


def stable_usage(client, headers: dict, period: dict) -> dict:
    """GET /livekit/usage once it no longer changes (the room's last events metered)."""
    previous = None
    for _ in range(40):
        now = client.get("/livekit/usage", query_string=period, headers=headers).json
        if now == previous:
            return now
        previous = now
        time.sleep(0.5)
    raise AssertionError(f"the usage kept changing: {previous}")


def test_the_console_in_a_browser(
    make_webhooked, free_port, tenants, call, make_receiver, make_worker, tmp_path
):
    """The whole console, step by step, against the real server (see the module's text)."""
    if shutil.which("node") is None or CHROMIUM is None:
        unavailable("chromium and node are needed (make test installs chromium)")
    if not (NODE_DIR / "node_modules" / "playwright-core").is_dir():
        unavailable("tests/node/node_modules is missing: run `make install` with npm")
    if not (VENDOR / "htmx.min.js").is_file():
        unavailable("the console's scripts are missing: run `make install` with npm")
    app, server = make_webhooked(
        port=free_port,
        TENANT_WEBHOOKS_ALLOW_PRIVATE="true",
        TENANT_WEBHOOK_TIMEOUT="1",
        TENANT_WEBHOOK_RETRY_DELAY="0.2",
        TENANT_WEBHOOK_RETRY_PERIOD="1",
        ROOM_DEPARTURE_TIMEOUT="1",
        DEV_MODE="true",
        ADMIN_TOKEN=ADMIN_TOKEN,
    )
    service_url = f"http://127.0.0.1:{free_port}"
    client, acme = app.test_client(), tenants.headers("acme", ttl=900)
    receiver = make_receiver(mode="fail")
    endpoint = client.post(
        "/livekit/webhook-endpoints",
        json={"url": receiver.url, "events": ["room_started"]},
        headers=acme,
    ).json["id"]
    make_worker(app)
    shots = Path(os.environ.get("TOKENSVC_CONSOLE_SCREENSHOTS") or tmp_path).resolve()
    shots.mkdir(parents=True, exist_ok=True)
    console_url = open_console(service_url, acme)
    driver = Driver(
        {
            **os.environ,
            "CONSOLE_URL": console_url,
            "OTHER_URL": open_console(service_url, tenants.headers("globex")),
            "CHROMIUM": CHROMIUM,
            "SCREENSHOTS": str(shots),
            "ENDPOINT_ID": endpoint,
            "OPERATOR_URL": f"{service_url}/admin/console/",
            "ADMIN_TOKEN": ADMIN_TOKEN,
        }
    )
    try:
        driver.expect("open")
        period_start = datetime.now(UTC) - timedelta(minutes=5)
        for identity in ("alice", "bob"):
            body = {**BODY, "room_name": "console-call", "participant_identity": identity}
            body["participant_name"] = identity.capitalize()
            minted = client.post("/livekit/token", json=body, headers=acme)
            assert minted.status_code == 200, minted.json
            call.join(identity, server.ws_url, minted.json["token"])
        call.publish("alice")
        driver.tell("joined")
        listed_ms = int(driver.expect("listed")[0])
        print(f"both listed {listed_ms} ms after joining")
        assert listed_ms <= 2000
        time.sleep(10)  # a call long enough to show on the usage page
        call.run(call.rooms["bob"].disconnect())
        driver.tell("left")
        dropped_ms = int(driver.expect("dropped")[0])
        print(f"bob dropped {dropped_ms} ms after leaving")
        assert dropped_ms <= 2000
        driver.tell("end")
        driver.expect("ended")
        gone = client.get("/livekit/rooms/console-call", headers=acme)
        assert (gone.status_code, gone.json["code"]) == (404, "room_not_found")
        assert client.get("/livekit/rooms", headers=acme).json == {"rooms": []}
        assert call.wait_for(lambda: ("disconnected",) in call.events["alice"])
        period = {
            "from": period_start.isoformat().replace("+00:00", "Z"),
            "to": (datetime.now(UTC) + timedelta(minutes=1)).isoformat().replace("+00:00", "Z"),
        }
        report = stable_usage(client, acme, period)
        driver.tell("usage", period["from"], period["to"])
        rows = json.loads(driver.expect("rows")[0])
        assert rows == [
            [
                room["room_name"],
                str(room["participant_seconds"]),
                str(room["room_seconds"]),
                str(room["peak_participants"]),
                str(room["participants"]),
            ]
            for room in report["rooms"]
        ]
        assert [room["room_name"] for room in report["rooms"]] == ["console-call"]
        assert report["rooms"][0]["participants"] == 2
        # The room_started delivery to the failing endpoint: failed after its attempts.
        hooks = app.test_client()
        failed = lambda: hooks.get(  # noqa: E731
            "/livekit/webhook-deliveries", query_string={"status": "failed"}, headers=acme
        ).json["deliveries"]
        deadline = time.monotonic() + 30
        while not failed() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert failed(), "no delivery failed"
        receiver.mode = "ok"
        driver.tell("webhooks")
        delivery, attempts = driver.expect("delivered")
        assert int(attempts) >= 1
        assert delivery in {item.id for item in receiver.received}
        # The audit page: the operator's change of acme's plan, acme's own actions (a refused
        # one among them), as GET /livekit/audit lists them.
        for tenant, plan in (("acme", {"max_rooms": 5}), ("globex", {"max_rooms": 2})):
            assert (
                client.patch(f"/admin/tenants/{tenant}", json=plan, headers=ADMIN).status_code
                == 200
            )
        assert client.delete("/livekit/webhook-endpoints/we_gone", headers=acme).status_code == 404
        client.post(f"/livekit/webhook-endpoints/{endpoint}/rotate-secret", headers=acme)
        audit = client.get("/livekit/audit", headers=acme).json["entries"]
        driver.tell("audit")
        assert json.loads(driver.expect("audited")[0]) == [entry["action"] for entry in audit]
        driver.tell("others")
        driver.expect("checked")
        driver.tell("operator")
        suspended_ms = int(driver.expect("suspended")[0])
        print(f"the open console said suspended {suspended_ms} ms after the operator's click")
        assert suspended_ms <= 5000
        refused = client.get("/livekit/rooms", headers=acme)
        assert (refused.status_code, refused.json["code"]) == (403, "tenant_suspended")
        driver.tell("finish")
        driver.expect("done")
        driver.finish()
    finally:
        driver.close()
    assert {path.name for path in shots.glob("*.png")} >= {
        "calls.png",
        "usage.png",
        "webhooks.png",
        "audit.png",
        "operator.png",
        "suspended.png",
    }
