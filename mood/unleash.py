"""Unleashing Mask (Zhu et al., ICML 2023): the OOD ability a classifier has mid-training, and two
ways to get it back from the final model.

1. :func:`train_stages` trains an ID classifier from scratch and keeps every epoch's weights;
   :func:`stage_curve` scores OOD (MSP, Energy, ODIN) at each one. The paper finds an intermediate
   epoch better at OOD detection than the last: late training memorises atypical ID samples.
2. :func:`estimate_floor` puts a number on that stage without any OOD data: the mean training
   cross-entropy of the final model with a small random fraction of every layer's weights masked
   out (the official code keeps 96.5%).
3. :func:`tune` goes on from the final model with the loss floored at that value,
   ``|CE - b| + b`` (:func:`mood.pretext.loss_floor`): ``"um"`` updates the weights; ``"umap"``
   freezes them and learns a mask that keeps ~80% of each layer's weights (edge-popup scores with a
   straight-through top-k); ``"ce"`` is the control, the same extra epochs with plain CE.

:func:`run_unleash` chains the three for one backbone and seed, and returns the per-epoch curve and
a long table (method x score) of AUROC / FPR95 / AUPR and ID accuracy. Every stage is cached by its
configuration (:class:`mood.pipeline.Cache`) and resumes after an interruption (:func:`mood.engine.fit`).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from mood.artifacts import (Cache, Trained, atomic_torch_save, atomic_write_text, fingerprint, is_finished,
                            load_trained, save_results, save_trained)
from mood.config import Profile, UnleashConfig
from mood.data import ImageFormat, ImageSet, sample_tensors, to_tensor
from mood.engine import fit, resolve_device
from mood.features import extract
from mood.metrics import results_table
from mood.stats import seed_gaps
from mood.models import Backbone, ModelConfig
from mood.pipeline import ProtocolFeatures, ScoreInputs, check_score, id_accuracy, score, setup
from mood.pretext import Classification, loss_floor
from mood.protocols import Protocol

METHODS: tuple[str, ...] = ("ce", "um", "umap")
METHOD_LABELS: dict[str, str] = {"baseline": "baseline (last epoch)", "ce": "+CE (control)", "um": "+UM",
                                 "umap": "+UMAP"}
CURVE_SCORES: tuple[str, ...] = ("msp", "energy", "odin")
TABLE_SCORES: tuple[str, ...] = ("msp", "odin", "energy", "mahalanobis")


def um_loss(logits: torch.Tensor, y: torch.Tensor, floor: float) -> torch.Tensor:
    """UM's objective: batch-mean cross-entropy of ``logits [N, C]`` against ``y [N]``, floored at ``floor``."""
    return loss_floor(F.cross_entropy(logits.float(), y), floor)


# --------------------------------------------------------------------------------------------
# Weight masks

