"""Runs the chapters with papermill and builds the Jupyter Book.

``python -m mood book run --profile smoke`` executes every ``notebooks/NN_*.py`` (jupytext
py:percent) in order into ``book/chapters/NN_*.ipynb``; ``python -m mood book build`` does that and
then renders ``_build/html`` with Jupyter Book 1 (execution off, warnings as errors). A failing
chapter stops the run, names the notebook and cell, and keeps the partly executed notebook.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
CHAPTERS_DIR = Path("book") / "chapters"


class NotebookFailed(RuntimeError):
    """A chapter raised while executing."""


def chapters(notebooks: Path = NOTEBOOKS) -> list[Path]:
    """The chapter sources, in order: ``notebooks/NN_name.py``."""
    return sorted(p for p in notebooks.glob("*.py") if re.match(r"\d\d_", p.name))


def execute(source: Path, output: Path, parameters: dict, cwd: Path, kernel: str = "python3") -> float:
    """Executes one jupytext notebook with papermill into ``output``; returns the wall time.

    Raises:
        NotebookFailed: naming the notebook, the failing cell and the kept partial output.
    """
    import jupytext
    import papermill as pm

    nb = jupytext.read(source)
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": "Python 3", "language": "python"}
    output.parent.mkdir(parents=True, exist_ok=True)
    staged = output.with_name(f".{output.stem}.input.ipynb")
    jupytext.write(nb, staged, fmt="ipynb")
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(staged), str(output), parameters=parameters, cwd=str(cwd), kernel_name=kernel,
                            progress_bar=False, request_save_on_cell_execute=True)
    except pm.PapermillExecutionError as err:
        raise NotebookFailed(f"{source.name}: cell {err.exec_count} raised {err.ename}: {err.evalue}\n"
                             f"the partly executed notebook is kept at {output}") from err
    finally:
        staged.unlink(missing_ok=True)
        if output.exists():
            show_one_parameters_cell(output)
    return time.perf_counter() - t0


def show_one_parameters_cell(path: Path) -> None:
    """Papermill adds its ``injected-parameters`` cell after the chapter's own ``parameters`` cell,
    so a page would show two. Keep one visible: the chapter's own, with its comments, its values
    set to those the run used; the injected cell stays in the notebook (papermill's record of the
    run) but is tagged ``remove-cell``, which Jupyter Book honours."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    tags = lambda c: c.metadata.setdefault("tags", [])  # noqa: E731
    own = next((c for c in nb.cells if "parameters" in tags(c)), None)
    injected = next((c for c in nb.cells if "injected-parameters" in tags(c)), None)
    if own is None or injected is None:
        return
    values = dict(re.findall(r"^(\w+) = (.*)$", injected.source, re.M))
    lines = []
    for line in own.source.splitlines():
        m = re.match(r"^(\w+) = (.*?)(\s+#.*)?$", line)
        if m and m.group(1) in values:
            line = f"{m.group(1)} = {values.pop(m.group(1))}{m.group(3) or ''}"
        lines.append(line)
    lines += [f"{k} = {v}" for k, v in values.items()]  # parameters the chapter did not declare
    own.source = "\n".join(lines)
    if "remove-cell" not in tags(injected):
        tags(injected).append("remove-cell")
    nbformat.write(nb, path)


