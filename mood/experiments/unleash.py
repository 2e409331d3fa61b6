"""Unleashing Mask (Zhu et al., ICML 2023): the OOD ability a classifier has mid-training, and two
ways to get it back from the final model.

1. :func:`unleash_data` holds out ID validation images and a validation OOD set (tile-shuffled ID
   images, none of the test OOD sets) and noises the training labels at the condition's rate;
   :func:`train_stages` trains an ID classifier from scratch, keeping every epoch's weights;
   :func:`stage_curve` scores OOD (MSP, Energy, ODIN) at each epoch, on the test sets and on the
   validation sets. The paper finds an intermediate epoch better at OOD detection than the last:
   late training memorises atypical ID samples. Here the epoch is picked on validation data only
   (and, as a baseline, by early stopping on the ID validation loss).
2. :func:`estimate_floor` puts a number on that stage without any OOD data: the mean training
   cross-entropy of the final model with a small random fraction of every layer's weights masked
   out (the official code keeps 96.5%).
3. :func:`tune` goes on from the final model with the loss floored at that value,
   ``|CE - b| + b`` (:func:`mood.core.pretext.loss_floor`): ``"um"`` updates the weights; ``"umap"``
   freezes them and learns a mask that keeps ~80% of each layer's weights (edge-popup scores with a
   straight-through top-k); ``"ce"`` is the control, the same extra epochs with plain CE. UM also
   runs at multiples of ``b`` and with the ``b`` the validation OOD set prefers.

:func:`run_unleash` chains them for one backbone, seed and label-noise condition and returns the
per-epoch curve, a long table (method x score) of AUROC / FPR95 / AUPR with ID accuracy, and the
per-image training losses; :func:`run_study` runs every backbone, condition and seed. Every stage is
cached by its configuration (:class:`mood.core.cache.Cache`) and resumes after an interruption
(:func:`mood.core.engine.fit`).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from mood.core.cache import Cache, Trained, fingerprint, is_finished, load_trained, save_trained
from mood.core.data import ImageFormat, ImageSet, sample_tensors, shuffle_patches, to_tensor, with_label_noise
from mood.core.engine import fit, resolve_device
from mood.core.features import extract
from mood.core.io import atomic_torch_save, atomic_write_text
from mood.core.metrics import auroc, results_table
from mood.core.models import Backbone, ModelConfig
from mood.core.pretext import Classification
from mood.core.protocols import Protocol
from mood.core.stats import holm, seed_gaps
from mood.experiments import tables
from mood.experiments.config import Profile, UnleashConfig
from mood.experiments.pipeline import ProtocolFeatures, ScoreInputs, check_score, id_accuracy, score
from mood.experiments.resolve import base_profile, resolve
from mood.experiments.verdicts import paired

METHODS: tuple[str, ...] = ("ce", "um", "umap")
METHOD_LABELS: dict[str, str] = {"baseline": "baseline (last epoch)", "ce": "+CE (control)", "um": "+UM",
                                 "umap": "+UMAP"}
CURVE_SCORES: tuple[str, ...] = ("msp", "energy", "odin")
TABLE_SCORES: tuple[str, ...] = ("msp", "odin", "energy", "mahalanobis")


# --------------------------------------------------------------------------------------------
# Weight masks

class _TopK(torch.autograd.Function):
    """Binary mask of the ``keep`` fraction of largest entries; gradients pass straight through."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, keep: float) -> torch.Tensor:  # type: ignore[override]
        k = max(1, round(keep * scores.numel()))
        # flatten() and the flat mask both follow the logical order, whatever the memory format
        mask = torch.zeros(scores.numel(), dtype=scores.dtype, device=scores.device)
        mask[scores.flatten().topk(k, sorted=False).indices] = 1.0
        return mask.view(scores.shape)

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


@torch.no_grad()
def masked_losses(backbone: Backbone, x: torch.Tensor, y: torch.Tensor, keep: float = 0.965, seed: int = 0,
                  batch_size: int = 512) -> torch.Tensor:
    """Per-image cross-entropy ``[N]`` over ``x [N, C, H, W]`` / ``y [N]`` of a copy of ``backbone``
    (eval mode) with a random ``1 - keep`` of every layer's weights set to zero."""
    model = copy.deepcopy(backbone).eval()
    add_masks(model, keep, "random", seed)
    device = next(model.parameters()).device
    with torch.no_grad():
        return torch.cat([F.cross_entropy(model(xb.to(device)).float(), yb.to(device), reduction="none").cpu()
                          for xb, yb in zip(x.split(batch_size), y.split(batch_size))])


