"""`make run` (scripts/dev) is safe by default: loopback only, and no silent LiveKit fallback."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import jwt
import pytest

from support.livekit import MEDIA_IP, find_livekit_server
from support.processes import ROOT, listening, livekit_settings, unavailable
from support.servers import HttpService
from support.tokens import BODY, TENANT_SECRET, Tenants
from tokensvc.testing.processes import find_free_port

VENV_BIN = str(Path(sys.executable).parent)
pytestmark = pytest.mark.slow


def dev_env(**settings) -> dict:
    """The environment `make run` gives scripts/dev, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "AUTH_"))}
    return {
        **env,
        "PATH": f"{VENV_BIN}:{env['PATH']}",
        "AUTH_JWT_SECRET": TENANT_SECRET,
        **settings,
    }


def test_service_listens_on_loopback_only(livekit, free_port):
    """With LIVEKIT_URL given (no development LiveKit started), gunicorn binds 127.0.0.1."""
    env = dev_env(PORT=str(free_port), **livekit_settings(livekit))
    process = subprocess.Popen(
        [str(ROOT / "scripts" / "dev")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
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
        result = subprocess.run(
            [str(ROOT / "scripts" / "dev")],
            cwd=ROOT,
            env=dev_env(PORT=str(free_port)),
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        blocker.close()
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"make run: port {free_port} is already in use; stop what listens there, or choose "
        f"another with PORT=8001 make run"
    ]
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
        result = subprocess.run(
            [str(ROOT / "scripts" / "dev")],
            cwd=ROOT,
            env=dev_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        blocker.close()
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "make run: port 7880 is already in use; stop what listens there, "
        "or set LIVEKIT_URL to use it"
    ]


class DevRun:
    """scripts/dev started as `make run` starts it, in a session of its own (as a terminal's
    foreground job), until `interrupt()` sends it Ctrl-C; what it prints goes to a file, which
    `output()` reads while it runs."""

    def __init__(self, prefix=(), **settings):
        """Start it (after the command `prefix`, if any) with `settings` on top of `make run`'s
        environment."""
        self.file = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [*prefix, str(ROOT / "scripts" / "dev")],
            cwd=ROOT,
            env=dev_env(**settings),
            stdout=self.file,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            # A terminal's job gets Ctrl-C as SIGINT; the test runner may have it ignored.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )

    def output(self) -> str:
        """Everything it printed so far."""
        self.file.seek(0)
        return self.file.read()

    def wait_for(self, port: int) -> None:
        """Wait until something listens on `port` (in the script's network namespace)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not listening(port, self.process.pid):
            assert self.process.poll() is None, self.output()
            time.sleep(0.2)

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C: SIGINT to the whole process group; (exit status, everything printed)."""
        os.killpg(self.process.pid, signal.SIGINT)
        self.process.wait(timeout=60)
        output = self.output()
        self.file.close()
        return self.process.returncode, output


def get(url: str, headers=None) -> tuple[int, dict, str]:
    """GET `url`; (status, headers, body)."""
    with urllib.request.urlopen(
        urllib.request.Request(url, headers=headers or {}), timeout=10
    ) as answer:
        return answer.status, dict(answer.headers), answer.read().decode()


@pytest.fixture
def dev_ports():
    """Free ports for the service, LiveKit (and its RTC ports after it) and the example."""
    while True:
        ports = [find_free_port() for _ in range(3)]
        if not {ports[1] + 1, ports[1] + 2} & set(ports) and not listening(ports[1] + 1):
            return dict(zip(("PORT", "LIVEKIT_PORT", "EXAMPLE_PORT"), map(str, ports), strict=True))


def test_make_run_on_all_interfaces_tells_the_truth(dev_ports, media_network):
    """BIND=0.0.0.0: LiveKit and the browser example listen on every interface too, the token
    names a livekit_url other devices reach (this machine's address, not 127.0.0.1), CORS lets
    the example's origin in, LiveKit's log is in the file named, nothing warns about the
    development secret, and Ctrl-C stops everything with exit 0 and no traceback."""
    if find_livekit_server()[0] is None:
        unavailable("make run's LiveKit here is the real livekit-server")
    run = DevRun(BIND="0.0.0.0", **dev_ports)
    port, livekit_port, example_port = (int(dev_ports[key]) for key in dev_ports)
    try:
        run.wait_for(port)
        status, headers, page = get(f"http://{MEDIA_IP}:{example_port}/index.html")
        assert status == 200 and "call.js" in page
        token = subprocess.run(
            [
                f"{VENV_BIN}/flask",
                "--app",
                "tokensvc:create_app()",
                "tenant-token",
                "--tenant",
                "acme",
            ],
            cwd=ROOT,
            env={**dev_env(), "LOG_LEVEL": "ERROR"},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        answer = HttpService()
        answer.url = f"http://{MEDIA_IP}:{port}"
        status, body, headers = answer.post(
            "/livekit/token",
            BODY,
            {"Authorization": f"Bearer {token}", "Origin": f"http://{MEDIA_IP}:{example_port}"},
        )
        assert status == 200, body
        assert body["livekit_url"] == f"ws://{MEDIA_IP}:{livekit_port}"
        assert headers["Access-Control-Allow-Origin"] == f"http://{MEDIA_IP}:{example_port}"
        assert listening(port) == {"0.0.0.0"}
        assert listening(livekit_port) & {"0.0.0.0", "::"}
    finally:
        code, output = run.interrupt()
    assert code == 0, output
    assert output.rstrip().endswith("make run: stopped")
    assert "Traceback" not in output and "InsecureKeyLength" not in output
    assert "log in instance/livekit.log" in output
    assert "starting LiveKit server" in (ROOT / "instance" / "livekit.log").read_text()
    assert f"http://{MEDIA_IP}:{example_port}/#service=http://{MEDIA_IP}:{port}&tenant=" in output
    assert "Without a bearer token" not in output  # auth is required: no anonymous curl offered


def test_make_token_takes_a_tenant_and_a_ttl():
    """`make token TENANT=globex TTL=120` prints a tenant token for globex valid for 120 s."""
    result = subprocess.run(
        ["make", "--no-print-directory", "token", "TENANT=globex", "TTL=120"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    claims = jwt.decode(
        result.stdout.strip(), "development-tenant-secret-change-me", algorithms=["HS256"]
    )
    assert claims["sub"] == "globex" and claims["exp"] - claims["iat"] == 120


def readme_block(heading: str) -> str:
    """The first ```sh block under `heading` in the README, as written there."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(heading) :]
    return section[
        section.index("```sh\n") + 6 : section.index("```", section.index("```sh\n") + 6)
    ]


def test_the_readmes_first_token_commands_work_as_pasted(media_network):
    """`make run` on its default ports, then the README's curl block, pasted into a shell: the
    first tenant gets its token, the other a 403 room_forbidden."""
    if find_livekit_server()[0] is None:
        unavailable("make run's LiveKit here is the real livekit-server")
    for port in (8000, 7880, 8090):
        assert not listening(port), f"port {port} is taken; the README's commands use it"
    run = DevRun()
    try:
        run.wait_for(8000)
        pasted = subprocess.run(
            ["bash", "-c", readme_block("## Your first token, with curl")],
            cwd=ROOT,
            env=dev_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        code, output = run.interrupt()
    assert pasted.returncode == 0, pasted.stderr
    granted, refused = (json.loads(line) for line in pasted.stdout.splitlines())
    assert granted["room_name"] == "acme-room" and granted["token"].count(".") == 2
    assert granted["livekit_url"] == "ws://127.0.0.1:7880"
    assert refused["code"] == "room_forbidden"
    assert code == 0, output


def test_make_run_says_when_only_loopback_is_there(dev_ports):
    """On a machine with only `lo` (a network namespace of its own), make run says in one line
    that media needs another address, and with BIND=0.0.0.0 that other devices cannot reach it;
    it still starts, and the token's livekit_url stays on loopback."""
    if os.geteuid() != 0 or subprocess.run(["unshare", "-n", "true"]).returncode != 0:
        unavailable("a machine with only loopback is made with `unshare -n` (root)")
    loopback_only = ["unshare", "-n", "bash", "-c", 'ip link set lo up && exec "$0"']
    run = DevRun(loopback_only, BIND="0.0.0.0", **dev_ports)
    try:
        run.wait_for(int(dev_ports["PORT"]))
    finally:
        code, output = run.interrupt()
    assert code == 0, output
    assert (
        "make run: BIND=0.0.0.0, but this machine has no address besides loopback: other "
        "devices cannot reach it"
    ) in output
    assert "Media needs an address besides loopback, and this machine has none" in output
    assert f"(LiveKit for clients: ws://127.0.0.1:{dev_ports['LIVEKIT_PORT']})" in output


def doc_block(page: str, text: str) -> str:
    """The one ```sh block of docs/`page` that contains `text`, as written there."""
    blocks = (ROOT / "docs" / page).read_text().split("```sh\n")[1:]
    (block,) = [block.split("```")[0] for block in blocks if text in block.split("```")[0]]
    return block


def test_the_docs_commands_beside_make_run_work_as_pasted():
    """`make run` on its default ports, then docs/development.md's curl block, docs/usage.md's
    usage request and export and docs/webhooks.md's subscription, pasted into one shell in
    turn: each answers what the docs show."""
    for port in (8000, 7880, 8090):
        assert not listening(port), f"port {port} is taken; the docs' commands use it"
    run = DevRun()
    try:
        run.wait_for(8000)
        pasted = subprocess.run(
            [
                "bash",
                "-e",
                "-c",
                # An error's body ends without a newline: one between the blocks' answers.
                "\necho\n".join(
                    [
                        doc_block("development.md", "OTHER=$(make -s token TENANT=globex)"),
                        doc_block("usage.md", "/livekit/usage?from="),
                        doc_block("webhooks.md", "/livekit/webhook-endpoints"),
                        doc_block("usage.md", "make -s usage"),
                    ]
                ),
            ],
            cwd=ROOT,
            env={**dev_env(), "PATH": f"{ROOT / '.venv' / 'bin'}:{dev_env()['PATH']}"},
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        code, output = run.interrupt()
    assert pasted.returncode == 0, pasted.stderr
    lines = [line for line in pasted.stdout.splitlines() if line]
    granted, refused, usage, endpoint = (json.loads(line) for line in lines[:4])
    assert granted["room_name"] == "acme-room" and refused["code"] == "room_forbidden"
    assert usage["from"] == "2026-01-01T00:00:00.000Z" and "participant_seconds" in usage
    assert endpoint["url"] == "https://app.example/hooks/livekit"
    assert endpoint["secret"].startswith("whsec_")
    assert lines[4:].count("tenant,participant_seconds,room_seconds,rooms") == 2
    assert code == 0, output


def answers_at_root(port: int) -> bool:
    """Whether GET / on `port` answers 200: livekit-server does ("OK"), the emulator does not."""
    try:
        return get(f"http://127.0.0.1:{port}/")[0] == 200
    except OSError:
        return False


def test_make_run_serves_on_the_emulator_while_the_server_builds_then_moves_to_it(
    dev_ports, tmp_path
):
    """While scripts/livekit-server's background build runs (here a stand-in process with its
    pid file), make run serves on the emulator and says so; when the built server appears and
    the build ends, make run starts it in the emulator's place and restarts the service on it,
    which then hands out tokens as before."""
    binary = find_livekit_server()[0]
    if binary is None:
        unavailable("the build's result here is the real livekit-server")
    if shutil.which("livekit-server", path=dev_env()["PATH"]):
        unavailable("a livekit-server on PATH is used as it is: nothing would be built")
    cache = tmp_path / "cache" / "tokensvc" / "livekit-server-v1.13.5"
    cache.mkdir(parents=True)
    build = subprocess.Popen(["sleep", "600"])
    (cache / "build.pid").write_text(f"{build.pid}\n")
    (cache / "build.log").write_text("go: downloading github.com/livekit/protocol v1\n")
    port, livekit_port = int(dev_ports["PORT"]), int(dev_ports["LIVEKIT_PORT"])
    run = DevRun(XDG_CACHE_HOME=str(tmp_path / "cache"), **dev_ports)
    try:
        run.wait_for(port)
        assert not answers_at_root(livekit_port)  # the emulator
        (cache / "server").symlink_to(binary)
        build.terminate()
        build.wait(10)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not answers_at_root(livekit_port):
            time.sleep(0.2)
        assert answers_at_root(livekit_port)
        restarted = "make run: the service restarted on it; the browser call works from now on"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and restarted not in run.output():
            time.sleep(0.2)
        deadline = time.monotonic() + 60
        status, token = 0, Tenants().token("acme")
        while time.monotonic() < deadline and status != 200:
            answer = HttpService()
            answer.url = f"http://127.0.0.1:{port}"
            try:
                status, body, _ = answer.post(
                    "/livekit/token", BODY, {"Authorization": f"Bearer {token}"}
                )
            except OSError:
                time.sleep(0.5)
        assert status == 200 and body["livekit_url"] == f"ws://127.0.0.1:{livekit_port}"
    finally:
        build.kill()
        build.wait()
        code, output = run.interrupt()
    assert code == 0, output
    assert "LiveKit: the RoomService emulator (no media) stands in" in output
    assert "building livekit-server v1.13.5: 1 modules downloaded" in output
    assert "make run: livekit-server is built: LiveKit is now livekit-server --dev" in output
    assert restarted in output
