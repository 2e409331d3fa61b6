"""``make clean`` removes what runs leave behind and never a tracked file (results/cpu and results/gpu
are the committed results of record)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not (shutil.which("make") and shutil.which("git") and (ROOT / ".git").exists()),
                                reason="needs make, git and a git checkout")


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A clone of HEAD with this tree's Makefile (the one under test), and no virtual environment."""
    repo = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    shutil.copy(ROOT / "Makefile", repo / "Makefile")
    return repo


def _make_clean(repo: Path, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("MOOD_ARTIFACTS", "MAKEFLAGS", "MFLAGS")}
    return subprocess.run(["make", "-s", "-C", str(repo), "clean"], env=base | env, capture_output=True, text=True,
                          timeout=60)


def test_clean_removes_untracked_outputs_and_keeps_every_tracked_file(checkout: Path) -> None:
    tracked = _git(checkout, "ls-files", "results").split()
    assert tracked, "the clone holds no committed results"
    made = ["artifacts/pretrain/abc/spec.json", "results/cpu/new.csv", "results/smoke/01_datasets.csv",
            "_build/html/index.html", "book/chapters/01_ood_problem.ipynb"]
    for rel in made:
        (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
        (checkout / rel).write_text("x\n")
    (checkout / tracked[0]).write_text("edited\n")  # a modified tracked file is still tracked: kept

    proc = _make_clean(checkout)
    assert proc.returncode == 0, proc.stderr
    for rel in made:
        assert not (checkout / rel).exists(), rel
    for rel in ("artifacts", "results/cpu/new.csv", "results/smoke", "_build", "book/chapters"):
        assert f"removed {rel}" in proc.stdout, proc.stdout  # each removal is printed
    assert all((checkout / f).is_file() for f in tracked)
    status = _git(checkout, "status", "--porcelain").splitlines()
    assert not [s for s in status if "D" in s[:2]], status
    assert (checkout / tracked[0]).read_text() == "edited\n"


def test_clean_takes_the_cache_from_mood_artifacts_and_never_a_folder_holding_the_checkout(checkout: Path,
                                                                                            tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (cache / "pretrain").mkdir(parents=True)
    assert _make_clean(checkout, MOOD_ARTIFACTS=str(cache)).returncode == 0
    assert not cache.exists()
    for unsafe in (str(checkout), str(tmp_path), "results"):  # the checkout, a folder above it, tracked files
        proc = _make_clean(checkout, MOOD_ARTIFACTS=unsafe)
        assert proc.returncode == 0 and "left alone" in proc.stderr, proc.stderr
        assert (checkout / "Makefile").is_file() and _git(checkout, "ls-files", "results")
    assert not [s for s in _git(checkout, "status", "--porcelain").splitlines() if "D" in s[:2]]
