"""The three layers import only downward, and no modules of a layer import each other in a circle:
import-linter's contracts in ``pyproject.toml``, checked here on the package as it is, and shown to
fail on a package that breaks them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"]


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(LINT, cwd=root, capture_output=True, text=True, env={"PYTHONPATH": str(root), "PATH": ""})


def test_the_package_keeps_its_layer_and_circle_contracts() -> None:
    out = _lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 kept, 0 broken" in out.stdout


def _verdicts(stdout: str) -> dict[str, str]:
    """Contract name -> KEPT / BROKEN, from lint-imports' summary lines."""
    return {line.rsplit(" ", 1)[0].split(":")[0]: line.rsplit(" ", 1)[1] for line in stdout.splitlines()
            if line.endswith((" KEPT", " BROKEN"))}


@pytest.mark.parametrize("additions, broken", [
    ({"core/metrics.py": "from mood.experiments import config"}, "Three layers"),  # an upward import
    ({"core/stats.py": "from mood.core import scores", "core/scores.py": "from mood.core import stats"},
     "No import circles between the modules of a layer"),
])
def test_the_contracts_catch_an_upward_import_and_a_circle(tmp_path: Path, additions: dict[str, str], broken: str) -> None:
    shutil.copytree(ROOT / "mood", tmp_path / "mood", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    for module, line in additions.items():
        with (tmp_path / "mood" / module).open("a") as f:
            f.write(f"\n{line}  # noqa\n")
    verdicts = _verdicts(_lint(tmp_path).stdout)
    assert verdicts[broken] == "BROKEN" and list(verdicts.values()).count("BROKEN") == 1, verdicts
