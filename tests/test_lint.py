"""The code reads one way: ruff (pyflakes, pycodestyle, sorted imports; the settings in pyproject.toml)
finds nothing in the library, the chapters, the tests and the benchmarks."""

from __future__ import annotations

import subprocess
import sys

from mood.book import runner as book


def test_ruff_finds_nothing() -> None:
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "mood", "notebooks", "tests", "benchmarks"],
                          cwd=book.REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