def estimate_floor(backbone: Backbone, x: torch.Tensor, y: torch.Tensor, keep: float = 0.965, seed: int = 0,
                   batch_size: int = 512) -> float:
    """UM's loss floor ``b``, as the paper estimates it: the mean of :func:`masked_losses`, the training
    loss of the final model with a small random share of its weights masked."""
    return float(masked_losses(backbone, x, y, keep, seed, batch_size).mean())


# --------------------------------------------------------------------------------------------
# Evaluation

@dataclass
class UnleashData:
    """The images of one (seed, label-noise) condition of the study.

    Attributes:
        train: the training images, labels noised at the condition's rate.
        clean_labels: ``[N]`` their true labels (``train.labels`` differs where noised).
        val: held-out ID training images (never trained on), labels noised like ``train``.
        val_ood: other held-out ID training images with their tiles shuffled: the validation OOD set.
        noise: the label-noise rate.
    """

    train: ImageSet
    clean_labels: np.ndarray
    val: ImageSet
    val_ood: ImageSet
    noise: float

    @property
    def mislabelled(self) -> np.ndarray:
        """``[N]`` bool: training images whose label was noised."""
        return self.train.labels != self.clean_labels


def unleash_data(protocol: Protocol, cfg: UnleashConfig, noise: float = 0.0, seed: int = 0) -> UnleashData:
    """Splits the protocol's training images for one seed: ``cfg.val_id`` held out for ID validation,
    ``cfg.val_ood`` held out and tile-shuffled for OOD validation, and the training sample
    (``cfg.train.max_images``, stratified) from the rest; then noises the training and validation
    labels at rate ``noise`` (:func:`mood.core.data.with_label_noise`)."""
    pool = protocol.train
    held = cfg.val_id + cfg.val_ood
    if held >= len(pool):
        raise ValueError(f"UnleashConfig: val_id + val_ood = {held} leaves no training image of {len(pool)}; lower them")
    order = np.random.default_rng(seed).permutation(len(pool))
    val = pool.subset(order[: cfg.val_id], name=f"{pool.name}/val")
    val_ood = shuffle_patches(pool.subset(order[cfg.val_id: held], name=f"{pool.name}/val"), seed=seed)
    rest = pool.subset(order[held:], name=f"{pool.name}/unleash")
    train = rest.sample(cfg.train.max_images, seed) if cfg.train.max_images is not None else rest
    return UnleashData(with_label_noise(train, noise, seed), train.labels.copy(),
                       with_label_noise(val, noise, seed + 1), val_ood, noise)


@dataclass
class EvalSets:
    """Fixed images every model of a study is scored on.

    Attributes:
        id_x: ``[N, C, H, W]`` ID test images; ``id_y``: ``[N]`` their labels.
        ood: ``[M, C, H, W]`` test images by OOD set.
        fit_x: ``[F, C, H, W]`` ID training images that fit Mahalanobis.
        val_x: ``[V, C, H, W]`` held-out ID images and ``val_y`` their (possibly noised) labels;
            ``val_ood``: ``[W, C, H, W]`` validation OOD images. None: no validation.
    """

    id_x: torch.Tensor
    id_y: torch.Tensor
    ood: dict[str, torch.Tensor]
    fit_x: torch.Tensor
    val_x: torch.Tensor | None = None
    val_y: torch.Tensor | None = None
    val_ood: torch.Tensor | None = None


def eval_sets(protocol: Protocol, cfg: UnleashConfig, fmt: ImageFormat, seed: int = 0,
              data: UnleashData | None = None) -> EvalSets:
    """Samples of the protocol's ID test and OOD test sets at ``cfg``'s sizes, the Mahalanobis fit
    images (from ``data.train`` when given, else the protocol's training set) and ``data``'s
    validation sets."""
    def take(s: ImageSet, n: int | None) -> ImageSet:
        return s.sample(n, seed) if n is not None and n < len(s) else s

    ident = take(protocol.id_test, cfg.eval_id)
    sets = EvalSets(to_tensor(ident, fmt), torch.from_numpy(ident.labels.copy()).long(),
                    {k: to_tensor(take(v, cfg.eval_ood), fmt) for k, v in protocol.ood_test.items()},
                    to_tensor(take(protocol.train if data is None else data.train, cfg.eval_fit), fmt))
    if data is not None:
        sets.val_x, sets.val_y = to_tensor(data.val, fmt), torch.from_numpy(data.val.labels.copy()).long()
        sets.val_ood = to_tensor(data.val_ood, fmt)
    return sets