class _TopK(torch.autograd.Function):
    """Binary mask of the ``keep`` fraction of largest entries; gradients pass straight through."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, keep: float) -> torch.Tensor:  # type: ignore[override]
        k = max(1, round(keep * scores.numel()))
        mask = torch.zeros_like(scores)
        mask.view(-1)[scores.flatten().topk(k, sorted=False).indices] = 1.0
        return mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return grad, None


class WeightMask(nn.Module):
    """Parametrisation ``weight -> weight * m``, ``m`` keeping the ``keep`` fraction of the layer's
    weights with the largest ``|scores|`` (edge-popup, Ramanujan et al. 2020).

    Args:
        scores: same shape as the weight; a parameter, so it can be learned (UMAP) or left alone.
        keep: fraction of the layer's weights kept, in (0, 1].
    """

    def __init__(self, scores: torch.Tensor, keep: float) -> None:
        super().__init__()
        self.scores = nn.Parameter(scores)
        self.keep = keep

    def mask(self) -> torch.Tensor:
        return _TopK.apply(self.scores.abs(), self.keep)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask()


def maskable_layers(model: nn.Module) -> list[nn.Module]:
    """The layers whose weights masks act on: every convolution and linear layer (the official
    code swaps exactly these for its ``SubnetConv`` / ``SubnetLinear``)."""
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def add_masks(model: nn.Module, keep: float, init: str = "random", seed: int = 0) -> list[WeightMask]:
    """Puts a :class:`WeightMask` on every maskable layer of ``model`` (in place).

    Args:
        keep: fraction of each layer's weights kept.
        init: ``"random"`` scores (a uniformly random subset is kept) or ``"magnitude"`` (``|w|``
            plus a tie-breaking jitter: the largest weights are kept).
        seed: seeds the random scores.
    Returns:
        The masks, in layer order.
    """
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must lie in (0, 1], got {keep}")
    if init not in ("random", "magnitude"):
        raise ValueError(f"unknown mask init {init!r}; valid: random, magnitude")
    gen = torch.Generator().manual_seed(seed)
    masks = []
    for layer in maskable_layers(model):
        w = layer.weight.detach()
        noise = torch.rand(w.shape, generator=gen).to(w.device, w.dtype)
        scores = noise if init == "random" else w.abs() + 1e-6 * w.abs().mean() * noise
        mask = WeightMask(scores, keep)
        parametrize.register_parametrization(layer, "weight", mask)
        masks.append(mask)
    if not masks:
        raise ValueError(f"{type(model).__name__} has no convolution or linear layer to mask")
    return masks


def bake_masks(model: nn.Module) -> nn.Module:
    """Replaces every masked weight by ``weight * mask`` and removes the masks (in place)."""
    for layer in maskable_layers(model):
        if parametrize.is_parametrized(layer, "weight"):
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    return model


def kept_fraction(model: nn.Module) -> float:
    """Fraction of non-zero weights over the maskable layers."""
    layers = maskable_layers(model)
    return sum(int((m.weight != 0).sum()) for m in layers) / sum(m.weight.numel() for m in layers)


@torch.no_grad()
def estimate_floor(backbone: Backbone, x: torch.Tensor, y: torch.Tensor, keep: float = 0.965, seed: int = 0,
                   batch_size: int = 512) -> float:
    """UM's loss floor ``b``: mean cross-entropy over ``x [N, C, H, W]`` / ``y [N]`` of a copy of
    ``backbone`` (eval mode) with a random ``1 - keep`` of every layer's weights set to zero."""
    model = copy.deepcopy(backbone).eval()
    add_masks(model, keep, "random", seed)
    device = next(model.parameters()).device
    total = 0.0
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        total += F.cross_entropy(model(xb.to(device)).float(), yb.to(device), reduction="sum").item()
    return total / len(x)


# --------------------------------------------------------------------------------------------
# Evaluation

@dataclass
class EvalSets:
    """Fixed images every model of a study is scored on.

    Attributes:
        id_x: ``[N, C, H, W]`` ID test images; ``id_y``: ``[N]`` their labels.
        ood: ``[M, C, H, W]`` images by OOD set.
        fit_x: ``[F, C, H, W]`` ID training images that fit Mahalanobis.
    """

    id_x: torch.Tensor
    id_y: torch.Tensor
    ood: dict[str, torch.Tensor]
    fit_x: torch.Tensor


def eval_sets(protocol: Protocol, cfg: UnleashConfig, fmt: ImageFormat, seed: int = 0) -> EvalSets:
    """Samples of the protocol's ID test, OOD test and ID train sets at ``cfg``'s sizes."""
    def take(s: ImageSet, n: int | None) -> ImageSet:
        return s.sample(n, seed) if n is not None and n < len(s) else s

    ident = take(protocol.id_test, cfg.eval_id)
    return EvalSets(to_tensor(ident, fmt), torch.from_numpy(ident.labels.copy()).long(),
                    {k: to_tensor(take(v, cfg.eval_ood), fmt) for k, v in protocol.ood_test.items()},
                    to_tensor(take(protocol.train, cfg.eval_fit), fmt))


