"""Pixel baselines: the same images the model is scored on, and numbers that mean what they say."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from mood.experiments.baselines import pixel_baselines, pixel_features
from mood.experiments.config import EvalConfig, get_profile
from mood.core.data import from_array
from mood.core.protocols import Protocol


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


def test_pixel_features_take_the_same_test_samples_as_the_model_and_fit_on_every_training_image() -> None:
    p = _protocol()
    cfg = EvalConfig(max_fit=50, max_test=40, n_ood=30)
    feats = pixel_features(p, cfg)
    assert feats.fit.features.shape == (200, 784) and len(feats.id) == 40 and len(feats.ood["noise"]) == 30
    assert feats.id.logits.shape == (40, 0)


def test_pixel_baselines_separate_what_pixels_separate() -> None:
    with pytest.warns(RuntimeWarning, match="rank"):  # 200 images, 784 pixels: the Gaussian is fitted in their span
        tables = pixel_baselines(_protocol(), EvalConfig(n_ood=None))
    assert set(tables) == {"pixel 1-NN", "pixel Gaussian"}
    for t in tables.values():
        assert list(t.index) == ["noise", "edge", "mean"]
        assert t.loc["noise", "AUROC"] > 99 and t.loc["edge", "AUROC"] > 99


def test_from_scratch_matches_the_optimiser_steps() -> None:
    from mood.experiments.baselines import _steps, from_scratch
    from mood.experiments.config import get_profile
    from mood.experiments.pipeline import setup

    cpu = get_profile("cpu")
    scratch = from_scratch(cpu, 60_000, "cnn_small")
    assert scratch.pretrain.pretext == "none" and scratch.model.name == "cnn_small"
    assert cpu.finetune.layer_decay is not None and setup("multi-class", scratch)[1].finetune.layer_decay is None
    mood_steps = _steps(60_000, cpu.pretrain) + _steps(60_000, cpu.finetune)
    one_epoch = _steps(60_000, replace(scratch.finetune, epochs=1))
    assert abs(_steps(60_000, scratch.finetune) - mood_steps) <= one_epoch / 2  # equal up to rounding to epochs


@pytest.mark.slow
@pytest.mark.usefixtures("require_fmnist")
def test_equal_compute_comparison_runs_every_model_and_score(tmp_path) -> None:
    from mood.core.cache import Cache
    from mood.experiments.baselines import EQUAL_COMPUTE_SCORES, compare_at_equal_compute

    equal = compare_at_equal_compute("near-pair:pullover-coat", "smoke", Cache(tmp_path), seeds=(0, 1))
    table = equal.table
    assert len(table) == 2 * 3 * len(EQUAL_COMPUTE_SCORES)
    by_seed = table[table["score"] == "energy"].pivot(index="model", columns="seed", values="Coat")
    assert (by_seed[0] != by_seed[1]).all()  # every model, MOOD's fine-tuning included, is trained per seed
    steps = table.groupby("model")["steps"].first()
    assert steps.max() - steps.min() <= steps.min() * 0.5  # equal compute, up to one epoch's rounding
    assert table["Coat"].between(0, 100).all() and table["ID acc"].between(0, 100).all()
    assert len(equal.scores) == len(table) and equal.sets_of("mean") == ["Coat"]


@pytest.mark.slow
@pytest.mark.usefixtures("require_fmnist")
def test_outlier_exposure_starts_from_each_seeds_mood_model_and_pairs_by_seed(tmp_path) -> None:
    from mood.core.cache import Cache
    from mood.experiments.baselines import MOOD_NO_OOD, OE_SCORES, compare_outlier_exposure, versus_baselines
    from mood.core.data import OFFLINE_OOD

    compared = compare_outlier_exposure(get_profile("smoke"), (1, 3), 1, Cache(tmp_path), seeds=(0, 1))
    t = compared.table
    assert len(t) == 2 * (1 + 2 * len(OE_SCORES))
    mood = t[t["model"] == MOOD_NO_OOD].set_index("seed")
    assert mood.loc[0, "mean"] != mood.loc[1, "mean"]  # a MOOD model per fine-tuning seed
    for seed, g in t[t["model"] != MOOD_NO_OOD].groupby("seed"):
        assert (g["train s"] > mood.loc[seed, "train s"]).all()  # OE trains on top of that seed's MOOD model
    assert set(compared.groups) == set(OFFLINE_OOD)
    assert t[list(compared.groups) + ["mean", "ID acc"]].stack().between(0, 100).all()
    versus = versus_baselines(compared, MOOD_NO_OOD, "mahalanobis", "mean")
    assert len(versus) == 2 * len(OE_SCORES) and (versus["test"] == "paired t over seeds").all()
    assert (versus["seeds"] == 2).all()


def test_outlier_exposure_rejects_bad_shots_before_training(tmp_path) -> None:
    from mood.core.cache import Cache
    from mood.experiments.baselines import compare_outlier_exposure

    for shots, epochs in (((), 1), ((0, 5), 1), ((5,), 0)):
        with pytest.raises(ValueError, match="shots|oe_epochs"):
            compare_outlier_exposure(get_profile("smoke"), shots, epochs, Cache(tmp_path))
    assert not any(tmp_path.iterdir())


def test_mean_table_averages_seeds_per_model_and_score_with_id_accuracy_last() -> None:
    from mood.experiments.baselines import Comparison

    rows = [{"model": m, "score": "s", "seed": seed, "ID acc": 80.0 + seed, "a": base + seed, "b": base,
             "mean": base + seed / 2, "mean (far)": base, "train s": 1.0}
            for m, base in (("A", 90.0), ("B", 70.0)) for seed in (0, 1)]
    table = Comparison(pd.DataFrame(rows), {}, {"a": "near", "b": "far"}).mean_table({("A", "s"): "model A"})
    assert list(table.columns) == ["model A", "B, s"]
    assert list(table.index) == ["a", "b", "mean", "mean (far)", "ID acc"]
    assert table.loc["a", "model A"] == 90.5 and table.loc["ID acc", "B, s"] == 80.5 and table.loc["mean", "B, s"] == 70.25


def _equal(gaps: dict[str, list[float]], seeds: int = 4) -> "Comparison":
    """A compare_at_equal_compute-shaped result: MOOD at 95 + seed noise, each baseline ``gap`` below."""
    from mood.experiments.baselines import Comparison

    rng = np.random.default_rng(1)
    noise = rng.normal(0, 0.3, seeds)
    rows = [{"model": "MOOD", "score": "mahalanobis", "seed": s, "ID acc": 90.0, "mnist": 95 + noise[s]} for s in range(seeds)]
    for name, gap in gaps.items():
        rows += [{"model": name, "score": "energy", "seed": s, "ID acc": 88.0, "mnist": 95 + noise[s] - gap[s]}
                 for s in range(seeds)]
    return Comparison(pd.DataFrame(rows), {}, {"mnist": "far"})


def test_versus_baselines_pairs_by_seed_and_tests_each_baseline() -> None:
    from mood.experiments.baselines import versus_baselines
    from mood.core.stats import beats_all

    v = versus_baselines(_equal({"cnn": [2.0, 2.1, 1.9, 2.0], "twin": [0.3, -0.4, 0.2, -0.1]}), "MOOD", "mahalanobis", "mnist")
    assert v.loc[("cnn", "energy"), "significant"] and v.loc[("cnn", "energy"), "mean"] == pytest.approx(2.0)
    # Pairing removes the seed noise shared by both: the 0.3-wide seed spread does not hide a 2-point gap.
    assert v.loc[("cnn", "energy"), "ci_hi"] - v.loc[("cnn", "energy"), "ci_lo"] < 0.5
    assert not v.loc[("twin", "energy"), "significant"] and set(v["test"]) == {"paired t over seeds"}
    assert not beats_all(v)  # one baseline is not beaten
    assert beats_all(v.drop(index=("twin", "energy")))


def test_one_seed_falls_back_to_a_paired_bootstrap_of_the_test_images() -> None:
    from mood.experiments.baselines import Comparison, versus_baselines

    rng = np.random.default_rng(0)
    id_s, ood_s = rng.normal(0, 1, 300), {"mnist": rng.normal(2, 1, 200), "noise": rng.normal(9, 1, 200)}
    worse = (id_s + rng.normal(0, 1.5, 300), {k: v + rng.normal(0, 1.5, 200) for k, v in ood_s.items()})
    rows = [{"model": m, "score": "energy", "seed": 0, "ID acc": 90.0, "mnist": 0.0, "mean (far)": 0.0} for m in ("MOOD", "cnn")]
    equal = Comparison(pd.DataFrame(rows), {("MOOD", "energy", 0): (id_s, ood_s), ("cnn", "energy", 0): worse},
                         {"mnist": "far", "noise": "noise"})
    v = versus_baselines(equal, "MOOD", "energy", "mean (far)")
    assert v.loc[("cnn", "energy"), "test"] == "paired bootstrap of test images, seed 0"
    assert v.loc[("cnn", "energy"), "significant"] and v.loc[("cnn", "energy"), "mean"] > 0
    with pytest.raises(ValueError, match="unknown metric 'mean \\(near\\)'"):
        versus_baselines(equal, "MOOD", "energy", "mean (near)")


def test_versus_baselines_names_a_missing_reference() -> None:
    from mood.experiments.baselines import versus_baselines

    with pytest.raises(ValueError, match="no rows for 'MOOD' with score 'knn'"):
        versus_baselines(_equal({"cnn": [1, 1, 1, 1]}), "MOOD", "knn", "mnist")


def test_a_cnn_baseline_is_scored_on_its_own_pooled_feature() -> None:
    from mood.experiments.baselines import from_scratch
    from mood.experiments.config import get_profile

    cpu = get_profile("cpu")
    cpu.eval.pool = "mood"
    assert from_scratch(cpu, 60_000, "cnn_small").eval.pool == "mean"
    assert from_scratch(cpu, 60_000).eval.pool == "mood"  # the same ViT keeps MOOD's feature
    cpu.eval.pool = "tokens"
    assert from_scratch(cpu, 60_000, "cnn_small").eval.pool == "tokens"  # a CNN has positions too: its last map
