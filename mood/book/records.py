"""The record of a run of chapters: what produced a results folder (commit, date, device, versions,
wall time and training of each chapter) and how runs of some chapters join the record of the whole.

- :func:`provenance`, :func:`save_provenance`, :func:`load_provenance`: a results folder's record;
  :func:`save_run_of_chapters` and :func:`record_partial_run` keep the record of a run of chapters
  1..N beside those of chapters run alone (``partial_runs``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import torch

from mood.core.cache import LEDGER_COLUMNS
from mood.core.io import atomic_write_text


def git_output(*args: str, cwd: Path) -> str | None:
    """``git args`` run in ``cwd``: its stripped stdout, or None when git fails (no git, not a
    repository, an unknown commit)."""
    import subprocess

    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def device_name() -> str:
    """The accelerator's name, else the CPU's model and core count."""
    import platform

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def training_note(t: dict | None) -> str:
    """One phrase for a chapter's or run's :func:`read_ledger` figures ("" when it trained nothing)."""
    if not t or not (t.get("trained runs") or t.get("cached runs")):
        return ""
    parts = []
    if t.get("trained runs"):
        parts.append(f"{t['trained runs']:.0f} training stage(s) ran here ({t['trained s']:,.0f} s)")
    if t.get("cached runs"):
        parts.append(f"{t['cached runs']:.0f} came from the artifact cache (their training, {t['cached s']:,.0f} s, "
                     f"is not in this time)")
    return "; ".join(parts)


def utc_now() -> str:
    """Now, in UTC, to the second (ISO 8601): the time stamp of every record."""
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def code_commit(repo: Path) -> tuple[str, bool]:
    """The commit whose code runs in ``repo`` ("unknown" without git) and whether ``mood/`` or
    ``notebooks/`` differ from it. A copy of the tree whose git history is missing or another
    commit's (a device machine is sent the session's first checkout beside the current files; an
    unpacked archive) names the commit whose tree it is in ``MOOD_COMMIT``: that wins, and the copy
    is taken to be that commit's tree."""
    stated = os.environ.get("MOOD_COMMIT")
    if stated:
        return stated, False
    status = git_output("status", "--porcelain", "--", "mood", "notebooks", cwd=repo)
    return git_output("rev-parse", "HEAD", cwd=repo) or "unknown", bool(status)


def provenance(profile: str, timings: pd.DataFrame, repo: Path, run_training: dict | None = None) -> dict:
    """What produced a run's results: the commit (and whether the tree had changes), the date,
    the profile, the device, the versions, and the wall time of each chapter (``timings``:
    ``chapter`` -> ``seconds``) and in all; where ``timings`` has the :data:`LEDGER_COLUMNS`, what
    training each chapter ran or loaded from the cache (``chapter_training``), and ``run_training``
    (:func:`read_ledger` over the whole run: a stage one chapter trains and another loads counts
    as trained)."""
    import platform

    commit, changed = code_commit(repo)
    return {"commit": commit,
            "code_changed_since_commit": changed,
            "date": utc_now(),
            "profile": profile, "device": device_name(), "torch": torch.__version__,
            "python": platform.python_version(),
            "chapter_seconds": {str(k): float(v) for k, v in timings["seconds"].items()},
            "total_seconds": float(timings["seconds"].sum()),
            **({"chapter_training": {str(ch): {c: float(r[c]) for c in LEDGER_COLUMNS} for ch, r in timings.iterrows()}}
               if set(LEDGER_COLUMNS) <= set(timings.columns) else {}),
            **({"run_training": run_training} if run_training is not None else {})}


def run_dates(record: dict) -> str:
    """When a :func:`provenance` record's run happened, for a reader: its day, or, for a run of record
    resumed in parts (``book run --resume``: its ``starts``), the first start to the end and the
    number of parts."""
    end = str(record["date"])[:10]
    starts = record.get("starts", [])
    if len(starts) < 2:
        return end
    return f"{str(starts[0])[:10]} to {end}, in {len(starts)} parts (`book run --resume`)"


