"""Where the book lives: the repository root, the chapter sources and their executed notebooks, the
code a run's output came from, and Jupyter Book's rendering of the whole.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
CHAPTERS_DIR = Path("book") / "chapters"
JOURNAL = CHAPTERS_DIR / ".unfinished-run.json"  # a run of record in progress: the chapters it finished
LEDGERS = CHAPTERS_DIR / ".ledgers"  # each chapter's training ledger (mood.core.cache.read_ledger)


def chapters(notebooks: Path = NOTEBOOKS) -> list[Path]:
    """The chapter sources, in order: ``notebooks/NN_name.py``."""
    return sorted(p for p in notebooks.glob("*.py") if re.match(r"\d\d_", p.name))


def code_fingerprint(notebooks: Path = NOTEBOOKS) -> str:
    """sha256 over the chapter sources in ``notebooks`` and the modules of the ``mood`` package that
    runs them (file names and contents): the code a chapter's output came from, committed or not."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parents[1]  # mood/
    for base, files in ((package, sorted(package.rglob("*.py"))), (notebooks, chapters(notebooks))):
        for f in files:
            digest.update(f"{f.relative_to(base)}\0".encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()


def jupyter_book(root: Path = REPO) -> Path:
    """Jupyter Book 1 over ``root`` (its ``_config.yml`` / ``_toc.yml``), warnings as errors: the
    first page's status note (``book/_edition.md``) must be written first. Returns the HTML folder."""
    exe = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or "jupyter-book"
    proc = subprocess.run([exe, "build", str(root), "--all", "-W", "--keep-going", "--path-output", str(root)],
                          capture_output=True, text=True, env={**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
    if proc.returncode != 0:
        raise RuntimeError(f"jupyter-book build failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return root / "_build" / "html"
