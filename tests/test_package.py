"""The distribution: one version, every imported distribution declared, and a wheel that a
fresh environment installs and embeds."""

import ast
import importlib.metadata
import json
import re
import signal
import subprocess
import sys
import tarfile
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

import tokensvc
from support.processes import ROOT, base_environment, livekit_settings
from support.servers import HttpService
from support.tokens import BODY, TENANT_SECRET, WEBHOOK_SECRETS_KEY, Tenants
from tokensvc.testing.processes import find_free_port, wait_for_port

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
#: The runtime's wheels, downloaded by `make install` (the suite itself may run offline).
WHEELHOUSE = Path(sys.executable).parent.parent / "wheelhouse"
#: Modules that only the extras' users import: the server's processes and the emulator.
EXTRA_MODULES = {"processes": "server", "testing": "testing"}


def requirement_names(requirements) -> set[str]:
    """The normalised distribution names of requirement strings."""
    return {
        re.split(r"[<>=!~\[; ]", line.strip())[0].lower().replace("_", "-") for line in requirements
    }


def imported_top_levels(path: Path) -> set[str]:
    """The absolute top-level modules a source file imports, anywhere in it."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"tokensvc"}


def test_every_imported_distribution_is_declared():
    """Each distribution the package imports directly is a dependency (or, for the server glue,
    the emulator and the Redis client, one of the extras that documents it)."""
    owners = importlib.metadata.packages_distributions()
    base = requirement_names(PROJECT["dependencies"])
    extras = {
        name: requirement_names(reqs) for name, reqs in PROJECT["optional-dependencies"].items()
    }
    missing = []
    for path in sorted((ROOT / "tokensvc").rglob("*.py")):
        part = path.relative_to(ROOT / "tokensvc").parts[0].removesuffix(".py")
        allowed = base | extras.get(EXTRA_MODULES.get(part, "redis"), set())
        for module in imported_top_levels(path):
            distributions = {
                name.lower().replace("_", "-") for name in owners.get(module, [module])
            }
            if not distributions & allowed:
                missing.append(f"{path.relative_to(ROOT)}: {module} ({', '.join(distributions)})")
    assert missing == []
    assert {"livekit-protocol", "protobuf", "cryptography", "werkzeug", "click"} <= base


def test_one_version_everywhere(client):
    """The package, its installed metadata and the OpenAPI document say the same version, and
    the changelog has a section for what is not released yet."""
    assert re.fullmatch(r"\d+\.\d+\.\d+", tokensvc.__version__)
    assert importlib.metadata.version("tokensvc") == tokensvc.__version__
    assert client.get("/openapi.json").json["info"]["version"] == tokensvc.__version__
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog and "keepachangelog.com" in changelog


def test_license_is_the_one_the_metadata_names():
    """LICENSE is the MIT licence the metadata declares, with its holder."""
    assert PROJECT["license"] == "MIT" and PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "The tokensvc authors" in text


#: A host app in the fresh environment: mounts the installed package, asks for one token.
HOST_SCRIPT = """
import json, sys
from flask import Flask
import tokensvc
from tokensvc import TokenService

app = Flask("host")
app.config.update(json.loads(sys.argv[1]))
TokenService(app, url_prefix="/api/rtc")
answer = app.test_client().post("/api/rtc/livekit/token", json=json.loads(sys.argv[2]),
                                headers={"Authorization": "Bearer " + sys.argv[3]})
print(json.dumps({"status": answer.status_code, "body": answer.json,
                  "module": tokensvc.__file__, "version": tokensvc.__version__}))
