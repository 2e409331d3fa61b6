"""Trivial baselines every OOD number in the book is checked against.

A result below a detector that never learned anything is a bug until shown otherwise. These score
the raw pixels (in the model's input format) of exactly the images a protocol's model is scored on
(:func:`mood.pipeline.eval_sample`), with the same metrics:

- ``pixel 1-NN``: Euclidean distance to the nearest ID training image;
- ``pixel Gaussian``: Mahalanobis distance under one Gaussian fitted to the ID training pixels.

And baselines at equal compute (:func:`compare_at_equal_compute`): the same ViT without
pretraining, and a small CNN, each trained from scratch for as many optimiser steps as MOOD's
pretraining and fine-tuning together, on the same images, scored the same ways.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import pandas as pd
import torch

from mood.artifacts import Cache
from mood.config import EvalConfig, Profile
from mood.data import ImageFormat, ImageSet, to_tensor
from mood.engine import TrainConfig
from mood.features import FeatureSet
from mood.metrics import results_table
from mood.pipeline import MoodRun, ProtocolFeatures, eval_sample, id_accuracy, run_mood, score, score_protocol, setup
from mood.protocols import Protocol

PIXEL_BASELINES: dict[str, tuple[str, dict]] = {
    # name: (registered score, its hyperparameters)
    "pixel 1-NN": ("knn", {"k": 1, "metric": "l2"}),
    "pixel Gaussian": ("mahalanobis", {}),
}


def pixel_features(protocol: Protocol, cfg: EvalConfig, fmt: ImageFormat = ImageFormat(), seed: int = 0,
                   train: ImageSet | None = None) -> ProtocolFeatures:
    """Raw pixels ``[N, C*S*S]`` as features of the same samples :func:`mood.pipeline.extract_protocol`
    takes (fit: at most ``cfg.max_fit`` of ``train``, default ``protocol.train``; ID test; OOD sets).
    No logits: only feature scores apply."""
    def one(s: ImageSet, limit: int | None) -> FeatureSet:
        s = eval_sample(s, limit, seed)
        x = to_tensor(s, fmt).flatten(1)
        return FeatureSet(x, torch.zeros(len(x), 0), torch.from_numpy(s.labels.copy()))

    return ProtocolFeatures(fit=one(protocol.train if train is None else train, cfg.max_fit),
                            id=one(protocol.id_test, cfg.max_test),
                            ood={k: one(v, cfg.n_ood) for k, v in protocol.ood_test.items()})


def pixel_baselines(protocol: Protocol, cfg: EvalConfig, fmt: ImageFormat = ImageFormat(), seed: int = 0,
                    train: ImageSet | None = None, names: tuple[str, ...] = tuple(PIXEL_BASELINES)) -> dict[str, pd.DataFrame]:
    """The results table (:func:`mood.metrics.results_table`, same groups) of each pixel baseline in ``names``."""
    unknown = sorted(set(names) - set(PIXEL_BASELINES))
    if unknown:
        raise ValueError(f"unknown pixel baseline(s) {unknown}; valid: {', '.join(PIXEL_BASELINES)}")
    feats = pixel_features(protocol, cfg, fmt, seed, train)
    out = {}
    for name in names:
        detector, params = PIXEL_BASELINES[name]
        id_s, ood_s = score(feats, detector, **params)
        out[name] = results_table(id_s.numpy(), {k: v.numpy() for k, v in ood_s.items()}, cfg.fpr_positive,
                                  groups=protocol.ood_groups)
    return out


EQUAL_COMPUTE_SCORES: tuple[str, ...] = ("mahalanobis", "knn", "msp", "energy")


def _steps(n_images: int, cfg: TrainConfig) -> int:
    n = n_images if cfg.max_images is None else min(n_images, cfg.max_images)
    return max(1, n // cfg.batch_size) * cfg.epochs


def from_scratch(prof: Profile, n_images: int, model: str | None = None) -> Profile:
    """``prof`` without pretraining, its fine-tuning from a random initialisation as many optimiser
    steps long as ``prof``'s pretraining and fine-tuning together on ``n_images`` training images
    (same batch size as the fine-tuning; no layer-wise lr decay, which only makes sense on top of a
    pretrained network). ``model`` swaps the backbone (e.g. ``cnn_small``)."""
    p = copy.deepcopy(prof)
    total = _steps(n_images, prof.pretrain) + _steps(n_images, prof.finetune)
    per_epoch = _steps(n_images, replace(prof.finetune, epochs=1))
    p.pretrain = replace(p.pretrain, pretext="none")
    p.finetune = replace(p.finetune, epochs=max(1, round(total / per_epoch)), layer_decay=None)
    if model is not None:
        p.model = replace(p.model, name=model)
    return p


def compare_at_equal_compute(protocol: str, prof: Profile, cache: Cache | None = None,
                             scratch_models: tuple[str, ...] = ("cnn_small",),
                             scores: tuple[str, ...] = EQUAL_COMPUTE_SCORES) -> pd.DataFrame:
    """MOOD (the profile's pretraining + fine-tuning) against the same backbone trained from scratch
    and each of ``scratch_models``, at equal optimiser steps (:func:`from_scratch`), on ``protocol``.

    Returns:
        One row per (model, score): AUROC per OOD set and its group means, the ``ID acc`` (%) of
        the model that made it, its training ``steps`` and training seconds (from the logs).
    """
    proto, p = setup(protocol, prof)
    n = len(proto.train)
    setups = {f"MOOD ({p.model.name}, {p.pretrain.pretext} + fine-tune)": p,
              f"{p.model.name} from scratch": from_scratch(p, n)}
    setups |= {f"{m} from scratch": from_scratch(p, n, m) for m in scratch_models}
    rows = []
    for name, q in setups.items():
        run: MoodRun = run_mood(proto, q, cache)
        model = run.finetuned or run.pretrained
        steps = (_steps(n, q.pretrain) if q.pretrain.pretext != "none" else 0) + _steps(n, q.finetune)
        for det in scores:
            id_s, ood_s = score_protocol(run.features, det, model, proto, q.eval, q.format)
            table = results_table(id_s.numpy(), {k: v.numpy() for k, v in ood_s.items()}, q.eval.fpr_positive,
                                  groups=proto.ood_groups)
            rows.append({"model": name, "score": det, "ID acc": id_accuracy(run.features), "steps": steps,
                         "train s": run.timings["pretrain_s"] + run.timings["finetune_s"], **table["AUROC"].to_dict()})
    return pd.DataFrame(rows)
