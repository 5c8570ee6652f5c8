"""The layout's layers (docs/architecture.md), enforced: import-linter's contracts in
pyproject.toml."""

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_import_follows_the_layers():
    """lint-imports keeps every contract: nothing imports views, the service layer and below
    know nothing of Flask, the testing package stands alone."""
    command = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert command, "import-linter is not installed (requirements-dev.txt)"
    run = subprocess.run(
        [command, "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "4 kept, 0 broken" in run.stdout


def test_every_module_has_its_layer():
    """Each module of the package is named in the layers contract (the testing package in its
    own), so a new one is placed on purpose (import-linter ignores a module no layer names)."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    by_id = {contract["id"]: contract for contract in contracts["contracts"]}
    named = {name.strip() for layer in by_id["layers"]["layers"] for name in layer.split("|")}
    named |= {m.removeprefix("tokensvc.") for m in by_id["testing-stands-alone"]["source_modules"]}
    modules = {
        path.stem if path.suffix == ".py" else path.name
        for path in (ROOT / "tokensvc").iterdir()
        if (path.suffix == ".py" and path.stem not in ("__init__", "__main__"))
        or (path / "__init__.py").exists()
    }
    assert modules - named == set()
