"""Everything ``mood`` stores on disk, in one place: the artifact cache, trained backbones, and
result tables. Every write goes through a temporary file and a rename, so nothing half-written is
ever left behind.

- :class:`Cache`: folders keyed by a hash of a stage's full configuration
  (``MOOD_ARTIFACTS/<stage>/<hash>/`` with the configuration in ``spec.json``).
- :func:`fingerprint` / :func:`hash_ids`: what identifies an image set's content in a cache key.
- :class:`Trained`, :func:`save_trained`, :func:`load_trained`: a backbone after a training stage.
- :func:`save_table`, :func:`load_table`, :func:`save_results`: result tables (CSV / JSON).
- :func:`provenance`, :func:`save_provenance`, :func:`load_provenance`: what produced a results
  folder (commit, date, device, versions, wall time per chapter); :func:`save_run_of_chapters` and
  :func:`record_partial_run` keep the record of a run of chapters 1..N beside those of chapters
  run alone (``partial_runs``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

if TYPE_CHECKING:  # imported for annotations only: data and models import nothing from here
    from mood.data import ImageSet
    from mood.models import Backbone

CACHE_VERSION = 2  # 2: one hash of image ids (hash_ids) everywhere


# --------------------------------------------------------------------------------------------
# Atomic writes

def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Writes ``text`` to ``path`` through a temporary file and a rename: never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_torch_save(obj: object, path: str | os.PathLike) -> Path:
    """``torch.save`` through a temporary file and a rename. The temporary name is unique, so two
    processes saving the same artifact (side-by-side jobs that share a stage) never collide."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# --------------------------------------------------------------------------------------------
# The cache

def hash_ids(ids: np.ndarray) -> str:
    """A short content hash of an id array (``int64``): the one hash of image ids in ``mood``."""
    return hashlib.sha1(np.ascontiguousarray(ids, dtype=np.int64).tobytes()).hexdigest()[:16]


def fingerprint(s: "ImageSet") -> dict:
    """What identifies an image set's content for caching: origin and the exact ids."""
    return {"name": s.name, "origin": s.origin, "n": len(s), "ids": hash_ids(s.ids)}


class Cache:
    """Folders keyed by configuration: ``root/stage/<hash>/`` with the configuration in ``spec.json``.

    Args:
        root: the cache folder (default ``MOOD_ARTIFACTS`` or ``./artifacts``).
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root if root is not None else os.environ.get("MOOD_ARTIFACTS", "artifacts"))

    @staticmethod
    def key(spec: dict) -> str:
        blob = json.dumps({"version": CACHE_VERSION, **spec}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def dir(self, stage: str, spec: dict) -> Path:
        """The folder of ``stage`` under configuration ``spec`` (created, with its ``spec.json``)."""
        d = self.root / stage / self.key(spec)
        d.mkdir(parents=True, exist_ok=True)
        if not (d / "spec.json").exists():
            atomic_write_text(d / "spec.json", json.dumps(spec, indent=1, sort_keys=True, default=str))
        return d


# --------------------------------------------------------------------------------------------
# Trained backbones

@dataclass
class Trained:
    """A backbone after a stage.

    Attributes:
        backbone: the model, in eval mode on the CPU.
        history: per-epoch records of :func:`mood.engine.fit` (empty for ``pretext="none"``).
        run_dir: the cache folder (checkpoint, log, spec).
        seconds: wall time spent training in this call (0 when loaded from the cache).
        extras: stage-specific objects (the pretext task with its heads, the BEiT tokenizer).
    """

    backbone: "Backbone"
    history: list[dict]
    run_dir: Path
    seconds: float = 0.0
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def train_seconds(self) -> float:
        """Wall time its training took, from the per-epoch log, whether it ran now or was cached."""
        return float(sum(h.get("seconds", 0.0) for h in self.history))

    @property
    def run_id(self) -> str:
        """``stage/hash``: what later stages key their cache on."""
        return f"{self.run_dir.parent.name}/{self.run_dir.name}"


BACKBONE_FILE = "backbone.pt"


def is_finished(run_dir: Path) -> bool:
    """Whether the stage in ``run_dir`` ran to its end (its final backbone is saved)."""
    return (run_dir / BACKBONE_FILE).exists()


def save_trained(backbone: "Backbone", run_dir: Path, history: list[dict], seconds: float, **extras: Any) -> Trained:
    """Saves the finished stage's backbone and history (rank 0 of a distributed run; the other ranks
    hold the same weights and wait for it); returns it as :class:`Trained` (eval, CPU)."""
    from mood.distributed import barrier, is_main

    if is_main():
        atomic_torch_save({"backbone": backbone.state_dict(), "history": history}, run_dir / BACKBONE_FILE)
    barrier()
    trained = Trained(backbone.cpu().eval(), history, run_dir, seconds, extras)
    _ledger(trained, cached=False)
    return trained


def load_trained(backbone: "Backbone", run_dir: Path, **extras: Any) -> Trained:
    """Loads a finished stage's weights into ``backbone`` (same architecture) from ``run_dir``."""
    state = torch.load(run_dir / BACKBONE_FILE, map_location="cpu", weights_only=False)
    backbone.load_state_dict(state["backbone"])
    trained = Trained(backbone.eval(), state["history"], run_dir, 0.0, extras)
    _ledger(trained, cached=True)
    return trained