def evaluate(backbone: Backbone, sets: EvalSets, scores: tuple[str, ...] = TABLE_SCORES) -> dict[str, pd.DataFrame]:
    """Results tables (percent; one row per OOD set and a ``mean`` row) of each score in ``scores``
    (any name of :data:`mood.scores.SCORES`), plus ``"id_acc"`` in each table's ``attrs``."""
    for name in scores:
        check_score(name)
    device = resolve_device("auto")
    backbone = backbone.eval().to(device)
    ident = extract(backbone, sets.id_x, sets.id_y, device=device, desc="eval[id]")
    fit_set = extract(backbone, sets.fit_x, device=device, desc="eval[fit]") if "mahalanobis" in scores else ident
    feats = ProtocolFeatures(fit=fit_set, id=ident,
                             ood={k: extract(backbone, v, device=device, desc=f"eval[{k}]") for k, v in sets.ood.items()})
    inputs = ScoreInputs(sets.id_x, sets.ood)
    out = {}
    for name in scores:
        id_s, ood_s = score(feats, name, backbone=backbone, inputs=inputs)
        table = results_table(id_s.numpy(), {k: v.numpy() for k, v in ood_s.items()})
        table.attrs["id_acc"] = id_accuracy(feats)
        out[name] = table
    backbone.cpu()
    return out


# --------------------------------------------------------------------------------------------
# The three stages

