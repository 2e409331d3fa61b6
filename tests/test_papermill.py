"""A chapter runs under plain papermill, as a CI user would run it: the kernel and its language come
from the chapter's own header (jupytext.toml keeps ``kernelspec``), not from ``-k`` or ``--language``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHEAP = "01_ood_problem"  # data and protocol tables only: nothing is trained


def test_every_chapter_names_its_kernel() -> None:
    import jupytext

    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        spec = jupytext.read(path).metadata.get("kernelspec", {})
        assert spec.get("name") == "python3" and spec.get("language") == "python", path.name


@pytest.mark.book
@pytest.mark.needs_fmnist
@pytest.mark.usefixtures("require_fmnist")
def test_a_chapter_runs_with_plain_papermill(tmp_path: Path) -> None:
    env = {**os.environ, "MOOD_ARTIFACTS": str(tmp_path / "artifacts"), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MOOD_PROFILE", None)
    source, notebook, executed, results = (ROOT / "notebooks" / f"{CHEAP}.py", tmp_path / f"{CHEAP}.ipynb",
                                           tmp_path / "out.ipynb", tmp_path / "results")
    convert = subprocess.run([str(BIN / "jupytext"), "--to", "ipynb", str(source), "-o", str(notebook)],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert convert.returncode == 0, convert.stderr
    run = subprocess.run([str(BIN / "papermill"), str(notebook), str(executed), "-p", "profile", "smoke",
                          "-p", "results_dir", str(results)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    nb = json.loads(executed.read_text())
    assert nb["metadata"]["papermill"]["parameters"] == {"profile": "smoke", "results_dir": str(results)}
    assert any(cell.get("outputs") for cell in nb["cells"] if cell["cell_type"] == "code")
    assert {p.name for p in results.iterdir()} >= {"01_datasets.csv", "01_protocols.csv"}
