"""Frozen-feature probes: they read class structure when there is some, and chance when there is none."""

from __future__ import annotations

import pytest
import torch

from mood.core.features import FeatureSet
from mood.experiments.probes import knn_accuracy, linear_probe_accuracy, probe_accuracies


def _blobs(n: int, spread: float, seed: int) -> FeatureSet:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    centres = torch.eye(4, 16) * 5.0
    x = centres[labels] + spread * torch.randn(n, 16, generator=g)
    return FeatureSet(x, torch.zeros(n, 4), labels)


def test_probes_read_separable_classes() -> None:
    fit, test = _blobs(400, 0.5, 0), _blobs(200, 0.5, 1)
    acc = probe_accuracies(fit, test)
    assert acc["linear probe acc"] == 100.0 and acc["kNN acc"] == 100.0


def test_probes_are_at_chance_on_features_that_ignore_the_labels() -> None:
    fit, test = _blobs(800, 0.5, 0), _blobs(800, 0.5, 1)
    g = torch.Generator().manual_seed(2)
    fit = FeatureSet(fit.features, fit.logits, fit.labels[torch.randperm(800, generator=g)])  # labels unrelated
    assert 15 <= linear_probe_accuracy(fit, test) <= 35 and 15 <= knn_accuracy(fit, test) <= 35  # chance: 25


def test_probes_refuse_one_class_and_mismatched_widths() -> None:
    one = FeatureSet(torch.randn(10, 4), torch.zeros(10, 1), torch.zeros(10, dtype=torch.long))
    with pytest.raises(ValueError, match="two ID classes"):
        linear_probe_accuracy(one, one)
    with pytest.raises(ValueError, match="width"):
        knn_accuracy(_blobs(20, 0.5, 0), FeatureSet(torch.randn(5, 3), torch.zeros(5, 4), torch.zeros(5, dtype=torch.long)))