@dataclass
class Stages:
    """A classifier trained from scratch with every epoch kept.

    Attributes:
        final: the last epoch's model (:class:`mood.pipeline.Trained`, with the training history).
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
    """One row per epoch: training loss and accuracy, ID test accuracy, and the mean AUROC / FPR95
    over the OOD sets of each score. Written to ``cache_file`` (CSV) and read back from it."""
    if cache_file is not None and cache_file.exists():
        return pd.read_csv(cache_file)
    model = copy.deepcopy(stages.final.backbone)
    rows = []
    for e, (path, rec) in enumerate(zip(stages.epochs, stages.final.history), start=1):
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        tables = evaluate(model, sets, scores)
        row = {"epoch": e, "train loss": rec["loss"], "train acc": 100.0 * rec["acc"],
               "ID acc": next(iter(tables.values())).attrs["id_acc"]}
        for name, t in tables.items():
            row[f"{name} AUROC"], row[f"{name} FPR95"] = t.loc["mean", "AUROC"], t.loc["mean", "FPR95"]
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
                         f"estimate one with mood.unleash.estimate_floor or set UnleashConfig.floor")
    cache = cache or Cache()
    floor = None if method == "ce" else float(floor)  # type: ignore[arg-type]
    tcfg = replace(cfg.tune, lr=cfg.umap_lr) if method == "umap" else cfg.tune
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

@dataclass
class UnleashRun:
    """What :func:`run_unleash` produced for one backbone and seed.

    Attributes:
        curve: per-epoch rows of :func:`stage_curve`.
        table: one row per (method, score): AUROC, AUPR-In, AUPR-Out, FPR95 (mean over OOD sets,
            percent) and ID accuracy.
        floor: the loss floor ``b`` used by UM and UMAP.
        final_loss: the last epoch's training loss (for comparison with ``floor``).
        models: the trained models by method (``baseline``, ``ce``, ``um``, ``umap``).
        timings: wall time of each step in seconds (0 for cached training).
    """

    curve: pd.DataFrame
    table: pd.DataFrame
    floor: float
    final_loss: float
    models: dict[str, Trained]
    timings: dict[str, float]


def run_unleash(model: str, profile: str | Profile | None = None, seed: int = 0, protocol: str = "multi-class",
                cache: Cache | None = None) -> UnleashRun:
    """The intermediate-stage study, UM and UMAP for backbone ``model`` on ``protocol``
    (multi-class by default, so the OOD sets are the MOOD chapters' ones)."""
    cache = cache or Cache()
    proto, prof = setup(protocol, profile)
    cfg = prof.unleash.with_seed(seed)
    net = replace(prof.model, name=model)
    timings = {}
    stages = train_stages(proto.train, net, cfg, prof.format, cache)
    timings["train_s"] = stages.final.seconds
    sets = eval_sets(proto, cfg, prof.format, seed)
    t = time.perf_counter()
    curve_spec = {"run": stages.final.run_id, "eval": {k: getattr(cfg, k) for k in ("eval_id", "eval_ood", "eval_fit")},
                  "seed": seed, "ood": sorted(sets.ood), "scores": list(cfg.curve_scores)}
    curve = stage_curve(stages, sets, cfg.curve_scores, cache_file=cache.dir("unleash-curve", curve_spec) / "curve.csv")
    timings["curve_s"] = time.perf_counter() - t
    t = time.perf_counter()
    floor = cfg.floor
    if floor is None:
        x, y = sample_tensors(proto.train, prof.format, cfg.estimate_images or cfg.train.max_images, seed)
        floor = estimate_floor(stages.final.backbone, x, y, cfg.estimate_keep, seed)
    timings["floor_s"] = time.perf_counter() - t
    models = {"baseline": stages.final}
    for method in METHODS:
        models[method] = tune(stages.final, proto.train, method, floor, cfg, prof.format, cache)
        timings[f"{method}_s"] = models[method].seconds
    t = time.perf_counter()
    rows = []
    for method, trained in models.items():
        for name, tab in evaluate(trained.backbone, sets, TABLE_SCORES).items():
            rows.append({"model": model, "seed": seed, "method": METHOD_LABELS[method], "score": name,
                         **tab.loc["mean"].to_dict(), "ID acc": tab.attrs["id_acc"]})
    timings["eval_s"] = time.perf_counter() - t
    return UnleashRun(curve, pd.DataFrame(rows), floor, stages.final.history[-1]["loss"], models, timings)


def best_epoch(curve: pd.DataFrame, score: str = "energy") -> pd.Series:
    """The row of the epoch with the highest mean AUROC of ``score``. It is chosen on the test OOD
    sets, so it is an oracle: it shows what the intermediate stage holds, not a usable method."""
    return curve.loc[curve[f"{score} AUROC"].idxmax()]


def summarize(runs: pd.DataFrame, metrics: tuple[str, ...] = ("AUROC", "FPR95", "ID acc")) -> pd.DataFrame:
    """``mean ± std`` over seeds of each metric, rows (model, method), columns (score, metric)."""
    g = runs.groupby(["model", "method", "score"], sort=False)[list(metrics)]
    mean, std, n = g.mean(), g.std().fillna(0.0), g.size()
    cells = mean.copy().astype(object)
    for col in metrics:
        cells[col] = [f"{m:.2f} ± {s:.2f}" if k > 1 else f"{m:.2f}" for m, s, k in zip(mean[col], std[col], n)]
    wide = cells.unstack("score")
    wide.columns = wide.columns.swaplevel(0, 1)
    scores = list(dict.fromkeys(runs["score"]))
    return wide[[(s, m) for s in scores for m in metrics]]


def effect(runs: pd.DataFrame, method: str = "+UM", against: str = METHOD_LABELS["baseline"],
           metric: str = "AUROC") -> pd.DataFrame:
    """Per model and score: the change ``Δ`` of ``metric`` from ``against`` to ``method``: mean, std,
    95% t-interval (``ci_lo``, ``ci_hi``) and paired t-test (``p``, ``significant`` at 5%) of the
    same-seed differences (:func:`mood.stats.paired_test`; no test with a single seed). The columns
    do not depend on ``metric``, so tables of several metrics concatenate."""
    key = ["model", "score", "seed"]
    base = runs[runs["method"] == against].set_index(key)[metric]
    other = runs[runs["method"] == method].set_index(key)[metric]
    if base.empty or other.empty:
        raise ValueError(f"effect: no rows for {method!r} or {against!r}; methods present: "
                         f"{sorted(runs['method'].unique())}")
    diff = (other - base).dropna().rename("delta").reset_index()
    out = seed_gaps(diff, ["model", "score"], "delta").rename(columns={"mean": "Δ"})
    out["std"] = out["std"].fillna(0.0)
    return out


# --------------------------------------------------------------------------------------------
# Every backbone and seed: the tables and the verdict of the chapter and the CLI

def stage_table(curve: pd.DataFrame, scores: tuple[str, ...]) -> pd.DataFrame:
    """Per (model, seed, score) of a study's ``curve``: the best epoch (oracle, picked on the test OOD
    sets), its AUROC, the last epoch, its AUROC, and ``gap`` = best - last (AUROC points)."""
    rows = []
    for (model, seed), c in curve.groupby(["model", "seed"], sort=False):
        last = c.iloc[-1]
        for name in scores:
            best = best_epoch(c, name)
            rows.append({"model": model, "seed": seed, "score": name, "best epoch": int(best["epoch"]),
                         "best AUROC": best[f"{name} AUROC"], "last epoch": int(last["epoch"]),
                         "last AUROC": last[f"{name} AUROC"]})
    out = pd.DataFrame(rows)
    out["gap"] = out["best AUROC"] - out["last AUROC"]
    return out


def study_effects(runs: pd.DataFrame) -> pd.DataFrame:
    """The paired (same-seed) comparisons the verdict rests on, stacked under a ``comparison`` level:
    UM and UMAP against the last epoch, UM against the plain-CE control (AUROC points), and UM
    against the last epoch in FPR95 points."""
    return pd.concat({
        "UM vs baseline": effect(runs, "+UM"),
        "UM vs CE control": effect(runs, "+UM", against=METHOD_LABELS["ce"]),
        "UMAP vs baseline": effect(runs, "+UMAP"),
        "UM vs baseline, FPR95": effect(runs, "+UM", metric="FPR95"),
    }, names=["comparison"])


def _call(row: pd.Series) -> str:
    """A paired test's outcome in words: the interval, and whether it excludes 0 at 5%."""
    if row["seeds"] < 2:
        return "one seed: no test"
    verdict = "significant" if row["significant"] else "not significant"
    return f"95% CI [{row['ci_lo']:+.2f}, {row['ci_hi']:+.2f}], paired t-test p={row['p']:.3f}, {verdict}"


@dataclass
class UnleashStudy:
    """:func:`run_unleash` over several backbones and seeds, with the tables derived from it.

    Attributes:
        curve: per (model, seed, epoch) rows of :func:`stage_curve`.
        runs: per (model, seed, method, score) rows of :class:`UnleashRun` tables.
        floors: per (model, seed): the floor ``b`` and the last epoch's training CE.
        timings: per (model, seed): wall time of each step (s).
        curve_scores: the scores of the per-epoch curve.
    """

    curve: pd.DataFrame
    runs: pd.DataFrame
    floors: pd.DataFrame
    timings: pd.DataFrame
    curve_scores: tuple[str, ...]

    @cached_property
    def stages(self) -> pd.DataFrame:
        """:func:`stage_table` of the curve."""
        return stage_table(self.curve, self.curve_scores)

    @cached_property
    def effects(self) -> pd.DataFrame:
        """:func:`study_effects` of the runs."""
        return study_effects(self.runs)

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(self.floors["model"]))

    def stage_gap(self) -> pd.DataFrame:
        """Best epoch and gap (best - last AUROC) per model and score: mean and std over seeds."""
        return self.stages.groupby(["model", "score"], sort=False)[["best epoch", "gap"]].agg(["mean", "std"])

    def save(self, results_dir: str | Path, stem: str = "16_unleash") -> None:
        """Writes every table (CSV and JSON) under ``results_dir`` as ``<stem>_<table>``, and the
        summary (:func:`summarize`) as ``<stem>``."""
        save_results(self.curve.set_index("model"), results_dir, f"{stem}_curve")
        save_results(self.runs.set_index("model"), results_dir, f"{stem}_runs")
        save_results(self.floors.set_index("model"), results_dir, f"{stem}_floors")
        save_results(self.stages.set_index("model"), results_dir, f"{stem}_stages")
        save_results(summarize(self.runs), results_dir, stem)
        save_results(self.effects.round(4), results_dir, f"{stem}_effect")

    def verdict(self) -> str:
        """Per backbone, in prose: the best Energy epoch against the last, UM's and UMAP's paired
        change, the control, and where the floor ``b`` lies against the final training loss."""
        lines = []
        for model in self.models:
            g = self.stages[(self.stages["model"] == model) & (self.stages["score"] == "energy")]
            e = self.effects.loc[("UM vs baseline", model, "energy")]
            c = self.effects.loc[("UM vs CE control", model, "energy")]
            u = self.effects.loc[("UMAP vs baseline", model, "energy")]
            if len(g):
                lines.append(f"{model}: best Energy epoch {g['best epoch'].mean():.1f} of {int(g['last epoch'].iloc[0])}, "
                             f"{g['gap'].mean():.2f} AUROC above the last epoch.")
            direction = "improves on" if e["Δ"] > 0 else "falls below"
            lines.append(f"  Energy + UM {direction} the baseline by {e['Δ']:+.2f} AUROC ({_call(e)}); against the "
                         f"plain-CE control {c['Δ']:+.2f} ({_call(c)}). Energy + UMAP: {u['Δ']:+.2f} ({_call(u)}).")
            f = self.floors[self.floors["model"] == model][["floor b", "last-epoch train CE"]].mean()
            side = ("above the final loss, so UM trains the loss back up to it"
                    if f["floor b"] > f["last-epoch train CE"] else "below the final loss, so UM goes on lowering it to b")
            lines.append(f"  UM floor b {f['floor b']:.3f} vs last-epoch train CE {f['last-epoch train CE']:.3f}: {side}.")
        lines.append("Paper (CIFAR-10, DenseNet-101): Energy + UM +1.66 AUROC, -9.40 FPR95.")
        return "\n".join(lines)


