"""The README and docs/: every relative link leads to a file that exists, every doc is reachable
from the README, and the README stays a five-minute read."""

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
