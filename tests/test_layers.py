"""The layout's layers (docs/architecture.md), enforced: import-linter's contracts in setup.cfg."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_import_follows_the_layers():
    """lint-imports keeps every contract: nothing imports views, the service layer and below
    know nothing of Flask, the testing package stands alone."""
    command = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert command, "import-linter is not installed (requirements-dev.txt)"
    run = subprocess.run(
        [command, "--config", str(ROOT / "setup.cfg")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "4 kept, 0 broken" in run.stdout