"""


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """The folder `python -m build` made an sdist and a wheel in, once for this module."""
    assert WHEELHOUSE.is_dir(), "make install downloads the runtime's wheels to .venv/wheelhouse"
    folder = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(folder), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return folder


def fresh_venv(path: Path, requirement: str) -> Path:
    """A new venv at `path` with `requirement` installed from the wheelhouse; its bin folder."""
    venv.create(path, with_pip=True)
    subprocess.run(
        [
            str(path / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-index",
            "--find-links",
            str(WHEELHOUSE),
            requirement,
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return path / "bin"


@pytest.mark.slow
def test_wheel_installs_in_a_fresh_venv_and_embeds(tmp_path, livekit, dist):
    """`python -m build` makes an sdist and a wheel; the wheel, installed with its dependencies
    resolved into an empty venv, mounts in a host app and gets a token from LiveKit."""
    version = tokensvc.__version__
    (wheel,) = dist.glob(f"tokensvc-{version}-py3-none-any.whl")
    (sdist,) = dist.glob(f"tokensvc-{version}.tar.gz")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(f"tokensvc-{version}.dist-info/METADATA").decode()
    assert f"tokensvc-{version}.dist-info/licenses/LICENSE" in names
    assert "tokensvc/py.typed" in names and "tokensvc/testing/emulator.py" in names
    assert "License-Expression: MIT" in metadata
    assert not any(name.startswith(("tests/", "examples/")) for name in names)
    # The console's templates, its own script and style, and the vendored htmx and uPlot that
    # scripts/console-assets copied into the tree (make install), none of node_modules.
    console = ROOT / "tokensvc" / "console"
    shipped = {
        path.relative_to(ROOT).as_posix()
        for folder in ("templates", "static")
        for path in (console / folder).rglob("*")
        if path.is_file()
    }
    assert "tokensvc/console/templates/console/calls.html" in shipped
    assert "tokensvc/console/static/console.js" in shipped
    assert shipped <= set(names)
    assert not any("node_modules" in name or "/assets/" in name for name in names)
    with tarfile.open(sdist) as archive:
        members = {Path(name).name for name in archive.getnames()}
    assert {"LICENSE", "pyproject.toml", "README.md"} <= members

    environment = tmp_path / "venv"
    python = fresh_venv(environment, str(wheel)) / "python"
    settings = {
        **livekit_settings(livekit),
        "AUTH_JWT_SECRET": TENANT_SECRET,
        "TENANT_WEBHOOK_SECRETS_KEY": WEBHOOK_SECRETS_KEY,
        "STORAGE_URL": f"sqlite:///{tmp_path}/holds.sqlite3",
    }
    run = subprocess.run(
        [
            str(python),
            "-I",
            "-c",
            HOST_SCRIPT,
            json.dumps(settings),
            json.dumps(BODY),
            Tenants().token("acme"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.splitlines()[-1])
    assert result["module"].startswith(str(environment))
    assert result["version"] == version
    assert result["status"] == 200 and result["body"]["room_name"] == BODY["room_name"]
    assert json.loads(livekit.get_room(BODY["room_name"]).metadata) == {"auth_id": "acme"}


@pytest.mark.slow
def test_the_wheel_with_the_server_extra_serves_from_any_folder(tmp_path, livekit, dist):
    """`pip install 'tokensvc[server]'` into an empty venv, then, in a folder with no file of
    the repository: `tokensvc --help` lists the commands, `tokensvc tenant-token` mints a tenant
    token and `tokensvc serve` (on $PORT) answers the token route with it."""
    (wheel,) = dist.glob(f"tokensvc-{tokensvc.__version__}-py3-none-any.whl")
    bin_folder = fresh_venv(tmp_path / "venv", f"{wheel}[server]")
    command = str(bin_folder / "tokensvc")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    base = base_environment()
    env = {
        **base,
        "PYTHONPATH": "",
        **livekit_settings(livekit),
        "AUTH_JWT_SECRET": TENANT_SECRET,
        "STORAGE_URL": f"sqlite:///{tmp_path}/holds.sqlite3",
        "WEB_CONCURRENCY": "1",
        "LOG_LEVEL": "ERROR",
    }
    listed = subprocess.run(
        [command, "--help"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    commands = listed.stdout.split("Commands:")[1]
    assert {"serve", "worker", "tenant-token", "usage"} <= {
        line.split()[0] for line in commands.splitlines() if line.strip()
    }
    minted = subprocess.run(
        [command, "tenant-token", "--tenant", "acme"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    port = find_free_port()
    server = subprocess.Popen(
        [command, "serve"],
        cwd=elsewhere,
        env={**env, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, server, 60, "tokensvc serve")
        service = HttpService()
        service.url = f"http://127.0.0.1:{port}"
        status, body, _ = service.post(
            "/livekit/token", BODY, {"Authorization": f"Bearer {minted.stdout.strip()}"}
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    assert status == 200, body
    assert json.loads(livekit.get_room(BODY["room_name"]).metadata) == {"auth_id": "acme"}