def evaluate(backbone: Backbone, sets: EvalSets, scores: tuple[str, ...] = TABLE_SCORES) -> dict[str, pd.DataFrame]:
    """Results tables (percent; one row per OOD set and a ``mean`` row) of each score in ``scores``
    (any name of :data:`mood.core.scores.SCORES`). Each table's ``attrs`` hold ``"id_acc"`` and, when
    ``sets`` has validation images, ``"val_auroc"`` (held-out ID vs validation OOD, percent),
    ``"val_loss"`` and ``"val_acc"`` (cross-entropy and accuracy on the held-out ID labels)."""
    for name in scores:
        check_score(name)
    device = resolve_device("auto")
    backbone = backbone.eval().to(device)
    ident = extract(backbone, sets.id_x, sets.id_y, device=device, desc="eval[id]")
    fit_set = extract(backbone, sets.fit_x, device=device, desc="eval[fit]") if "mahalanobis" in scores else ident
    feats = ProtocolFeatures(fit=fit_set, id=ident,
                             ood={k: extract(backbone, v, device=device, desc=f"eval[{k}]") for k, v in sets.ood.items()})
    inputs = ScoreInputs(sets.id_x, sets.ood)
    val = None
    if sets.val_x is not None and sets.val_ood is not None:
        val_id = extract(backbone, sets.val_x, sets.val_y, device=device, desc="eval[val]")
        val = (ProtocolFeatures(fit=fit_set, id=val_id, ood={"val": extract(backbone, sets.val_ood, device=device,
                                                                             desc="eval[val ood]")}),
               ScoreInputs(sets.val_x, {"val": sets.val_ood}))
        val_loss = F.cross_entropy(val_id.logits, sets.val_y).item()
    out = {}
    for name in scores:
        id_s, ood_s = score(feats, name, backbone=backbone, inputs=inputs)
        table = results_table(id_s.numpy(), {k: v.numpy() for k, v in ood_s.items()})
        table.attrs["id_acc"] = id_accuracy(feats)
        if val is not None:
            vid, vood = score(val[0], name, backbone=backbone, inputs=val[1])
            table.attrs |= {"val_auroc": 100 * auroc(vid.numpy(), vood["val"].numpy()), "val_loss": val_loss,
                            "val_acc": id_accuracy(val[0])}
        out[name] = table
    backbone.cpu()
    return out


