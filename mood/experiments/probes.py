"""How much a pretrained representation knows about the ID classes before any fine-tuning: the
linear-probe and k-nearest-neighbour accuracy of frozen features, the two standard read-outs of
self-supervised pretraining (MAE and SimCLR report the first, DINO the second).

Both fit on the features of the images the backbone was trained on and are scored on the ID test
images, so a pretext task that learned the classes' structure scores high without seeing a label.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from mood.core.features import FeatureSet

KNN_K = 20  # DINO's k-NN evaluation uses 20 neighbours, cosine similarity, votes weighted by it


def linear_probe_accuracy(fit: FeatureSet, test: FeatureSet, max_iter: int = 1000) -> float:
    """Top-1 accuracy (%) on ``test`` of a multinomial logistic regression fitted on ``fit``'s
    standardised features ``[N, D]`` and labels ``[N]``."""
    _check(fit, test)
    scaler = StandardScaler().fit(fit.features.numpy())
    clf = LogisticRegression(max_iter=max_iter).fit(scaler.transform(fit.features.numpy()), fit.labels.numpy())
    return 100.0 * float((clf.predict(scaler.transform(test.features.numpy())) == test.labels.numpy()).mean())


@torch.no_grad()
def knn_accuracy(fit: FeatureSet, test: FeatureSet, k: int = KNN_K, temperature: float = 0.07,
                 chunk: int = 1024) -> float:
    """Top-1 accuracy (%) of a weighted k-NN vote over cosine similarity: each of a test image's
    ``k`` nearest ``fit`` images votes for its label with weight ``exp(similarity / temperature)``."""
    _check(fit, test)
    ref = torch.nn.functional.normalize(fit.features.float(), dim=1)
    labels, num_classes = fit.labels, int(fit.labels.max()) + 1
    k = min(k, len(ref))
    hits = 0
    for part, truth in zip(test.features.float().split(chunk), test.labels.split(chunk)):
        sim, idx = (torch.nn.functional.normalize(part, dim=1) @ ref.T).topk(k, dim=1)
        votes = torch.zeros(len(part), num_classes).scatter_add_(1, labels[idx], (sim / temperature).exp())
        hits += int((votes.argmax(1) == truth).sum())
    return 100.0 * hits / len(test)


def probe_accuracies(fit: FeatureSet, test: FeatureSet) -> dict[str, float]:
    """``{"linear probe acc": ..., "kNN acc": ...}`` (%) of frozen features."""
    return {"linear probe acc": linear_probe_accuracy(fit, test), "kNN acc": knn_accuracy(fit, test)}


def _check(fit: FeatureSet, test: FeatureSet) -> None:
    if len(np.unique(fit.labels.numpy())) < 2:
        raise ValueError("a probe needs at least two ID classes; a one-class protocol has a single label")
    if fit.features.shape[1] != test.features.shape[1]:
        raise ValueError(f"fit and test features differ in width: {fit.features.shape[1]} vs {test.features.shape[1]}")