def record_partial_run(results_dir: str | os.PathLike, partial: dict) -> Path:
    """Adds a partial run's :func:`provenance` (``partial``: chapters run with ``--only``) to the
    folder's ``provenance.json`` under ``partial_runs``, one entry per partial run (a rerun of a
    chapter takes it out of the entry that ran it before), leaving the whole run's record as it was;
    a folder without one gets ``partial``'s own header (commit, date, device, ...) with no chapters and
    no training of a whole run."""
    if (record := load_provenance(results_dir)) is None:
        record = {**{k: v for k, v in partial.items() if k not in ("chapter_training", "run_training")},
                  "chapter_seconds": {}, "total_seconds": 0.0}
    ran = partial["chapter_seconds"]
    record["partial_runs"] = [*_other_partial_runs(record, ran), _only(partial, ran)]
    return save_provenance(record, results_dir)


# the "source" of an entry of partial_runs carried over from an earlier run of record (a partial run has none)
FROM_RUN_OF_RECORD = "run of record"
_RUN_HEADER = ("commit", "code_changed_since_commit", "date", "device", "torch", "source")


def _only(run: dict, chapters) -> dict | None:
    """``run``'s header (:data:`_RUN_HEADER`) with its wall times and training of ``chapters`` only;
    None when it ran none of them."""
    wanted = set(chapters)
    seconds = {ch: s for ch, s in run.get("chapter_seconds", {}).items() if ch in wanted}
    if not seconds:
        return None
    entry = {k: run[k] for k in _RUN_HEADER if k in run} | {"chapter_seconds": seconds}
    if "chapter_training" in run:
        entry["chapter_training"] = {ch: t for ch, t in run["chapter_training"].items() if ch in seconds}
    return entry


def _other_partial_runs(record: dict, chapters) -> list[dict]:
    """The partial runs of ``record``, each without ``chapters`` (run again since); those left with
    no chapter are dropped. The tables of the chapters they keep still stand."""
    again = set(chapters)
    runs = [_only(r, set(r["chapter_seconds"]) - again) for r in record.get("partial_runs", [])]
    return [r for r in runs if r is not None]


def save_run_of_chapters(record: dict, results_dir: str | os.PathLike, whole_book: bool) -> Path:
    """Writes the :func:`provenance` of a run of record into ``results_dir``. A run of chapters 1..N
    (not ``whole_book``) leaves the tables of the other chapters in place, so it keeps their
    provenance: the folder's partial runs of them, and the previous run of record's own chapters
    (a whole book's 10-16, say) as one more partial run under that run's header. A whole-book run
    rewrote every table, so it keeps none."""
    if not whole_book and (current := load_provenance(results_dir)) is not None:
        ran = set(record["chapter_seconds"])
        runs = _other_partial_runs(current, ran)
        newer = ran.union(*(r["chapter_seconds"] for r in runs))  # a partial run is newer than the record it joined
        if (rest := _only(current, set(current.get("chapter_seconds", {})) - newer)) is not None:
            runs = [rest | {"source": FROM_RUN_OF_RECORD}, *runs]
        if runs:
            record = {**record, "partial_runs": runs}
    return save_provenance(record, results_dir)


def cached_training(results_dir: str | os.PathLike) -> dict | None:
    """The :func:`read_ledger` figures of the run recorded in ``results_dir`` (its provenance's
    ``run_training``) when that run loaded trained stages from the artifact cache, else None: a
    cold run, or no record."""
    run = (load_provenance(results_dir) or {}).get("run_training", {})
    return run if run.get("cached runs") else None


def training_speed(results_dir: str | os.PathLike) -> float | None:
    """The training throughput of the run recorded in ``results_dir`` (img/s): the training images its
    trained stages processed over their training seconds (``run_training``; every model the run
    trained, as it trained them), so two machines' budgets can be compared; None without a record of it."""
    run = (load_provenance(results_dir) or {}).get("run_training", {})
    return run["trained images"] / run["trained s"] if run.get("trained images") and run.get("trained s") else None


def provenance_path(results_dir: str | os.PathLike) -> Path:
    """Where a results folder keeps its :func:`provenance`: ``results_dir/provenance.json``."""
    return Path(results_dir) / "provenance.json"


def load_provenance(results_dir: str | os.PathLike) -> dict | None:
    """The record :func:`save_provenance` wrote into ``results_dir``, or None when there is none."""
    path = provenance_path(results_dir)
    return json.loads(path.read_text()) if path.exists() else None


def save_provenance(record: dict, results_dir: str | os.PathLike) -> Path:
    """Writes ``provenance.json`` into ``results_dir``."""
    return atomic_write_text(provenance_path(results_dir), json.dumps(record, indent=1) + "\n")