@torch.no_grad()
def sample_losses(backbone: Backbone, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Per-image cross-entropy ``[N]`` of ``backbone`` (eval mode) on images ``x [N, C, H, W]`` with
    labels ``y [N]``: which training images the model fits and which it has not (yet) memorised."""
    device = resolve_device("auto")
    model = backbone.eval().to(device)
    out = torch.cat([F.cross_entropy(model(xb.to(device)).float(), yb.to(device), reduction="none").cpu()
                     for xb, yb in zip(x.split(batch_size), y.split(batch_size))])
    backbone.cpu()
    return out


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
                         f"estimate one with mood.experiments.unleash.estimate_floor or set UnleashConfig.floor")
    cache = cache or Cache()
    floor = None if method == "ce" else float(floor)  # type: ignore[arg-type]
    # UMAP's mask scores train with AdamW whatever the weights' optimiser: their gradients are the
    # weights' times the loss gradient, too small and uneven for one SGD learning rate
    tcfg = replace(cfg.tune, lr=cfg.umap_lr, optimizer="adamw") if method == "umap" else cfg.tune
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


HOLD_EPOCHS, HOLD_TOLERANCE = 2, 0.10  # UM "holds its floor": training CE within ±10% of b over its last 2 epochs


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


def best_epoch(curve: pd.DataFrame, score: str = "energy") -> pd.Series:
    """The row of the epoch with the highest mean test AUROC of ``score``: an oracle (picked on the
    test OOD sets) that shows what the intermediate stage holds, not a usable method."""
    return curve.loc[curve[f"{score} AUROC"].idxmax()]


def summarize(runs: pd.DataFrame, metrics: tuple[str, ...] = ("AUROC", "FPR95", "ID acc")) -> pd.DataFrame:
    """``mean ± std`` over seeds of each metric, rows (condition, model, method), columns (score, metric)."""
    g = runs.groupby([*KEYS, "method", "score"], sort=False)[list(metrics)]
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
    """Per condition, model and score: the change ``Δ`` of ``metric`` from ``against`` to ``method``:
    mean, std, 95% t-interval (``ci_lo``, ``ci_hi``) and paired t-test (``p``, ``significant`` at
    5%) of the same-seed differences (:func:`mood.core.stats.paired_test`; no test with a single seed).
    The columns do not depend on ``metric``, so tables of several metrics concatenate."""
    key = [*KEYS, "score", "seed"]
    base = runs[runs["method"] == against].set_index(key)[metric]
    other = runs[runs["method"] == method].set_index(key)[metric]
    if base.empty or other.empty:
        raise ValueError(f"effect: no rows for {method!r} or {against!r}; methods present: "
                         f"{sorted(runs['method'].unique())}")
    diff = (other - base).dropna().rename("delta").reset_index()
    out = seed_gaps(diff, [*KEYS, "score"], "delta").rename(columns={"mean": "Δ"})
    out["std"] = out["std"].fillna(0.0)
    return out


def beside_mood(runs: pd.DataFrame, mood_seeds: pd.DataFrame, score: str = SELECT_SCORE) -> pd.DataFrame:
    """MOOD's multi-class detector beside Unleashing Mask's, each as it would be deployed: per
    condition and backbone of ``runs``, the method whose mean validation AUROC of ``score`` is highest
    (chosen without test data); MOOD's row from ``mood_seeds`` (chapter 6's per-seed table: its
    ``mean`` AUROC over the same OOD sets and ``ID acc``). Rows: detectors; columns ``AUROC``,
    ``FPR95`` (NaN for MOOD: its per-seed table has none), ``ID acc`` (means over seeds), ``seeds``."""
    g = (runs[runs["score"] == score].groupby([*KEYS, "method"], sort=False)
         .agg(**{"val AUROC": ("val AUROC", "mean"), "AUROC": ("AUROC", "mean"), "FPR95": ("FPR95", "mean"),
                 "ID acc": ("ID acc", "mean"), "seeds": ("seed", "nunique")}))
    if g.empty:
        raise ValueError(f"beside_mood: no {score!r} rows in the runs; scores present: {sorted(runs['score'].unique())}")
    chosen = g.loc[g.groupby(level=KEYS, sort=False)["val AUROC"].idxmax()]
    rows = {"MOOD (chapter 6): Mahalanobis, MIM-pretrained and fine-tuned ViT":
            {"AUROC": mood_seeds["mean"].mean(), "FPR95": np.nan, "ID acc": mood_seeds["ID acc"].mean(),
             "seeds": len(mood_seeds)}}
    for (cond, model, method), r in chosen.iterrows():
        rows[f"{cond}: {method} ({model}, {score})"] = r.drop("val AUROC").to_dict()
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("detector")


# --------------------------------------------------------------------------------------------
# Every backbone, condition and seed: the tables and the verdict of the chapter and the CLI

def stage_table(curve: pd.DataFrame, scores: tuple[str, ...], select: str = SELECT_SCORE) -> pd.DataFrame:
    """Per (condition, model, seed, score) of a study's ``curve``: the best epoch on the test OOD sets
    (oracle) and its AUROC, the epoch picked on the validation OOD set (when the curve has it) and
    its test AUROC, the last epoch and its AUROC; ``gap`` = oracle best - last and ``val gap`` =
    validation-picked - last (AUROC points). The validation pick is one epoch for every score, the
    one ``select``'s validation AUROC prefers (the ``epoch chosen on val OOD`` of the method tables);
    without ``select`` in the curve, each score's own."""
    rows = []
    for (cond, model, seed), c in curve.groupby([*KEYS, "seed"], sort=False):
        last = c.iloc[-1]
        for name in scores:
            best = best_epoch(c, name)
            row = {"condition": cond, "model": model, "seed": seed, "score": name, "best epoch": int(best["epoch"]),
                   "best AUROC": best[f"{name} AUROC"], "last epoch": int(last["epoch"]),
                   "last AUROC": last[f"{name} AUROC"]}
            chooser = select if f"{select} val AUROC" in c else name
            if f"{chooser} val AUROC" in c:
                picked = c.loc[c[f"{chooser} val AUROC"].idxmax()]
                row |= {"val epoch": int(picked["epoch"]), "val-picked AUROC": picked[f"{name} AUROC"]}
            rows.append(row)
    out = pd.DataFrame(rows)
    out["gap"] = out["best AUROC"] - out["last AUROC"]
    if "val-picked AUROC" in out:
        out["val gap"] = out["val-picked AUROC"] - out["last AUROC"]
    return out


