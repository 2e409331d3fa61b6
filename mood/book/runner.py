"""Runs the chapters with papermill and builds the Jupyter Book.

``python -m mood book run --profile smoke`` executes every ``notebooks/NN_*.py`` (jupytext
py:percent) in order into ``book/chapters/NN_*.ipynb``; ``python -m mood book build`` does that and
then renders ``_build/html`` with Jupyter Book 1 (execution off, warnings as errors). A failing
chapter stops the run, names the notebook and cell, and keeps the partly executed notebook.

A run of record (the whole book, or ``--until N``) keeps a journal of the chapters it finished
(``book/chapters/.unfinished-run.json``, with their training ledgers): ``book run --resume`` goes on
from the first chapter it did not finish, on the same machine and code, and the record says when
each part of the run began. A run without ``--resume`` starts over.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

from mood.book.claims import RESULTS_FILE, write_page
from mood.book.edition import STATUS_FILE, store, write_status
from mood.book.layout import CHAPTERS_DIR, JOURNAL, LEDGERS, NOTEBOOKS, REPO, chapters, code_fingerprint, jupyter_book


class NotebookFailed(RuntimeError):
    """A chapter raised while executing."""


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


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def open_journal(root: Path, key: dict, resume: bool) -> dict:
    """The journal of the run about to start: with ``resume``, the unfinished run's journal in
    ``root`` (its ``key``: profile, seed, chapters, code, device, torch, must be this run's), with
    this start added; else a new one, and any earlier journal and ledgers are dropped.

    Raises:
        FileNotFoundError: ``resume`` and there is no unfinished run in ``root``.
        ValueError: ``resume`` and the unfinished run's key differs, naming what differs.
    """
    from mood.book.records import utc_now

    path = root / JOURNAL
    now = utc_now()
    if not resume:
        path.unlink(missing_ok=True)
        shutil.rmtree(root / LEDGERS, ignore_errors=True)
        return {**key, "starts": [now], "done": {}}
    if not path.exists():
        raise FileNotFoundError(f"--resume: no unfinished run of record in {root / CHAPTERS_DIR} (the last one "
                                "finished, or none began there); run without --resume to start one")
    journal = json.loads(path.read_text())
    show = lambda k, v: f"{v[:10]}..." if k == "code" and v else repr(v)  # noqa: E731
    if differs := [f"{k} ({show(k, journal.get(k))} there, {show(k, v)} now)" for k, v in key.items()
                   if journal.get(k) != v]:
        why = ("; the chapters or the mood package changed since it began, so its finished chapters did not "
               "come from this code" if journal.get("code") != key["code"] else "")
        raise ValueError(f"--resume: the unfinished run in {path} differs in {', '.join(differs)}{why}; "
                         "resume it as it began, or run without --resume to start over")
    journal["starts"].append(now)
    save_journal(root, journal)
    return journal


def save_journal(root: Path, journal: dict) -> None:
    """Writes the :func:`open_journal` record into ``root`` (atomically: a run cut short mid-write
    leaves the last one)."""
    from mood.core.io import atomic_write_text

    atomic_write_text(root / JOURNAL, json.dumps(journal, indent=1) + "\n")


def run(profile: str | None = None, root: Path = REPO, only: str | None = None, seed: int = 0,
        notebooks: Path = NOTEBOOKS, until: int | None = None, resume: bool = False) -> pd.DataFrame:
    """Executes the chapters of ``notebooks`` at ``profile`` (default: ``MOOD_PROFILE``, else ``cpu``)
    into ``root/book/chapters``, writing tables under ``root/results/<profile>``; returns wall times.
    The run ends by storing its record there: provenance, timings, headline and the executed
    chapters (:func:`mood.book.edition.store`); a whole-book run replaces the previous record.

    Args:
        only: run just the chapters whose file name contains this. Like ``until``, a run of some
            chapters: it joins the folder's record when that record ran the same committed code, else
            the folder mixes code and is no record (:func:`mood.book.records.join_record`).
        until: run chapters 1..``until`` in order (``until=9``: the main book).
        resume: go on with the unfinished run of record in ``root`` (same profile, seed, ``until``,
            code, device and torch): its finished chapters, whose executed notebooks are as it wrote
            them, are kept with their wall times; the others run. The record's ``starts`` lists when
            each part began.
    """
    import torch

    from mood.book.records import device_name, join_record, provenance, timings_of, training_note
    from mood.book.summary import save_headline
    from mood.core.cache import LEDGER_ENV, read_ledger
    from mood.core.io import save_table
    from mood.experiments.profiles import get_profile

    profile = get_profile(profile).name  # a wrong name fails before any chapter runs
    if resume and only:
        raise ValueError("--resume goes on with a run of record (the whole book, or --until N); "
                         "a run of --only chapters is not resumed: run it again")
    key = {"profile": profile, "seed": seed, "until": until, "code": code_fingerprint(notebooks),
           "device": device_name(), "torch": torch.__version__}
    journal = open_journal(root, key, resume)
    os.environ.setdefault("MOOD_PROGRESS", "0")  # progress bars would fill the executed notebooks
    rows = []
    for src in chapters(notebooks):
        if (only and only not in src.name) or (until is not None and int(src.name[:2]) > until):
            continue
        out = root / CHAPTERS_DIR / f"{src.stem}.ipynb"
        ledger = root / LEDGERS / f"{src.stem}.jsonl"  # the chapter's training stages append to it
        done = journal["done"].get(src.stem)
        if done and out.exists() and _sha256(out) == done["sha256"]:
            print(f"[book] {src.name}: finished in an earlier part of this run ({done['seconds']:.0f} s)",
                  file=sys.stderr, flush=True)
            rows.append({"chapter": src.stem, "seconds": done["seconds"], **read_ledger(ledger)})
            continue
        print(f"[book] {src.name} (profile {profile}) ...", file=sys.stderr, flush=True)
        ledger.parent.mkdir(parents=True, exist_ok=True)
        ledger.unlink(missing_ok=True)  # an interrupted attempt's stages are in the cache now
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
        if not only:
            journal["done"][src.stem] = {"seconds": round(seconds, 1), "sha256": _sha256(out)}
            save_journal(root, journal)
    run_training = read_ledger(*(root / LEDGERS / f"{row['chapter']}.jsonl" for row in rows))
    timings = pd.DataFrame(rows)
    results = root / "results" / profile
    if rows:
        whole = not only and until is None
        record = join_record({**provenance(profile, timings.set_index("chapter"), root, run_training),
                              "starts": journal["starts"]}, results, whole_book=whole)
        everything = {src.stem for src in chapters(notebooks)} <= set(record.get("chapter_seconds", {}))
        save_table(timings_of(record), results / "_timings.csv")
        save_headline(results, whole_book=everything)
        store(results, root / CHAPTERS_DIR, list(timings["chapter"]), whole_book=whole)
    write_page(root, results)  # the results page: every claim's call, from this run's tables
    (root / JOURNAL).unlink(missing_ok=True)
    shutil.rmtree(root / LEDGERS, ignore_errors=True)
    return timings


def build_html(root: Path = REPO) -> Path:
    """:func:`mood.book.layout.jupyter_book` over ``root``, writing the first page's status note first
    when there is none. Returns the HTML folder."""
    if not (root / STATUS_FILE).exists():  # the first page includes it
        write_status(root, None)
    if not (root / RESULTS_FILE).exists():  # the results page includes it
        write_page(root, None)
    return jupyter_book(root)


def build(profile: str | None = None, root: Path = REPO, seed: int = 0, resume: bool = False) -> Path:
    """:func:`run` (``resume``: going on with an unfinished run) then :func:`build_html` (the first
    page says the book was executed now)."""
    from mood.book.records import load_provenance
    from mood.experiments.profiles import get_profile

    run(profile, root, seed=seed, resume=resume)
    write_status(root, load_provenance(root / "results" / get_profile(profile).name), executed_now=True)
    return build_html(root)


def chapter_setup(profile: str, seed: int = 0):
    """The first call of every chapter: work from the book's root (so a student running the
    notebook from ``notebooks/`` shares the cache and results with ``make book``), seed numpy and
    torch, and return its base profile (:func:`mood.experiments.resolve.base_profile`,
    ``seed`` on every stage), from which the chapter resolves its runs."""
    import numpy as np
    import torch

    from mood.experiments.resolve import base_profile

    cwd = Path.cwd()
    if cwd.name == "notebooks" and (cwd.parent / "_config.yml").exists():
        os.chdir(cwd.parent)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return base_profile(profile, seed=seed)
