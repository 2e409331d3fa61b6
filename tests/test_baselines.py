"""Pixel baselines: the same images the model is scored on, and numbers that mean what they say."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from mood.core.data import from_array
from mood.core.protocols import Protocol
from mood.experiments.baselines import Comparison, pixel_baselines, pixel_features
from mood.experiments.config import EvalConfig
from mood.experiments.profiles import get_profile


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
    from mood.experiments.profiles import get_profile
    from mood.experiments.resolve import FromScratch, resolve, train_steps

    cpu = get_profile("cpu")
    scratch = resolve(cpu, "multi-class", baseline=FromScratch("cnn_small")).profile
    assert scratch.pretrain.pretext == "none" and scratch.model.name == "cnn_small"
    assert cpu.finetune.layer_decay is not None and scratch.finetune.layer_decay is None
    n = 60_000
    mood_steps = train_steps(n, cpu.pretrain) + train_steps(n, cpu.finetune)
    one_epoch = train_steps(n, replace(scratch.finetune, epochs=1))
    assert abs(train_steps(n, scratch.finetune) - mood_steps) <= one_epoch / 2  # equal up to rounding to epochs


@pytest.mark.slow
@pytest.mark.usefixtures("require_fmnist")
def test_equal_compute_tables_the_auroc_of_each_models_own_scores(tmp_path, score_by_definition) -> None:
    """Every (model, score, seed) row holds the AUROC of the scores it kept, each model's ID accuracy is
    one number whatever scores it, and MOOD's scores are its cached pipeline model's, by definition."""
    from sklearn.metrics import roc_auc_score

    from mood.core.cache import Cache
    from mood.experiments.baselines import EQUAL_COMPUTE_SCORES, compare_at_equal_compute, mood_name
    from mood.experiments.pipeline import run_mood

    cache = Cache(tmp_path)
    equal = compare_at_equal_compute("near-pair:pullover-coat", "smoke", cache, seeds=(0, 1))
    table = equal.table
    assert len(table) == 2 * 3 * len(EQUAL_COMPUTE_SCORES)
    by_seed = table[table["score"] == "energy"].pivot(index="model", columns="seed", values="Coat")
    assert (by_seed[0] != by_seed[1]).all()  # every model, MOOD's fine-tuning included, is trained per seed
    steps = table.groupby("model")["steps"].first()
    assert steps.max() - steps.min() <= steps.min() * 0.5  # equal compute, up to one epoch's rounding
    assert len(equal.scores) == len(table) and equal.sets_of("mean") == ["Coat"]
    for row in table.itertuples():
        id_s, ood_s = equal.scores[(row.model, row.score, row.seed)]
        y = np.r_[np.zeros(len(id_s)), np.ones(len(ood_s["Coat"]))]
        assert row.Coat == pytest.approx(100 * roc_auc_score(y, np.r_[id_s, ood_s["Coat"]])), row
    np.testing.assert_array_equal(table["mean"], table["Coat"])  # one OOD set
    assert (table.groupby(["model", "seed"])["ID acc"].nunique() == 1).all()  # one model, scored four ways
    mood = run_mood("near-pair:pullover-coat", "smoke", cache, finetune_seed=1)  # MOOD's seed 1, from the cache
    assert mood.pretrained.seconds == 0 and mood.finetuned.seconds == 0
    for det in EQUAL_COMPUTE_SCORES:
        ref_id, ref_ood = score_by_definition(det, mood.features, mood.finetuned.backbone)
        id_s, ood_s = equal.scores[(mood_name(mood.profile), det, 1)]
        np.testing.assert_allclose(id_s, ref_id, rtol=1e-5, atol=1e-6 * np.abs(ref_id).max(), err_msg=det)
        np.testing.assert_allclose(ood_s["Coat"], ref_ood["Coat"], rtol=1e-5, atol=1e-6 * np.abs(ref_id).max(), err_msg=det)


@pytest.mark.slow
@pytest.mark.usefixtures("require_fmnist")
def test_outlier_exposure_learns_its_outlier_class_on_top_of_each_seeds_mood_model(tmp_path) -> None:
    """OE starts from each seed's MOOD model and pairs by seed; every row holds the AUROC of the scores it
    kept and the means of its sets; MOOD's scores are scikit-learn's Mahalanobis distances of its cached
    model's features; and the outlier class an OE model learned takes the noise it was exposed to."""
    from sklearn.covariance import EmpiricalCovariance
    from sklearn.metrics import roc_auc_score

    from mood.core.cache import Cache
    from mood.core.data import OFFLINE_OOD
    from mood.experiments.baselines import MOOD_NO_OOD, OE_SCORES, compare_outlier_exposure, versus_baselines
    from mood.experiments.pipeline import run_mood

    cache = Cache(tmp_path)
    compared = compare_outlier_exposure(get_profile("smoke"), (1, 3), 1, cache, seeds=(0, 1))
    t = compared.table
    assert len(t) == 2 * (1 + 2 * len(OE_SCORES))
    mood = t[t["model"] == MOOD_NO_OOD].set_index("seed")
    assert mood.loc[0, "mean"] != mood.loc[1, "mean"]  # a MOOD model per fine-tuning seed
    for seed, g in t[t["model"] != MOOD_NO_OOD].groupby("seed"):
        assert (g["train s"] > mood.loc[seed, "train s"]).all()  # OE trains on top of that seed's MOOD model
    assert set(compared.groups) == set(OFFLINE_OOD)
    sets = list(compared.groups)
    for row in t.to_dict("records"):
        id_s, ood_s = compared.scores[(row["model"], row["score"], row["seed"])]
        for k in sets:
            y = np.r_[np.zeros(len(id_s)), np.ones(len(ood_s[k]))]
            assert row[k] == pytest.approx(100 * roc_auc_score(y, np.r_[id_s, ood_s[k]])), (row["model"], k)
        assert row["mean"] == pytest.approx(np.mean([row[k] for k in sets]))
        for g in set(compared.groups.values()):
            assert row[f"mean ({g})"] == pytest.approx(np.mean([row[k] for k in compared.sets_of(f"mean ({g})")]))
    assert (t.groupby(["model", "seed"])["ID acc"].nunique() == 1).all()  # one model per (model, seed)
    run = run_mood("few-shot:1", "smoke", cache, finetune_seed=0)  # seed 0's MOOD model, from the cache
    assert run.finetuned.seconds == 0
    gauss = EmpiricalCovariance().fit(run.features.fit.features.double().numpy())
    id_s, ood_s = compared.scores[(MOOD_NO_OOD, "mahalanobis", 0)]
    np.testing.assert_allclose(id_s, gauss.mahalanobis(run.features.id.features.double().numpy()), rtol=1e-5)
    for k in sets:
        np.testing.assert_allclose(ood_s[k], gauss.mahalanobis(run.features.ood[k].features.double().numpy()), rtol=1e-5)
    oe_class = t[t["score"] == "outlier_class"]  # exposed to every OOD source, noise included, for one epoch
    assert (oe_class["mean (noise)"] > 85).all(), oe_class
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