COMPARISONS: dict[str, tuple[str, str, str]] = {
    # name: (method, against, metric)
    "val-OOD epoch vs last": ("epoch chosen on val OOD", METHOD_LABELS["baseline"], "AUROC"),
    "early stopping vs last": ("early stopping (ID val loss)", METHOD_LABELS["baseline"], "AUROC"),
    "UM vs last": (METHOD_LABELS["um"], METHOD_LABELS["baseline"], "AUROC"),
    "UM (b on val OOD) vs last": (UM_ON_VAL, METHOD_LABELS["baseline"], "AUROC"),
    "UM vs CE control": (METHOD_LABELS["um"], METHOD_LABELS["ce"], "AUROC"),
    "UMAP vs last": (METHOD_LABELS["umap"], METHOD_LABELS["baseline"], "AUROC"),
    "UM vs last, FPR95": (METHOD_LABELS["um"], METHOD_LABELS["baseline"], "FPR95"),
}


# The chapter's declared tests: the paper's two claims (an intermediate stage beats the last; UM beats
# the last) and UM against the control, on Energy AUROC (SELECT_SCORE), per condition and backbone.
# Holm runs over this family; every other row of the effects table is secondary: described, not called.
PRIMARY = ("val-OOD epoch vs last", "UM vs last", "UM vs CE control")


def study_effects(runs: pd.DataFrame) -> pd.DataFrame:
    """The paired (same-seed) comparisons of :data:`COMPARISONS` that the runs hold, stacked under a
    ``comparison`` level (AUROC points; FPR95 points where the name says so), with ``family``
    (``primary``: a :data:`PRIMARY` comparison of :data:`SELECT_SCORE`; else ``secondary``) and
    ``p (Holm)`` over the primary family (NaN for secondary rows)."""
    methods = set(runs["method"])
    out = pd.concat({name: effect(runs, m, a, metric) for name, (m, a, metric) in COMPARISONS.items()
                     if m in methods and a in methods}, names=["comparison"])
    primary = (out.index.get_level_values("comparison").isin(PRIMARY)
               & (out.index.get_level_values("score") == SELECT_SCORE))
    out["family"] = np.where(primary, "primary", "secondary")
    out["p (Holm)"] = np.nan
    out.loc[primary, "p (Holm)"] = holm(out.loc[primary, "p"].to_numpy())
    return out