def run_study(profile: str | Profile | None = None, models: list[str] | None = None, seeds: list[int] | None = None,
              protocol: str = "multi-class", cache: Cache | None = None) -> UnleashStudy:
    """:func:`run_unleash` for every backbone (default: the profile's) and seed (default: the
    profile's), collected into an :class:`UnleashStudy`."""
    _, prof = setup(protocol, profile)
    cfg = prof.unleash
    models = list(models or cfg.models)
    seeds = list(cfg.seeds if seeds is None else seeds)
    for m in models:
        replace(prof.model, name=m)  # a wrong name fails here, before any training
    curves, tables, floors, timings = [], [], [], []
    for model in models:
        for seed in seeds:
            run = run_unleash(model, prof, seed=seed, protocol=protocol, cache=cache)
            curves.append(run.curve.assign(model=model, seed=seed))
            tables.append(run.table)
            floors.append({"model": model, "seed": seed, "floor b": run.floor, "last-epoch train CE": run.final_loss})
            timings.append({"model": model, "seed": seed, **{k: round(v, 1) for k, v in run.timings.items()}})
    curve, runs = pd.concat(curves, ignore_index=True), pd.concat(tables, ignore_index=True)
    return UnleashStudy(curve, runs, pd.DataFrame(floors), pd.DataFrame(timings), tuple(cfg.curve_scores))


__all__ = ["WeightMask", "add_masks", "bake_masks", "kept_fraction", "estimate_floor", "um_loss", "EvalSets",
           "eval_sets", "evaluate", "Stages", "train_stages", "stage_curve", "tune", "UnleashRun", "run_unleash",
           "best_epoch", "summarize", "effect", "stage_table", "study_effects", "UnleashStudy", "run_study"]
