"""The README and docs/: every relative link leads to a file that exists, every doc is reachable
from the README, and the README stays a five-minute read."""

import json
import re

import pytest

from support.processes import ROOT

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