@dataclass
class UnleashStudy:
    """:func:`run_unleash` over backbones, label-noise conditions and seeds, with the tables derived from it.

    Attributes:
        curve: per (condition, model, seed, epoch) rows of :func:`stage_curve`.
        runs: per (condition, model, seed, method, score) rows of :class:`UnleashRun` tables.
        floors: per (condition, model, seed): the floor ``b``, the last epoch's training CE and
            training accuracy, the epochs picked, and what the per-image losses show.
        timings: per (condition, model, seed): wall time of each step (s).
        curve_scores: the scores of the per-epoch curve.
        climb: per (condition, model, seed, epoch) of UM's tuning at the estimated ``b``: training CE and ``ce / b``.
        losses: per-image training losses of the final models (columns ``condition``, ``model``,
            ``seed``, ``id``, ``loss``, ``masked loss``, ``mislabelled``); not saved (large), summarised in ``floors``.
    """

    curve: pd.DataFrame
    runs: pd.DataFrame
    floors: pd.DataFrame
    timings: pd.DataFrame
    curve_scores: tuple[str, ...]
    climb: pd.DataFrame
    losses: pd.DataFrame | None = None

    @cached_property
    def stages(self) -> pd.DataFrame:
        """:func:`stage_table` of the curve."""
        return stage_table(self.curve, self.curve_scores)

    @cached_property
    def effects(self) -> pd.DataFrame:
        """:func:`study_effects` of the runs."""
        return study_effects(self.runs)

    @property
    def groups(self) -> list[tuple[str, str]]:
        """The (condition, model) pairs, in run order."""
        return list(dict.fromkeys(zip(self.floors["condition"], self.floors["model"])))

    def stage_gap(self) -> pd.DataFrame:
        """Epochs and gaps (oracle best - last, validation-picked - last) per condition, model and
        score: mean and std over seeds."""
        cols = [c for c in ("best epoch", "gap", "val epoch", "val gap") if c in self.stages]
        return self.stages.groupby([*KEYS, "score"], sort=False)[cols].agg(["mean", "std"])

    def save(self, results_dir: str | Path, stem: str = "16_unleash") -> None:
        """Writes every table (CSV and JSON) under ``results_dir`` as ``<stem>_<table>``, and the
        summary (:func:`summarize`) as ``<stem>``: chapter 16's result tables (``16_unleash*``,
        :mod:`mood.experiments.tables`), under the file stem ``stem``."""
        for part, df in (("_curve", self.curve.set_index("condition")), ("_runs", self.runs.set_index("condition")),
                         ("_floors", self.floors.set_index("condition")),
                         ("_stages", self.stages.set_index("condition")), ("_climb", self.climb.set_index("condition")),
                         ("", summarize(self.runs)),
                         ("_effect", self.effects.round(4))):
            tables.save(f"16_unleash{part}", df, results_dir, stem=f"{stem}{part}")

    def verdict(self) -> str:
        """Per condition and backbone, in prose: where training got (train accuracy), the epoch picked
        on validation data and the oracle against the last, early stopping, UM's and UMAP's paired
        change in Energy AUROC, the control, and where the floor ``b`` lies against the final loss."""
        lines = []
        eff = self.effects
        for cond, model in self.groups:
            f = self.floors[(self.floors["condition"] == cond) & (self.floors["model"] == model)].mean(numeric_only=True)
            g = self.stages[(self.stages["condition"] == cond) & (self.stages["model"] == model)
                            & (self.stages["score"] == "energy")]
            head = f"{model}, {cond}: final train accuracy {f['last-epoch train acc']:.1f}%"
            if len(g):
                head += (f"; oracle best Energy epoch {g['best epoch'].mean():.1f} of {int(g['last epoch'].iloc[0])}, "
                         f"{g['gap'].mean():.2f} AUROC above the last")
            lines.append(head + ".")

            def said(name: str, what: str) -> None:
                key = (name, cond, model, "energy")
                if key in eff.index:
                    e = eff.loc[key]
                    if e["family"] == "primary":
                        words = paired(e["Δ"], e["ci_lo"], e["ci_hi"], e["p"], unit="Energy AUROC",
                                       p_holm=e["p (Holm)"], test="paired t-test")
                    else:
                        words = paired(e["Δ"], e["ci_lo"], e["ci_hi"], e["p"], unit="Energy AUROC",
                                       test="paired t-test", says=None) + " (secondary: described, not called)"
                    lines.append(f"  {what}: {words}.")

            said("val-OOD epoch vs last", "epoch picked on the validation OOD set minus the last epoch")
            said("early stopping vs last", "early stopping on ID validation loss minus the last epoch")
            said("UM vs last", "UM at the estimated b minus the last epoch")
            said("UM (b on val OOD) vs last", "UM with b picked on the validation OOD set minus the last epoch")
            said("UM vs CE control", "UM minus the plain-CE control")
            said("UMAP vs last", "UMAP minus the last epoch")
            side = ("above the final loss, so UM trains the loss back up to it"
                    if f["floor b"] > f["last-epoch train CE"] else "below the final loss, so UM goes on lowering it to b")
            lines.append(f"  UM floor b {f['floor b']:.3f} vs last-epoch train CE {f['last-epoch train CE']:.3f}: {side}.")
            if "UM loss / b" in f:
                held = self.floors.loc[(self.floors["condition"] == cond) & (self.floors["model"] == model),
                                       f"UM held b ±{HOLD_TOLERANCE:.0%}"]
                lines.append(f"  UM's final training CE {f['UM final train CE']:.3f} = {f['UM loss / b']:.2f} b; "
                             f"held within ±{HOLD_TOLERANCE:.0%} of b over its last {HOLD_EPOCHS} epochs in "
                             f"{int(held.sum())} of {len(held)} seeds.")
        lines.append("Paper (CIFAR-10, DenseNet-101): Energy + UM +1.66 AUROC, -9.40 FPR95.")
        return "\n".join(lines)


