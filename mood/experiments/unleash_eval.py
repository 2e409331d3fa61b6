"""The data and the evaluation of Unleashing Mask (:mod:`mood.experiments.unleash`): held-out ID
validation images, a validation OOD set (tile-shuffled ID images, none of the test OOD sets), label
noise at a condition's rate, and the OOD tables of a backbone at one training stage."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from mood.core.engine import resolve_device
from mood.core.features import extract
from mood.core.images import ImageFormat, ImageSet, shuffle_patches, to_tensor, with_label_noise
from mood.core.metrics import auroc, results_table
from mood.core.models import Backbone
from mood.core.protocols import Protocol
from mood.experiments.config import UnleashConfig
from mood.experiments.pipeline import ProtocolFeatures, ScoreInputs, check_score, id_accuracy, score

CURVE_SCORES: tuple[str, ...] = ("msp", "energy", "odin")
TABLE_SCORES: tuple[str, ...] = ("msp", "odin", "energy", "mahalanobis")



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
    labels at rate ``noise`` (:func:`mood.core.images.with_label_noise`)."""
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


__all__ = ["CURVE_SCORES", "TABLE_SCORES", "UnleashData", "unleash_data", "EvalSets", "eval_sets", "evaluate",
           "sample_losses"]
