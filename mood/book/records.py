"""The record of a run of chapters: what produced a results folder (commit, date, device, versions,
wall time and training of each chapter) and how runs of some chapters join the record of the whole.

- :func:`provenance`, :func:`save_provenance`, :func:`load_provenance`: a results folder's record;
  :func:`join_record` writes a run into it (a record is one run of one commit's code, whole or, at
  that commit, built chapter by chapter) and :func:`check_record` refuses a folder that mixes runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import torch

from mood.core.cache import LEDGER_COLUMNS
from mood.core.io import atomic_write_text
from mood.core.machine import code_commit, device_name, git_output, utc_now  # noqa: F401 (re-exported)


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


def same_code(a: dict, b: dict) -> bool:
    """Whether two :func:`provenance` records ran the same committed code: one commit, neither run
    with uncommitted changes to ``mood/`` or ``notebooks/``."""
    return (a.get("commit") == b.get("commit") and a.get("commit") not in (None, "unknown")
            and not a.get("code_changed_since_commit") and not b.get("code_changed_since_commit"))


def _sum_training(a: dict | None, b: dict | None) -> dict | None:
    if a is None or b is None:
        return a or b
    return {k: a.get(k, 0) + b.get(k, 0) for k in {**a, **b}}


def join_record(run: dict, results_dir: str | os.PathLike, whole_book: bool) -> dict:
    """Writes the :func:`provenance` of a run of chapters (``run``) as ``results_dir``'s record and
    returns the record. A whole-book run replaces the record. A run of some chapters joins a record
    of the same committed code (:func:`same_code`: a record may be partial, as the ``gpu`` one, built
    chapter by chapter at one commit): its chapters' wall times and training replace theirs, its
    ``starts`` are added. Any other run of some chapters is kept beside the record under
    ``other_runs``: the folder then mixes code, and :func:`check_record` refuses it."""
    current = None if whole_book else load_provenance(results_dir)
    if current is None:
        record = run
    elif same_code(current, run) and not current.get("other_runs"):
        record = {**current, "date": run["date"],
                  "chapter_seconds": {**current.get("chapter_seconds", {}), **run["chapter_seconds"]},
                  "starts": [*current.get("starts", [current.get("date")]), *run.get("starts", [run["date"]])]}
        record["total_seconds"] = float(sum(record["chapter_seconds"].values()))
        if "chapter_training" in run or "chapter_training" in current:
            record["chapter_training"] = {**current.get("chapter_training", {}), **run.get("chapter_training", {})}
        if (training := _sum_training(current.get("run_training"), run.get("run_training"))) is not None:
            record["run_training"] = training
    else:
        header = {k: run[k] for k in ("commit", "code_changed_since_commit", "date", "device", "torch") if k in run}
        record = {**current, "other_runs": [*current.get("other_runs", []),
                                            {**header, "chapter_seconds": run["chapter_seconds"]}]}
    save_provenance(record, results_dir)
    return record


def check_record(results_dir: str | os.PathLike) -> dict:
    """``results_dir``'s record (:func:`join_record`), refused when it does not come from one run of
    one commit's code.

    Raises:
        FileNotFoundError: no record in ``results_dir``.
        ValueError: the folder mixes runs of different code (``other_runs``, or the ``partial_runs`` of
            records written before this rule), naming them and how to get a record back.
    """
    folder = Path(results_dir)
    if (record := load_provenance(folder)) is None:
        raise FileNotFoundError(f"{provenance_path(folder)} is missing: no record of this profile yet; "
                                f"`PROFILE={folder.name} make book` makes one")
    others = record.get("other_runs", []) + record.get("partial_runs", [])
    if others:
        runs = ", ".join(f"`{str(r.get('commit', '?'))[:10]}` ({', '.join(sorted(r.get('chapter_seconds', {})))})"
                         for r in others)
        where = f"{folder.parent.name}/{folder.name}"
        raise ValueError(f"`{where}` mixes runs of different code: the record's, commit `{str(record.get('commit'))[:10]}`, "
                         f"and {runs}. A record is one run at one commit: `git checkout -- {where}` "
                         f"restores the committed one; `PROFILE={folder.name} make book` makes a new one")
    return record


def timings_of(record: dict) -> pd.DataFrame:
    """A record's wall time and training per chapter (``chapter`` -> ``seconds`` and the
    :data:`LEDGER_COLUMNS` where the record has them): what ``_timings.csv`` holds."""
    rows = [{"chapter": ch, "seconds": s, **record.get("chapter_training", {}).get(ch, {})}
            for ch, s in record.get("chapter_seconds", {}).items()]
    return pd.DataFrame(rows).set_index("chapter").sort_index()


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
