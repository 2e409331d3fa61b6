"""Unleashing Mask (Zhu et al., ICML 2023): the OOD ability a classifier has mid-training, and two
ways to get it back from the final model.

1. :func:`~mood.experiments.unleash_eval.unleash_data` holds out ID validation images and a validation OOD set (tile-shuffled ID
   images, none of the test OOD sets) and noises the training labels at the condition's rate;
   :func:`train_stages` trains an ID classifier from scratch, keeping every epoch's weights;
   :func:`stage_curve` scores OOD (MSP, Energy, ODIN) at each epoch, on the test sets and on the
   validation sets. The paper finds an intermediate epoch better at OOD detection than the last:
   late training memorises atypical ID samples. Here the epoch is picked on validation data only
   (and, as a baseline, by early stopping on the ID validation loss).
2. :func:`mood.core.masks.estimate_floor` puts a number on that stage without any OOD data: the mean training
   cross-entropy of the final model with a small random fraction of every layer's weights masked
   out (the official code keeps 96.5%).
3. :func:`tune` goes on from the final model with the loss floored at that value,
   ``|CE - b| + b`` (:func:`mood.core.pretext.loss_floor`): ``"um"`` updates the weights; ``"umap"``
   freezes them and learns a mask that keeps ~80% of each layer's weights (edge-popup scores with a
   straight-through top-k); ``"ce"`` is the control, the same extra epochs with plain CE. UM also
   runs at multiples of ``b`` and with the ``b`` the validation OOD set prefers.

:func:`run_unleash` chains them for one backbone, seed and label-noise condition and returns the
per-epoch curve, a long table (method x score) of AUROC / FPR95 / AUPR with ID accuracy, and the
per-image training losses; :func:`mood.experiments.unleash_study.run_study` runs every backbone,
condition and seed. Every stage is cached by its configuration (:class:`mood.core.cache.Cache`) and resumes after an interruption
(:func:`mood.core.engine.fit`).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mood.core.cache import Cache, Trained, fingerprint, is_finished, load_trained, save_trained
from mood.core.engine import fit
from mood.core.images import ImageFormat, ImageSet, sample_tensors, to_tensor
from mood.core.io import atomic_torch_save, atomic_write_text
from mood.core.masks import add_masks, bake_masks, masked_losses
from mood.core.models import Backbone, ModelConfig
from mood.core.pretext import Classification
from mood.experiments.config import Profile, UnleashConfig
from mood.experiments.resolve import resolve, unleash_tune
from mood.experiments.unleash_eval import (
    CURVE_SCORES,
    EvalSets,
    eval_sets,
    evaluate,
    sample_losses,
    unleash_data,
)

METHODS: tuple[str, ...] = ("ce", "um", "umap")
METHOD_LABELS: dict[str, str] = {"baseline": "baseline (last epoch)", "ce": "+CE (control)", "um": "+UM",
                                 "umap": "+UMAP"}


# --------------------------------------------------------------------------------------------
# The three stages

@dataclass
class Stages:
    """A classifier trained from scratch with every epoch kept.

    Attributes:
        final: the last epoch's model (:class:`mood.experiments.pipeline.Trained`, with the training history).
        epochs: ``epochs[e - 1]`` is the checkpoint file of epoch ``e``.
    """

    final: Trained
    epochs: list[Path]


def train_stages(data: ImageSet, model: ModelConfig, cfg: UnleashConfig, fmt: ImageFormat = ImageFormat(),
                 cache: Cache | None = None) -> Stages:
    """Trains ``model`` from scratch on ``data``'s labels with plain cross-entropy (``cfg.train``),
    saving its weights after every epoch. Cached; resumes when interrupted."""
    cache = cache or Cache()
    spec = {"stage": "unleash-train", "model": model.to_dict(), "train": cfg.train.to_dict(),
            "augment": cfg.augment, "data": fingerprint(data), "format": asdict(fmt)}
    run_dir = cache.dir("unleash-train", spec)
    torch.manual_seed(cfg.train.seed)
    backbone = Backbone(copy.deepcopy(model))
    epoch_files = [run_dir / "epochs" / f"{e:03d}.pt" for e in range(1, cfg.train.epochs + 1)]
    if is_finished(run_dir):
        return Stages(load_trained(backbone, run_dir), epoch_files)
    t0 = time.perf_counter()
    x, y = sample_tensors(data, fmt, cfg.train.max_images, cfg.train.seed)
    epoch_files[0].parent.mkdir(exist_ok=True)

    def keep_epoch(record: dict) -> None:
        atomic_torch_save(backbone.state_dict(), epoch_files[record["epoch"] - 1])

    task = Classification(backbone, label_smoothing=0.0, augment=cfg.augment)
    history = fit(task, x, y, cfg.train, run_dir=run_dir, desc=f"train[{model.name}]", on_epoch=keep_epoch)
    return Stages(save_trained(backbone, run_dir, history, time.perf_counter() - t0), epoch_files)


def stage_curve(stages: Stages, sets: EvalSets, scores: tuple[str, ...] = CURVE_SCORES,
                cache_file: Path | None = None) -> pd.DataFrame:
    """One row per epoch: training loss and accuracy, ID test accuracy, the mean AUROC / FPR95 over
    the test OOD sets of each score and, when ``sets`` has validation images, the validation loss,
    accuracy and AUROC of each score (``"<score> val AUROC"``). Written to ``cache_file`` (CSV)
    and read back from it."""
    if cache_file is not None and cache_file.exists():
        return pd.read_csv(cache_file)
    model = copy.deepcopy(stages.final.backbone)
    rows = []
    for e, (path, rec) in enumerate(zip(stages.epochs, stages.final.history), start=1):
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        tables = evaluate(model, sets, scores)
        first = next(iter(tables.values())).attrs
        row = {"epoch": e, "train loss": rec["loss"], "train acc": 100.0 * rec["acc"], "ID acc": first["id_acc"]}
        if "val_loss" in first:
            row |= {"val loss": first["val_loss"], "val acc": first["val_acc"]}
        for name, t in tables.items():
            row[f"{name} AUROC"], row[f"{name} FPR95"] = t.loc["mean", "AUROC"], t.loc["mean", "FPR95"]
            if "val_auroc" in t.attrs:
                row[f"{name} val AUROC"] = t.attrs["val_auroc"]
        rows.append(row)
    curve = pd.DataFrame(rows)
    if cache_file is not None:
        atomic_write_text(cache_file, curve.to_csv(index=False))
    return curve


def tune(start: Trained, data: ImageSet, method: str, floor: float | None, cfg: UnleashConfig,
         fmt: ImageFormat = ImageFormat(), cache: Cache | None = None) -> Trained:
    """Goes on training a copy of ``start`` for ``cfg.tune.epochs`` on ``data``'s labels.

    Args:
        method: ``"um"`` (weights updated, loss floored at ``floor``), ``"umap"`` (weights frozen, a
            mask keeping ``cfg.umap_keep`` of each layer learned with the floored loss; the result
            has the mask baked in) or ``"ce"`` (weights updated with plain cross-entropy: the control).
        floor: the loss floor ``b`` (:func:`estimate_floor`); ignored by ``"ce"``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    if method != "ce" and (floor is None or not math.isfinite(floor) or floor < 0):
        raise ValueError(f"{method} needs a finite, non-negative loss floor, got {floor!r}; "
                         f"estimate one with mood.core.masks.estimate_floor or set UnleashConfig.floor")
    cache = cache or Cache()
    floor = None if method == "ce" else float(floor)  # type: ignore[arg-type]
    tcfg = unleash_tune(cfg, method)
    spec = {"stage": f"unleash-{method}", "start": start.run_id, "tune": tcfg.to_dict(), "floor": floor,
            "augment": cfg.augment, "data": fingerprint(data), "format": asdict(fmt)}
    if method == "umap":
        spec |= {"keep": cfg.umap_keep, "init": cfg.umap_init}
    run_dir = cache.dir(f"unleash-{method}", spec)
    backbone = copy.deepcopy(start.backbone)
    if is_finished(run_dir):
        return load_trained(backbone, run_dir)
    t0 = time.perf_counter()
    if method == "umap":
        for p in backbone.parameters():
            p.requires_grad_(False)
        add_masks(backbone, cfg.umap_keep, cfg.umap_init, tcfg.seed)  # only the masks' scores train
    x, y = sample_tensors(data, fmt, cfg.train.max_images, cfg.train.seed)  # the images the model was trained on
    task = Classification(backbone, label_smoothing=0.0, augment=cfg.augment, floor=floor)
    history = fit(task, x, y, tcfg, run_dir=run_dir, desc=f"tune[{method}]")
    if method == "umap":
        bake_masks(backbone)
        for p in backbone.parameters():
            p.requires_grad_(True)
    return save_trained(backbone, run_dir, history, time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------
# The whole study

def condition_label(noise: float) -> str:
    """``"clean"`` or ``"noise 20%"``: the name of a label-noise condition in the tables."""
    return "clean" if noise == 0 else f"noise {100 * noise:g}%"


def um_label(scale: float) -> str:
    """The method name of UM at ``scale`` times the estimated floor (``"+UM"`` at the estimate)."""
    return METHOD_LABELS["um"] if scale == 1.0 else f"+UM ({scale:g}b)"


SELECT_SCORE = "energy"  # the score whose validation AUROC picks the epoch and b (the paper's headline score)
UM_ON_VAL = "+UM (b chosen on val OOD)"
KEYS = ["condition", "model"]  # what a study's tables are split by


def selection_score(cfg: UnleashConfig) -> str:
    """The score whose validation AUROC picks the epoch and ``b``: :data:`SELECT_SCORE` when both the
    curve and the tables compute it, else the first curve score the tables also compute."""
    both = [s for s in cfg.curve_scores if s in cfg.table_scores]
    return SELECT_SCORE if SELECT_SCORE in both else both[0]




@dataclass
class UnleashRun:
    """What :func:`run_unleash` produced for one backbone, seed and label-noise condition.

    Attributes:
        curve: per-epoch rows of :func:`stage_curve` (with validation columns).
        table: one row per (method, score): AUROC, AUPR-In, AUPR-Out, FPR95 (mean over the test OOD
            sets, percent), ID accuracy, and the validation AUROC that selections read.
        floor: the estimated loss floor ``b``.
        final_loss: the last epoch's training loss (for comparison with ``floor``).
        epochs: the epochs picked: ``"early stopping"`` (lowest ID validation loss) and ``"val OOD"``
            (highest validation AUROC of :data:`SELECT_SCORE`).
        losses: per training image: ``loss`` (final model, given label), ``masked loss`` (the same
            with the floor estimate's mask; ``b`` is its mean), ``mislabelled``, ``id``.
        climb: per epoch of UM's tuning at the estimated ``b``: the training cross-entropy (``ce``, before
            the floor) and ``ce / b``: the climb from the memorised loss to the floor, and whether it holds there.
        models: the trained models by method label.
        timings: wall time of each step in seconds (0 for cached training).
    """

    curve: pd.DataFrame
    table: pd.DataFrame
    floor: float
    final_loss: float
    epochs: dict[str, int]
    losses: pd.DataFrame
    climb: pd.DataFrame
    models: dict[str, Trained]
    timings: dict[str, float]


def _epoch_model(stages: Stages, epoch: int) -> Trained:
    model = copy.deepcopy(stages.final.backbone)
    model.load_state_dict(torch.load(stages.epochs[epoch - 1], map_location="cpu", weights_only=True))
    return replace(stages.final, backbone=model, history=stages.final.history[:epoch])


def run_unleash(model: str, profile: str | Profile | None = None, seed: int = 0, protocol: str = "multi-class",
                cache: Cache | None = None, noise: float = 0.0) -> UnleashRun:
    """The intermediate-stage study, UM (at the estimated floor and the sweep) and UMAP for backbone
    ``model`` on ``protocol`` (multi-class by default: the MOOD chapters' OOD sets), training labels
    noised at rate ``noise``. Epochs and ``b`` are chosen on validation data only."""
    cache = cache or Cache()
    run = resolve(profile, protocol, model={"name": model}, seed=seed)
    proto, prof = run.protocol, run.profile
    cfg, net = prof.unleash, prof.model
    timings = {}
    data = unleash_data(proto, cfg, noise, seed)
    stages = train_stages(data.train, net, cfg, prof.format, cache)
    timings["train_s"] = stages.final.seconds
    sets = eval_sets(proto, cfg, prof.format, seed, data)
    t = time.perf_counter()
    curve_spec = {"run": stages.final.run_id, "seed": seed, "ood": sorted(sets.ood), "scores": list(cfg.curve_scores),
                  "eval": {k: getattr(cfg, k) for k in ("eval_id", "eval_ood", "eval_fit", "val_id", "val_ood")}}
    curve = stage_curve(stages, sets, cfg.curve_scores, cache_file=cache.dir("unleash-curve", curve_spec) / "curve.csv")
    timings["curve_s"] = time.perf_counter() - t
    select = selection_score(cfg)
    epochs = {"early stopping": int(curve.loc[curve["val loss"].idxmin(), "epoch"]),
              "val OOD": int(curve.loc[curve[f"{select} val AUROC"].idxmax(), "epoch"])}
    t = time.perf_counter()
    x, y = to_tensor(data.train, prof.format), torch.from_numpy(data.train.labels.copy()).long()
    masked = masked_losses(stages.final.backbone, x, y, cfg.estimate_keep, seed).numpy()
    floor = cfg.floor
    if floor is None:
        idx = np.random.default_rng(seed).permutation(len(x))[: cfg.estimate_images or len(x)]
        floor = float(masked[idx].mean())  # estimate_floor on those images
    losses = pd.DataFrame({"id": data.train.ids, "loss": sample_losses(stages.final.backbone, x, y).numpy(),
                           "masked loss": masked, "mislabelled": data.mislabelled})
    timings["floor_s"] = time.perf_counter() - t
    models = {METHOD_LABELS["baseline"]: stages.final,
              "early stopping (ID val loss)": _epoch_model(stages, epochs["early stopping"]),
              "epoch chosen on val OOD": _epoch_model(stages, epochs["val OOD"])}
    t = time.perf_counter()
    models[METHOD_LABELS["ce"]] = tune(stages.final, data.train, "ce", None, cfg, prof.format, cache)
    sweep = {um_label(scale): scale for scale in sorted({1.0, *cfg.floor_scales})}
    for label, scale in sweep.items():
        models[label] = tune(stages.final, data.train, "um", scale * floor, cfg, prof.format, cache)
    models[METHOD_LABELS["umap"]] = tune(stages.final, data.train, "umap", floor, cfg, prof.format, cache)
    timings["tune_s"] = time.perf_counter() - t
    t = time.perf_counter()
    rows = []
    for method, trained in models.items():
        for name, tab in evaluate(trained.backbone, sets, cfg.table_scores).items():
            rows.append({"condition": condition_label(noise), "model": model, "seed": seed, "method": method,
                         "score": name, **tab.loc["mean"].to_dict(), "ID acc": tab.attrs["id_acc"],
                         "val AUROC": tab.attrs["val_auroc"]})
    table = pd.DataFrame(rows)
    # UM with b chosen among the sweep on the validation OOD set (by SELECT_SCORE), as the paper tunes
    if len(sweep) > 1:  # without a sweep there is no b to choose
        ums = table[table["method"].isin(list(sweep)) & (table["score"] == select)]
        chosen = ums.loc[ums["val AUROC"].idxmax(), "method"]
        table = pd.concat([table, table[table["method"] == chosen].assign(method=UM_ON_VAL)], ignore_index=True)
    timings["eval_s"] = time.perf_counter() - t
    curve.insert(0, "condition", condition_label(noise))
    um = models[um_label(1.0)].history
    climb = pd.DataFrame({"condition": condition_label(noise), "epoch": [r["epoch"] for r in um],
                          "ce": [r["ce"] for r in um], "floor b": floor})
    climb["ce / b"] = climb["ce"] / floor
    return UnleashRun(curve, table, floor, stages.final.history[-1]["loss"], epochs, losses, climb, models, timings)


__all__ = ["METHODS", "METHOD_LABELS", "Stages", "train_stages", "stage_curve", "tune", "condition_label", "um_label",
           "SELECT_SCORE", "UM_ON_VAL", "KEYS", "selection_score", "UnleashRun", "run_unleash"]