def _equal(gaps: dict[str, list[float]], seeds: int = 4) -> Comparison:
    """A compare_at_equal_compute-shaped result: MOOD at 95 + seed noise, each baseline ``gap`` below."""
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 0.3, seeds)
    rows = [{"model": "MOOD", "score": "mahalanobis", "seed": s, "ID acc": 90.0, "mnist": 95 + noise[s]} for s in range(seeds)]
    for name, gap in gaps.items():
        rows += [{"model": name, "score": "energy", "seed": s, "ID acc": 88.0, "mnist": 95 + noise[s] - gap[s]}
                 for s in range(seeds)]
    return Comparison(pd.DataFrame(rows), {}, {"mnist": "far"})


def test_versus_baselines_pairs_by_seed_and_tests_each_baseline() -> None:
    from mood.core.stats import beats_all
    from mood.experiments.baselines import versus_baselines

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
    from mood.experiments.config import StageOverrides
    from mood.experiments.resolve import FromScratch, resolve

    def pool(start: str, baseline: FromScratch) -> str:
        return resolve("cpu", "multi-class", changes=StageOverrides(eval={"pool": start}), baseline=baseline).profile.eval.pool

    assert pool("mood", FromScratch("cnn_small")) == "mean"
    assert pool("mood", FromScratch()) == "mood"  # the same ViT keeps MOOD's feature
    assert pool("tokens", FromScratch("cnn_small")) == "tokens"  # a CNN has positions too: its last map
