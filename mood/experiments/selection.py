"""What a run chooses on validation data, never on a test set: the validation protocol (held-out
training images against tile-shuffled ones), the feature (pool) picked on it, the features side by
side, and the OOD images a detector ranks most ID-like (:func:`missed`, for reading failures)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from mood.core.cache import Cache, Trained
from mood.core.images import ImageSet, shuffle_patches
from mood.core.protocols import Protocol
from mood.core.scores import get_score
from mood.experiments.config import Profile
from mood.experiments.pipeline import (
    MoodRun,
    eval_sample,
    extract_protocol_pools,
    score_protocol,
    scores_table,
    training_sample,
)


def missed(run: MoodRun, n: int = 8) -> tuple[ImageSet, pd.DataFrame]:
    """The ``n`` OOD images of ``run`` that looked most in-distribution (lowest OOD score), over all
    its OOD sets as they were scored (the same samples as :func:`extract_protocol`): the failure
    cases of the detector. Returns the images and one row per image, most missed first: ``set``,
    ``class`` (its own label, where the set has class names), ``score``, ``ID scored higher (%)``
    (the share of ID test images the detector found more OOD than this one: 50 means it sits among
    the ID images' median) and, where the run was fine-tuned, ``taken for`` (the head's ID class)."""
    id_s = np.asarray(run.scores[0], dtype=np.float64)
    rows, images, sets = [], [], {}
    for name, scores in run.scores[1].items():
        shown = sets[name] = eval_sample(run.protocol.ood_test[name], run.profile.eval.n_ood)
        guess = run.features.ood[name].logits.argmax(1) if run.finetuned is not None else None
        for i, s in enumerate(np.asarray(scores, dtype=np.float64)):
            label = int(shown.labels[i])
            rows.append({"set": name, "class": shown.classes[label] if shown.classes and label >= 0 else "",
                         "score": s, "ID scored higher (%)": 100.0 * float((id_s > s).mean()),
                         **({"taken for": run.protocol.classes[int(guess[i])]} if guess is not None else {})})
            images.append((name, i))
    table = pd.DataFrame(rows)
    order = np.argsort(table["score"].to_numpy(), kind="stable")[:n]
    picked = [images[i] for i in order]
    stack = np.stack([sets[name].images[i] for name, i in picked]) if picked else np.zeros((0, 1, 1, 1), np.uint8)
    out = ImageSet(name="most missed", images=stack, labels=np.full(len(picked), -1, np.int64),
                   ids=np.arange(len(picked)), origin="missed", source=f"the {n} most ID-like OOD images of a run")
    return out, table.iloc[order].reset_index(drop=True)


VALIDATION_TILE = 4  # px: a 7x7 grid on 28-px images, cutting across a 7-px ViT patch (tiles of 7 px would
# only permute the tokens, which a pooled feature cannot see by construction: the choice would be rigged)


def validation_protocol(protocol: Protocol, prof: Profile, n: int = 2000, tile: int = VALIDATION_TILE) -> Protocol:
    """A protocol made of ID training images only, to choose a feature or a hyperparameter without
    touching a test set: its ID set is ``n`` of the training images the detector is not fitted on
    (``prof.eval.max_fit`` of the model's training images fit it; the others are left), its one OOD
    set (``tile-shuffled``) the same images with their ``tile``-px tiles shuffled
    (:func:`mood.core.images.shuffle_patches`: each tile's pixels kept, the garment's shape broken).
    The ID images were trained on, so absolute AUROCs run high; only the ranking is read.

    Raises:
        ValueError: every training image fits the detector (``max_fit`` None or at least the
            training set), so none is left to validate on.
    """
    train = training_sample(protocol.train, prof.finetune)
    fit = eval_sample(train, prof.eval.max_fit)
    rest = train.subset(np.flatnonzero(~np.isin(train.ids, fit.ids)), f"{train.name}[not fitted]")
    if len(rest) == 0:
        raise ValueError(f"validation_protocol: all {len(train):,} training images of {protocol.name} fit the detector "
                         f"(eval.max_fit={prof.eval.max_fit}); set eval.max_fit below that to leave images to validate on")
    held = eval_sample(rest, n, seed=1)
    return Protocol(name=f"{protocol.name}:validation", train=protocol.train, id_test=held,
                    ood_test={"tile-shuffled": shuffle_patches(held, tile)}, num_classes=protocol.num_classes,
                    classes=protocol.classes, kind=protocol.kind)


def feature_table(trained: Trained, protocol: Protocol, prof: Profile, pools: tuple[str, ...],
                  detectors: tuple[str, ...], cache: Cache | None = None, train: ImageSet | None = None) -> pd.DataFrame:
    """The AUROC of every (pool, detector) pair on one trained backbone: which feature and which
    distance the main tables should use, measured rather than assumed. ``train`` is what the
    backbone trained on (:func:`training_sample`; the fit set is drawn from it).

    Returns:
        One row per (``pool``, ``detector``): the AUROC of each OOD set and group mean (percent).
    """
    for det in detectors:
        if get_score(det).needs != "features":
            raise ValueError(f"feature_table: {det!r} does not score features; use feature detectors "
                             f"(mahalanobis, mahalanobis_cc, knn, ...)")
    rows = []
    by_pool = extract_protocol_pools(trained, protocol, prof.eval, pools, prof.format, cache, train=train)
    for pool, feats in by_pool.items():
        cfg = replace(prof.eval, pool=pool)
        for det in detectors:
            table = scores_table(score_protocol(feats, det, trained, protocol, cfg, prof.format), protocol, cfg)
            rows.append({"pool": pool, "detector": det, **table["AUROC"].to_dict()})
    return pd.DataFrame(rows).set_index(["pool", "detector"])


def pool_on_validation(run: MoodRun, pools: tuple[str, ...] = ("mean", "mood", "blocks", "tokens"),
                       detector: str | None = None) -> pd.DataFrame:
    """Which feature to score, chosen without a test set: the AUROC of ``detector`` (default: the
    profile's) on each pool of ``run``'s model (fine-tuned, else pretrained) on
    :func:`validation_protocol`. One row per pool: ``validation AUROC``, ``chosen`` (the highest)
    and ``profile's pool`` (the one the profile's tables score)."""
    val = validation_protocol(run.protocol, run.profile)
    model = run.finetuned or run.pretrained
    last = run.profile.finetune if run.finetuned else run.profile.pretrain
    det = detector or run.profile.eval.detector
    table = feature_table(model, val, run.profile, pools, (det,), train=training_sample(run.protocol.train, last))
    out = pd.DataFrame({"validation AUROC": table.droplevel("detector")["tile-shuffled"]})
    out["chosen"] = out.index == out["validation AUROC"].idxmax()
    out["profile's pool"] = out.index == run.profile.eval.pool
    return out


__all__ = ["missed", "VALIDATION_TILE", "validation_protocol", "feature_table", "pool_on_validation"]
