"""Pixel baselines: the same images the model is scored on, and numbers that mean what they say."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from mood.baselines import pixel_baselines, pixel_features
from mood.config import EvalConfig
from mood.data import from_array
from mood.protocols import Protocol


def _protocol() -> Protocol:
    rng = np.random.default_rng(0)
    blobs = np.zeros((300, 28, 28), np.uint8)
    blobs[:, 8:20, 8:20] = rng.integers(150, 255, (300, 12, 12))  # ID: a bright square in the middle
    noise = rng.integers(0, 256, (100, 28, 28)).astype(np.uint8)  # far OOD
    edge = np.zeros((100, 28, 28), np.uint8)
    edge[:, :6, :] = 200  # another shape
    train, test = from_array("train", blobs[:200], np.zeros(200, int)), from_array("test", blobs[200:], np.zeros(100, int))
    return Protocol("one-class:0", train, test, {"noise": from_array("noise", noise), "edge": from_array("edge", edge)},
                    1, ("blob",))


def test_pixel_features_take_the_same_samples_as_the_model() -> None:
    p = _protocol()
    cfg = EvalConfig(max_fit=50, max_test=40, n_ood=30)
    feats = pixel_features(p, cfg)
    assert feats.fit.features.shape == (50, 784) and len(feats.id) == 40 and len(feats.ood["noise"]) == 30
    assert feats.id.logits.shape == (40, 0)


def test_pixel_baselines_separate_what_pixels_separate() -> None:
    with pytest.warns(RuntimeWarning, match="rank"):  # 200 images, 784 pixels: the Gaussian is fitted in their span
        tables = pixel_baselines(_protocol(), EvalConfig(n_ood=None))
    assert set(tables) == {"pixel 1-NN", "pixel Gaussian"}
    for t in tables.values():
        assert list(t.index) == ["noise", "edge", "mean"]
        assert t.loc["noise", "AUROC"] > 99 and t.loc["edge", "AUROC"] > 99


def test_from_scratch_matches_the_optimiser_steps() -> None:
    from mood.baselines import _steps, from_scratch
    from mood.config import get_profile

    cpu = get_profile("cpu")
    scratch = from_scratch(cpu, 60_000, "cnn_small")
    assert scratch.pretrain.pretext == "none" and scratch.model.name == "cnn_small" and scratch.finetune.layer_decay is None
    mood_steps = _steps(60_000, cpu.pretrain) + _steps(60_000, cpu.finetune)
    one_epoch = _steps(60_000, replace(scratch.finetune, epochs=1))
    assert abs(_steps(60_000, scratch.finetune) - mood_steps) <= one_epoch / 2  # equal up to rounding to epochs


@pytest.mark.slow
@pytest.mark.usefixtures("require_fmnist")
def test_equal_compute_comparison_runs_every_model_and_score(tmp_path) -> None:
    from mood.artifacts import Cache
    from mood.baselines import EQUAL_COMPUTE_SCORES, compare_at_equal_compute

    table = compare_at_equal_compute("near-pair:pullover-coat", "smoke", Cache(tmp_path))
    assert len(table) == 3 * len(EQUAL_COMPUTE_SCORES)
    steps = table.groupby("model")["steps"].first()
    assert steps.max() - steps.min() <= steps.min() * 0.5  # equal compute, up to one epoch's rounding
    assert table["Coat"].between(0, 100).all() and table["ID acc"].between(0, 100).all()