def run_study(profile: str | Profile | None = None, models: list[str] | None = None, seeds: list[int] | None = None,
              protocol: str = "multi-class", cache: Cache | None = None,
              noise: tuple[float, ...] | None = None) -> UnleashStudy:
    """:func:`run_unleash` for every backbone (default: the profile's), label-noise condition
    (default: the profile's) and seed (default: the profile's), collected into an :class:`UnleashStudy`."""
    prof = resolve(profile, protocol).profile
    cfg = prof.unleash
    models = list(models or cfg.models)
    seeds = list(cfg.seeds if seeds is None else seeds)
    conditions = tuple(cfg.noise if noise is None else noise)
    replace(cfg, noise=conditions)  # bad rates fail here, before any training
    for m in models:
        base_profile(profile, model={"name": m})  # a wrong name fails here, before any training
    curves, tables, floors, timings, losses, climbs = [], [], [], [], [], []
    for rate in conditions:
        for model in models:
            for seed in seeds:
                run = run_unleash(model, profile, seed=seed, protocol=protocol, cache=cache, noise=rate)
                keys = {"condition": condition_label(rate), "model": model, "seed": seed}
                curves.append(run.curve.assign(model=model, seed=seed))
                tables.append(run.table)
                wrong = run.losses["mislabelled"].to_numpy()
                loss, masked = run.losses["loss"].to_numpy(), run.losses["masked loss"].to_numpy()
                last = run.climb["ce / b"].to_numpy()[-HOLD_EPOCHS:]
                floors.append({**keys, "floor b": run.floor, "last-epoch train CE": run.final_loss,
                               "UM final train CE": float(run.climb["ce"].iloc[-1]),
                               "UM loss / b": float(run.climb["ce / b"].iloc[-1]),
                               f"UM held b ±{HOLD_TOLERANCE:.0%}": bool((abs(last - 1) <= HOLD_TOLERANCE).all()),
                               "b from mislabelled images": float(masked[wrong].sum() / masked.sum()) if wrong.any() else 0.0,
                               "last-epoch train acc": run.curve["train acc"].iloc[-1],
                               "early-stopping epoch": run.epochs["early stopping"],
                               "val-OOD epoch": run.epochs["val OOD"],
                               "share of images above b": float((loss > run.floor).mean()),
                               "mislabelled share": float(wrong.mean()),
                               "mean loss, mislabelled": float(loss[wrong].mean()) if wrong.any() else np.nan,
                               "mean loss, clean": float(loss[~wrong].mean()),
                               "masked loss, mislabelled": float(masked[wrong].mean()) if wrong.any() else np.nan,
                               "masked loss, clean": float(masked[~wrong].mean())})
                timings.append({**keys, **{k: round(v, 1) for k, v in run.timings.items()}})
                losses.append(run.losses.assign(**keys))
                climbs.append(run.climb.assign(model=model, seed=seed))
    curve, runs = pd.concat(curves, ignore_index=True), pd.concat(tables, ignore_index=True)
    return UnleashStudy(curve, runs, pd.DataFrame(floors), pd.DataFrame(timings), tuple(cfg.curve_scores),
                        pd.concat(climbs, ignore_index=True), pd.concat(losses, ignore_index=True))


__all__ = ["WeightMask", "add_masks", "bake_masks", "masked_losses", "estimate_floor", "UnleashData",
           "unleash_data", "EvalSets", "eval_sets", "evaluate", "sample_losses", "Stages", "train_stages",
           "stage_curve", "tune", "UnleashRun", "run_unleash", "best_epoch", "summarize", "effect", "stage_table",
           "study_effects", "beside_mood", "UnleashStudy", "run_study", "condition_label", "um_label"]
