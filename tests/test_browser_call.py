"""The browser example (examples/browser) is really a call: two headless Chromiums with fake
media join one room through the service on the real livekit-server and hear each other."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from support.processes import ROOT, unavailable
from support.servers import DirectoryServer

EXAMPLE = ROOT / "examples" / "browser"
NODE_DIR = Path(__file__).resolve().parent / "node"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [pytest.mark.slow, pytest.mark.livekit_server("livekit-server")]


@pytest.fixture
def example_page():
    """The example's folder served on its own loopback origin."""
    for needed in (EXAMPLE / "node_modules" / "livekit-client", NODE_DIR / "node_modules"):
        if not needed.is_dir():
            unavailable(f"{needed.relative_to(ROOT)} is missing: run `make install` with npm")
    if CHROMIUM is None or shutil.which("node") is None:
        unavailable("chromium and node are needed (make test installs chromium)")
    server = DirectoryServer(EXAMPLE)
    yield server
    server.stop()


def test_two_browsers_hear_each_other(
    make_app, serve, tenants, livekit, media_network, example_page, tmp_path
):
    """Alice (TokenSource) and Bob (plain fetch) each get a token from the service, join, publish
    the fake microphone and receive the other's audio (bytes above 0); screenshots are saved in
    the test's temporary folder."""
    service = serve(make_app(CORS_ALLOWED_ORIGINS=example_page.url, AUTH_REQUIRED="true"))
    env = {
        **os.environ,
        "PAGE_URL": example_page.url + "/index.html",
        "SERVICE_URL": service.url,
        "CHROMIUM": CHROMIUM,
        "SCREENSHOTS": str(tmp_path),
        "TENANT_TOKEN": tenants.headers("acme")["Authorization"].removeprefix("Bearer "),
    }
    run = subprocess.run(
        ["node", "--test", "browser-call.test.mjs"],
        cwd=NODE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "bytes received: alice from bob" in run.stdout
    assert {path.name for path in tmp_path.glob("*.png")} == {"alice.png", "bob.png"}
    assert livekit.get_room("browser-call") is not None
