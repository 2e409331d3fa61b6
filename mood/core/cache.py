"""The training cache: folders keyed by a hash of a stage's full configuration
(``MOOD_ARTIFACTS/<stage>/<hash>/`` with the configuration in ``spec.json``), the backbones trained
in them, and the ledger a chapter keeps of the stages it trained or loaded.

- :class:`Cache`: the folders; :func:`fingerprint`: what identifies an image set in a key.
- :class:`Trained`, :func:`save_trained`, :func:`load_trained`: a backbone after a training stage.
- :data:`LEDGER_ENV`, :func:`read_ledger`: what training a chapter did and did not do.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mood.core.images import hash_ids
from mood.core.io import atomic_torch_save, atomic_write_text

if TYPE_CHECKING:
    from mood.core.images import ImageSet
    from mood.core.models import Backbone

CACHE_VERSION = 2  # 2: one hash of image ids (hash_ids) everywhere
# What the training code of CACHE_VERSION makes of a fixed smoke-sized problem (tests/test_cache_canary.py
# trains it): the final pretraining and fine-tuning losses and the sum of the fine-tuned weights. A change
# to what a stage trains moves them; the canary then fails until CACHE_VERSION is bumped and these
# re-pinned, so neither an artifact folder (Cache.key) nor a run key (resolve.Run.key) written by the
# older code is served as today's.
TRAINING_CANARY = {"pretrain loss": 3.499692440032959, "finetune loss": 2.436978816986084, "weight sum": 1125.1305906527004}


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
        history: per-epoch records of :func:`mood.core.engine.fit` (empty for ``pretext="none"``).
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
    from mood.core.distributed import barrier, is_main

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
LEDGER_COLUMNS = ("trained runs", "trained s", "trained images", "cached runs", "cached s")  # read_ledger's figures


def _ledger(trained: Trained, cached: bool) -> None:
    from mood.core.distributed import is_main

    if (path := os.environ.get(LEDGER_ENV)) and is_main():
        seconds = trained.train_seconds if cached else trained.seconds
        images = 0 if cached else round(sum(r.get("img_per_s", 0.0) * r.get("seconds", 0.0) for r in trained.history))
        with open(path, "a") as f:  # one short line per append: side-by-side workers do not interleave
            f.write(json.dumps({"run": trained.run_id, "cached": cached, "seconds": round(seconds, 3),
                                "images": images}) + "\n")


def read_ledger(*paths: str | os.PathLike) -> dict[str, float]:
    """What a chapter's (or, given every chapter's ledger, a run's) training cost: ``trained runs``
    / ``trained s`` / ``trained images`` (stages trained there, this call's wall time, the training
    images they processed, from their logs) and ``cached runs`` / ``cached s``
    (stages only loaded from the cache, with the training time their logs record). A stage counts
    once, as trained if it was trained there at all."""
    trained: dict[str, float] = {}
    images: dict[str, float] = {}
    cached: dict[str, float] = {}
    lines = [line for p in paths if Path(p).exists() for line in Path(p).read_text().splitlines()]
    for entry in map(json.loads, lines):
        if entry["cached"]:
            cached.setdefault(entry["run"], entry["seconds"])
        else:
            trained[entry["run"]] = trained.get(entry["run"], 0.0) + entry["seconds"]
            images[entry["run"]] = max(images.get(entry["run"], 0), entry.get("images", 0))
    cached = {run: sec for run, sec in cached.items() if run not in trained}
    return {"trained runs": len(trained), "trained s": round(sum(trained.values()), 1),
            "trained images": int(sum(images.values())), "cached runs": len(cached), "cached s": round(sum(cached.values()), 1)}