# The book runner points MOOD_LEDGER at a file per chapter: every training stage the chapter ran or
# loaded from the cache appends a line, so a chapter's wall time can say what training it did not do.
LEDGER_ENV = "MOOD_LEDGER"


def _ledger(trained: Trained, cached: bool) -> None:
    from mood.distributed import is_main

    if (path := os.environ.get(LEDGER_ENV)) and is_main():
        seconds = trained.train_seconds if cached else trained.seconds
        with open(path, "a") as f:  # one short line per append: side-by-side workers do not interleave
            f.write(json.dumps({"run": trained.run_id, "cached": cached, "seconds": round(seconds, 3)}) + "\n")


def read_ledger(*paths: str | os.PathLike) -> dict[str, float]:
    """What a chapter's (or, given every chapter's ledger, a run's) training cost: ``trained runs``
    / ``trained s`` (stages trained there, this call's wall time) and ``cached runs`` / ``cached s``
    (stages only loaded from the cache, with the training time their logs record). A stage counts
    once, as trained if it was trained there at all."""
    trained: dict[str, float] = {}
    cached: dict[str, float] = {}
    lines = [line for p in paths if Path(p).exists() for line in Path(p).read_text().splitlines()]
    for entry in map(json.loads, lines):
        if entry["cached"]:
            cached.setdefault(entry["run"], entry["seconds"])
        else:
            trained[entry["run"]] = trained.get(entry["run"], 0.0) + entry["seconds"]
    cached = {run: sec for run, sec in cached.items() if run not in trained}
    return {"trained runs": len(trained), "trained s": round(sum(trained.values()), 1),
            "cached runs": len(cached), "cached s": round(sum(cached.values()), 1)}


# --------------------------------------------------------------------------------------------
# Result tables

def save_table(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Saves a results table as CSV (``.csv``) or JSON records (``.json``), atomically."""
    path = Path(path)
    if path.suffix == ".csv":
        return atomic_write_text(path, df.to_csv())
    if path.suffix == ".json":
        records = json.loads(df.reset_index().to_json(orient="records"))
        return atomic_write_text(path, json.dumps(records, indent=1))
    raise ValueError(f"save_table: use a .csv or .json path, got {path}")


def load_table(path: str | os.PathLike) -> pd.DataFrame:
    """Reads a table written by :func:`save_table` (first column becomes the index)."""
    path = Path(path)
    if path.suffix == ".csv":
        return pd.read_csv(path, index_col=0)
    if path.suffix == ".json":
        df = pd.DataFrame(json.loads(path.read_text()))
        return df.set_index(df.columns[0])
    raise ValueError(f"load_table: use a .csv or .json path, got {path}")


def save_results(df: pd.DataFrame, results_dir: str | os.PathLike, name: str) -> list[Path]:
    """Writes ``df`` as ``<results_dir>/<name>.csv`` and ``.json``, for the summary chapter and for
    anyone who wants the numbers without re-running."""
    return [save_table(df, Path(results_dir) / f"{name}.{ext}") for ext in ("csv", "json")]


# --------------------------------------------------------------------------------------------
# Provenance of a results folder

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


LEDGER_COLUMNS = ("trained runs", "trained s", "cached runs", "cached s")  # read_ledger's figures


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
