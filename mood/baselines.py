"""Trivial baselines every OOD number in the book is checked against.

A result below a detector that never learned anything is a bug until shown otherwise. These score
the raw pixels (in the model's input format) of exactly the images a protocol's model is scored on
(:func:`mood.pipeline.eval_sample`), with the same metrics:

- ``pixel 1-NN``: Euclidean distance to the nearest ID training image;
- ``pixel Gaussian``: Mahalanobis distance under one Gaussian fitted to the ID training pixels.
"""

from __future__ import annotations

import pandas as pd
import torch

from mood.config import EvalConfig
from mood.data import ImageFormat, ImageSet, to_tensor
from mood.features import FeatureSet
from mood.metrics import results_table
from mood.pipeline import ProtocolFeatures, eval_sample, score
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
                    train: ImageSet | None = None) -> dict[str, pd.DataFrame]:
    """The results table (:func:`mood.metrics.results_table`, same groups) of each pixel baseline."""
    feats = pixel_features(protocol, cfg, fmt, seed, train)
    out = {}
    for name, (detector, params) in PIXEL_BASELINES.items():
        id_s, ood_s = score(feats, detector, **params)
        out[name] = results_table(id_s.numpy(), {k: v.numpy() for k, v in ood_s.items()}, cfg.fpr_positive,
                                  groups=protocol.ood_groups)
    return out