def run(profile: str | None = None, root: Path = REPO, only: str | None = None, seed: int = 0,
        notebooks: Path = NOTEBOOKS, until: int | None = None) -> pd.DataFrame:
    """Executes the chapters of ``notebooks`` at ``profile`` (default: ``MOOD_PROFILE``, else ``cpu``)
    into ``root/book/chapters``, writing tables under ``root/results/<profile>``; returns wall times.

    Args:
        only: run just the chapters whose file name contains this (a partial run: its chapters'
            provenance joins ``provenance.json`` under ``partial_runs``; the whole run's timings stay).
        until: run chapters 1..``until`` in order, a run of record of those chapters (``until=9``:
            the main book), with its timings, provenance and headline.
    """
    from mood.artifacts import (LEDGER_ENV, provenance, read_ledger, record_partial_run, save_run_of_chapters,
                                save_table, training_note)
    from mood.config import get_profile
    from mood.summary import save_headline

    profile = get_profile(profile).name  # a wrong name fails before any chapter runs
    os.environ.setdefault("MOOD_PROGRESS", "0")  # progress bars would fill the executed notebooks
    rows = []
    with tempfile.TemporaryDirectory(prefix="mood-ledger-") as ledgers:
        for src in chapters(notebooks):
            if (only and only not in src.name) or (until is not None and int(src.name[:2]) > until):
                continue
            out = root / CHAPTERS_DIR / f"{src.stem}.ipynb"
            print(f"[book] {src.name} (profile {profile}) ...", file=sys.stderr, flush=True)
            ledger = Path(ledgers) / f"{src.stem}.jsonl"  # the chapter's training stages append to it
            os.environ[LEDGER_ENV] = str(ledger)
            try:
                seconds = execute(src, out, {"profile": profile, "seed": seed, "results_dir": f"results/{profile}"},
                                  cwd=root)
            finally:
                os.environ.pop(LEDGER_ENV, None)
            training = read_ledger(ledger)
            note = training_note(training)
            print(f"[book] {src.name} done in {seconds:.0f} s" + (f" ({note})" if note else ""), file=sys.stderr, flush=True)
            rows.append({"chapter": src.stem, "seconds": round(seconds, 1), **training})
        run_training = read_ledger(*sorted(Path(ledgers).glob("*.jsonl")))
    timings = pd.DataFrame(rows)

    results = root / "results" / profile
    if only:
        if rows:
            record_partial_run(results, provenance(profile, timings.set_index("chapter"), root, run_training))
            head = results / "headline.csv"  # the chapters' figures join the headline; a whole book's time stays
            save_headline(results, whole_book=head.exists() and "book_seconds" in set(pd.read_csv(head)["figure"]))
    else:
        save_table(timings.set_index("chapter"), results / "_timings.csv")
        save_run_of_chapters(provenance(profile, timings.set_index("chapter"), root, run_training), results,
                             whole_book=until is None)
        save_headline(results, whole_book=until is None)
    return timings


def build_html(root: Path = REPO) -> Path:
    """Jupyter Book 1 over ``root`` (its ``_config.yml`` / ``_toc.yml``), warnings as errors.
    Returns the HTML folder."""
    from mood.edition import STATUS_FILE, write_status

    if not (root / STATUS_FILE).exists():  # the first page includes it
        write_status(root, None)
    exe = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or "jupyter-book"
    proc = subprocess.run([exe, "build", str(root), "--all", "-W", "--keep-going", "--path-output", str(root)],
                          capture_output=True, text=True, env={**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
    if proc.returncode != 0:
        raise RuntimeError(f"jupyter-book build failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return root / "_build" / "html"


def build(profile: str | None = None, root: Path = REPO, seed: int = 0) -> Path:
    """:func:`run` then :func:`build_html` (the first page says the book was executed now)."""
    from mood.edition import write_status

    run(profile, root, seed=seed)
    write_status(root, None)
    return build_html(root)


def chapter_setup(profile: str, seed: int = 0):
    """The first call of every chapter: work from the book's root (so a student running the
    notebook from ``notebooks/`` shares the cache and results with ``make book``), seed numpy and
    torch, print where the chapter runs, and return the profile with ``seed`` applied."""
    import numpy as np
    import torch

    from mood.config import get_profile

    cwd = Path.cwd()
    if cwd.name == "notebooks" and (cwd.parent / "_config.yml").exists():
        os.chdir(cwd.parent)
    np.random.seed(seed)
    torch.manual_seed(seed)
    prof = get_profile(profile).with_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"profile={prof.name} seed={seed} device={device} model={prof.model.name} "
          f"pretext={prof.pretrain.pretext} torch={torch.__version__}")
    return prof
