"""The README and docs/: every relative link leads to a file that exists, every doc is reachable
from the README, the README stays a five-minute read, and the docs' commands run as written
(those that need make run running: tests/test_dev_script.py)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from support.processes import ROOT, base_environment

#: make run's development tenant key (the Makefile's DEV_TENANT_SECRET).
DEVELOPMENT_TENANT_SECRET = "development-tenant-secret-change-me"

DOCS = sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")


@pytest.mark.parametrize(
    "page", [ROOT / "README.md", ROOT / "SECURITY.md", *DOCS], ids=lambda page: page.name
)
def test_relative_links_resolve(page):
    """Each link that is not a URL names a file in the repository."""
    for target, _ in LINK.findall(page.read_text()):
        if "://" not in target:
            assert (page.parent / target).exists(), f"{page.name}: {target}"


def test_every_doc_is_reachable_from_the_readme():
    """The README links every page in docs/."""
    linked = {target for target, _ in LINK.findall((ROOT / "README.md").read_text())}
    assert {f"docs/{page.name}" for page in DOCS} <= linked


def test_the_readme_is_short():
    """What a first-time reader needs, in under 150 lines; the rest lives in docs/."""
    assert len((ROOT / "README.md").read_text().splitlines()) < 150


def test_the_readme_shows_the_whole_token_response():
    """The README's summary of the token route's answer and its curl example's answer name
    exactly the fields the response schema requires (participant_token, server_url too)."""
    from tokensvc.schemas import TokenResponseSchema

    required = {name for name, field in TokenResponseSchema().fields.items() if field.required}
    text = (ROOT / "README.md").read_text()
    summary = re.search(r"returns\s+`\{([^}]+)\}`", text).group(1)
    assert {name.strip() for name in summary.split(",")} == required
    curl_answer = re.search(r"# (\{\"livekit_url\".*?\})\n", text.replace("\n#  ", ""), re.S)
    assert set(json.loads(curl_answer.group(1).replace('"eyJ..."', '"t"'))) == required


def sh_blocks(page: str) -> list[str]:
    """Every ```sh block of a page, as written there."""
    return re.findall(r"```sh\n(.*?)```", (ROOT / page).read_text(), re.S)


def block_with(page: str, text: str) -> str:
    """The one ```sh block of `page` that contains `text`."""
    (block,) = [block for block in sh_blocks(page) if text in block]
    return block


def run_block(block: str, **settings: str) -> subprocess.CompletedProcess:
    """Paste `block` into bash (stopping at the first failing command) from the repository's
    root, with none of the service's settings but `settings`, and `.venv/bin` on PATH."""
    base = base_environment()
    path = f"{ROOT / '.venv' / 'bin'}:{Path(sys.executable).parent}:{base['PATH']}"
    return subprocess.run(
        ["bash", "-e", "-c", block],
        cwd=ROOT,
        env={**base, "PATH": path, **settings},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_the_token_commands_with_claims_run_as_written():
    """docs/development.md's `make token` lines with claims print tokens with those claims,
    signed with make run's development tenant key."""
    result = run_block(block_with("docs/development.md", "SCOPE="))
    assert result.returncode == 0, result.stderr
    claimed, bound = (
        jwt.decode(line, DEVELOPMENT_TENANT_SECRET, algorithms=["HS256"])
        for line in result.stdout.split()
    )
    assert claimed["sub"] == "acme" and claimed["scope"] == "tokens:create rooms:read"
    assert claimed["roles"] == ["speaker", "viewer"]
    assert claimed["max_rooms"] == 3 and claimed["plan"] == "gold"
    assert bound["uid"] == "alice"


@pytest.mark.slow
def test_the_usage_export_runs_as_written(tmp_path):
    """docs/usage.md's export: `tokensvc usage` with the service's settings in the environment
    (a tenant key and a storage; no LiveKit), and `make usage` beside make run, each print the
    CSV report."""
    result = run_block(
        block_with("docs/usage.md", "tokensvc usage"),
        AUTH_JWT_SECRET=DEVELOPMENT_TENANT_SECRET,
        STORAGE_URL=f"sqlite:///{tmp_path}/holds.sqlite3",
        LOG_LEVEL="ERROR",
    )
    assert result.returncode == 0, result.stderr
    header = "tenant,participant_seconds,room_seconds,rooms"
    assert result.stdout.splitlines().count(header) == 2, result.stdout
