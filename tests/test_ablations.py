"""Ablations: knobs reach the stage configs, corpora concatenate cleanly, tables and verdicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mood.core.data import from_array
from mood.core.images import ImageFormat, concat
from mood.core.protocols import Protocol
from mood.experiments.ablations import Variant, family_gap, intermediate_corpus, mean_std
from mood.experiments.profiles import get_profile
from mood.experiments.resolve import resolve


def test_concat_relabels_parts_and_brings_them_to_one_format() -> None:
    fmt = ImageFormat()
    a = from_array("a", np.zeros((4, 28, 28), np.uint8), np.array([0, 1, 2, 1]))
    b = from_array("b", np.full((3, 32, 32, 3), 200, np.uint8))  # unlabelled, RGB, another size
    c = concat([a, b], fmt, name="ab")
    assert c.images.shape == (7, 28, 28, 1) and c.images.dtype == np.uint8
    assert list(c.labels) == [0, 1, 2, 1, 3, 3, 3]  # b's images get one class of their own, after a's
    assert len(c.classes) == 4 and list(c.ids) == list(range(7))
    assert c.origin != concat([a, b.subset([0, 1])], fmt, name="ab").origin  # the cache tells corpora apart
    assert list(concat([a, a], fmt, name="aa", relabel=False).labels) == [0, 1, 2, 1] * 2


def test_intermediate_corpus_refuses_protocols_that_score_its_images() -> None:
    x = from_array("x", np.zeros((2, 28, 28), np.uint8), np.array([0, 1]))
    multi = Protocol("multi-class", x, x, {"mnist": x}, 2, ("a", "b"))
    with pytest.raises(ValueError, match="OOD test sets of multi-class"):
        intermediate_corpus(multi, get_profile("smoke"))


def _runs() -> pd.DataFrame:
    rows = [("A", "p", 0, 90.0), ("A", "p", 1, 92.0), ("B", "p", 0, 80.0), ("B", "p", 1, 81.0),
            ("A", "q", 0, 70.0), ("A", "q", 1, 71.0), ("B", "q", 0, 70.5), ("B", "q", 1, 71.5)]
    return pd.DataFrame(rows, columns=["variant", "protocol", "seed", "AUROC"])


def test_mean_std_table() -> None:
    table = mean_std(_runs())
    assert list(table.index) == ["A", "B"] and list(table.columns) == ["p", "q"]
    assert table.loc["A", "p"] == f"91.00 ± {np.std([90, 92], ddof=1):.2f}"
    one_seed = mean_std(_runs()[_runs()["seed"] == 0])
    assert one_seed.loc["B", "p"] == "80.00"
    # with the models' ID accuracy: each protocol's column is followed by it, "—" without a classifier
    acc = mean_std(_runs().assign(**{"ID acc": [85.0, 86.0, np.nan, np.nan, 80.0, 81.0, 90.0, 90.0]}))
    assert list(acc.columns) == ["p", "p ID acc", "q", "q ID acc"]
    assert (acc.loc["A", "p ID acc"], acc.loc["B", "p ID acc"], acc.loc["B", "q ID acc"]) == ("85.50", "—", "90.00")


def test_family_gap_pairs_seeds_and_calls_only_consistent_gaps() -> None:
    runs = pd.concat([_runs(), _runs().assign(variant=lambda d: d["variant"].map({"A": "A2", "B": "B2"}),
                                                 AUROC=lambda d: d["AUROC"] + 1.0)])
    gaps = family_gap(runs, {"A": "rec", "A2": "rec", "B": "cog", "B2": "cog"}, "rec", "cog")
    # p: rec - cog per seed = (90.5 - 80.5, 92.5 - 81.5) = (10, 11): a consistent lead
    assert gaps.loc["p", "gap"] == pytest.approx(10.5) and gaps.loc["p", "gap std"] == pytest.approx(np.std([10, 11], ddof=1))
    assert gaps.loc["p", "call"] == "rec" and gaps.loc["p", "p"] == pytest.approx(0.0303, abs=1e-3)
    assert gaps.loc["p", "ci_lo"] < 10.5 < gaps.loc["p", "ci_hi"]
    # q: (-0.5, -0.5) is consistent but tiny; a noisy q is not called
    assert gaps.loc["q", "call"] == "cog"
    noisy = runs.copy()
    noisy.loc[(noisy["protocol"] == "q") & (noisy["variant"] == "A") & (noisy["seed"] == 1), "AUROC"] = 75.0
    families = {"A": "rec", "A2": "rec", "B": "cog", "B2": "cog"}
    assert family_gap(noisy, families, "rec", "cog").loc["q", "call"] == "too close to call"
    one = family_gap(runs[runs["seed"] == 0], {"A": "rec", "B": "cog"}, "rec", "cog")
    assert (one["call"] == "too close to call").all()


@pytest.mark.usefixtures("require_fmnist")
def test_run_variant_reports_training_time_also_from_the_cache(tmp_path) -> None:
    from mood.core.cache import Cache
    from mood.experiments.ablations import run_variant

    cache, v = Cache(tmp_path), Variant("SimMIM", pretext="simmim")
    first = run_variant(v, "one-class:1", get_profile("smoke"), seed=0, cache=cache)
    again = run_variant(v, "one-class:1", get_profile("smoke"), seed=0, cache=cache)
    assert first["train s"] > 0 and again["train s"] == first["train s"]  # pretrain + fine-tune, from the logs
    assert again["AUROC"] == first["AUROC"] and 0 <= first["FPR95"] <= 100
    assert (first["variant"], first["protocol"], first["seed"]) == ("SimMIM", "one-class:1", 0)


@pytest.mark.usefixtures("require_fmnist")
def test_main_scale_variant_reuses_the_main_chapters_models(tmp_path) -> None:
    from mood.core.cache import Cache
    from mood.experiments.ablations import run_grid, run_variant
    from mood.experiments.pipeline import id_accuracy, run_seeds

    cache, prof = Cache(tmp_path), get_profile("smoke")
    main = run_seeds("multi-class", prof, seeds=(1,), cache=cache)[1]
    trained = {d.name for d in (tmp_path / "finetune").iterdir()}
    same = Variant("profile's smoothing", label_smoothing=prof.finetune.label_smoothing)
    row = run_variant(same, "multi-class", prof, seed=1, cache=cache, scale="main")
    assert {d.name for d in (tmp_path / "finetune").iterdir()} == trained  # chapter 6's model, from the cache
    assert row["ID acc"] == id_accuracy(main.features) and row["protocol"] == "multi-class (main scale)"
    assert row["train s"] == main.pretrained.train_seconds + main.finetuned.train_seconds
    small = run_variant(same, "multi-class", prof, seed=1, cache=cache)  # the ablation scale trains its own
    assert small["protocol"] == "multi-class" and len(list((tmp_path / "finetune").iterdir())) > len(trained)
    with pytest.raises(ValueError, match="unknown scale 'huge'"):
        run_grid([same], ["multi-class"], [0], prof, cache, scale="huge")


def _pretext_runs() -> pd.DataFrame:
    """Three seeds of four variants on one protocol: M leads C by (2, 3, 4), C leads S by (1, -1, 0.5)."""
    base = {"M": [92.0, 93.0, 94.0], "C": [90.0, 90.0, 90.0], "S": [89.0, 91.0, 89.5], "N": [80.0, 81.0, 79.0]}
    return pd.DataFrame([{"variant": v, "protocol": "multi-class", "seed": s, "AUROC": a[s], "ID acc": 85.0 + s,
                          "images seen": 1000 * (s + 1)} for v, a in base.items() for s in range(3)])


def test_seed_intervals_give_each_variant_its_t_interval_and_means() -> None:
    from mood.experiments.ablations import seed_intervals

    t = seed_intervals(_pretext_runs())
    m = t.loc[("M", "multi-class")]
    half = 4.302653 * 1.0 / np.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert m["AUROC"] == pytest.approx(93.0) and m["std"] == pytest.approx(1.0) and m["seeds"] == 3
    assert (m["ci_lo"], m["ci_hi"]) == pytest.approx((93.0 - half, 93.0 + half))
    assert m["ID acc"] == pytest.approx(86.0) and m["images seen"] == pytest.approx(2000.0)
    assert t.loc[("C", "multi-class"), "std"] == 0.0


def test_training_cost_prices_each_variant_by_its_own_models_flops() -> None:
    from mood.core.models import training_flops
    from mood.experiments.ablations import training_cost

    runs = _pretext_runs().assign(**{"train s": 10.0})
    prof = get_profile("cpu")
    variants = [Variant("C", model="resnet10_quarter"), Variant("M")]  # M: the profile's ViT
    cost = training_cost(runs, variants, prof)
    assert list(cost.index) == ["C", "M"] and list(cost["model"]) == ["resnet10_quarter", prof.model.name]
    assert cost.loc["M", "MFLOP per image"] == pytest.approx(training_flops(prof.model.name) / 1e6)
    assert cost.loc["C", "MFLOP per image"] > cost.loc["M", "MFLOP per image"]
    c = cost.loc["C"]
    assert c["images seen"] == 2000.0 and c["train TFLOP"] == pytest.approx(c["MFLOP per image"] * 2000.0 / 1e6)
    assert c["ID acc"] == pytest.approx(86.0) and c["train s"] == 10.0
    with pytest.raises(ValueError, match="no runs of variant 'X'"):
        training_cost(runs, [Variant("X")], prof)


@pytest.mark.usefixtures("require_fmnist")
def test_run_variant_probes_the_pretrained_features_and_counts_images(tmp_path) -> None:
    from mood.core.cache import Cache
    from mood.experiments.ablations import run_variant

    prof = get_profile("smoke")
    row = run_variant(Variant("BEiT", pretext="beit"), "multi-class", prof, seed=0, cache=Cache(tmp_path), probe=True)
    p = resolve(prof, "multi-class", scale="ablation", seed=0).profile

    def per_epoch(cfg) -> int:
        return (cfg.max_images // cfg.batch_size) * cfg.batch_size  # the ragged batch is dropped

    assert row["images seen"] == p.pretrain.epochs * per_epoch(p.pretrain) + p.finetune.epochs * per_epoch(p.finetune)
    assert 0 <= row["linear probe acc"] <= 100 and 0 <= row["kNN acc"] <= 100
    one = run_variant(Variant("BEiT", pretext="beit"), "one-class:1", prof, seed=0, cache=Cache(tmp_path), probe=True)
    assert "kNN acc" not in one  # one label: nothing to probe


def test_training_waves_train_each_model_once_and_never_two_at_once() -> None:
    from mood.experiments.ablations import training_waves

    beit, smooth = Variant("BEiT", pretext="beit"), Variant("BEiT smoothed", pretext="beit", label_smoothing=0.1)
    energy, mae = Variant("BEiT energy", pretext="beit", detector="energy"), Variant("MAE", pretext="mae")
    runs = [(v, "multi-class", s) for v in (beit, energy, smooth, mae) for s in (0, 1)]
    first, second = training_waves(runs, "ablation")
    assert first == [(beit, "multi-class", 0), (beit, "multi-class", 1), (mae, "multi-class", 0), (mae, "multi-class", 1)]
    assert second == [(smooth, "multi-class", 0), (smooth, "multi-class", 1)]  # after the pretraining they share
    # the main scale shares one pretraining across seeds: the other seeds wait for it
    first, second = training_waves([(beit, "multi-class", s) for s in (0, 1, 2)], "main")
    assert first == [(beit, "multi-class", 0)] and second == [(beit, "multi-class", 1), (beit, "multi-class", 2)]
    assert training_waves([(energy, "multi-class", 0)], "ablation") == [[(energy, "multi-class", 0)]]


@pytest.mark.usefixtures("require_fmnist")
def test_a_grid_trained_side_by_side_tables_the_scores_of_the_models_the_workers_cached(tmp_path,
                                                                                        score_by_definition) -> None:
    """Two workers train the grid's models; each row's AUROC and ID accuracy are then those of its
    score's definition (``score_by_definition``) on the features of the model the workers cached,
    loaded here without training anything."""
    from dataclasses import replace

    from sklearn.metrics import roc_auc_score

    from mood.core.cache import Cache
    from mood.experiments.ablations import run_grid
    from mood.experiments.pipeline import run_mood

    prof = replace(get_profile("smoke"), workers=2)
    variants = [Variant("BEiT", pretext="beit"), Variant("BEiT energy", pretext="beit", detector="energy"),
                Variant("none", pretext="none")]
    runs = run_grid(variants, ["near-pair:pullover-coat"], [0, 1], prof, Cache(tmp_path))
    assert len(runs) == 6
    assert len(list((tmp_path / "pretrain").iterdir())) == 4  # BEiT and none, two seeds each, once
    assert len(list((tmp_path / "finetune").iterdir())) == 4
    assert (runs["train s"] > 0).all()  # read back from the workers' logs
    rows = runs.set_index(["variant", "seed"])
    for v in variants:
        for seed in (0, 1):
            run = run_mood(resolve(prof, "near-pair:pullover-coat", scale="ablation", variant=v, seed=seed),
                           cache=Cache(tmp_path))
            assert run.pretrained.seconds == 0 and run.finetuned.seconds == 0, (v.name, seed)  # the workers' models
            ref_id, ref_ood = score_by_definition(v.detector, run.features)
            y = np.r_[np.zeros(len(ref_id)), np.ones(len(ref_ood["Coat"]))]
            auroc = 100 * roc_auc_score(y, np.r_[ref_id, ref_ood["Coat"]])
            assert rows.loc[(v.name, seed), "AUROC"] == pytest.approx(auroc, abs=0.1), (v.name, seed)
            accuracy = 100 * np.mean(run.features.id.logits.numpy().argmax(1) == run.features.id.labels.numpy())
            assert rows.loc[(v.name, seed), "ID acc"] == pytest.approx(accuracy), (v.name, seed)
    beit = rows.loc["BEiT"]
    assert (beit["ID acc"] == rows.loc["BEiT energy"]["ID acc"]).all()  # one model per seed, two scores
    assert (beit["AUROC"] != rows.loc["BEiT energy"]["AUROC"]).all()
    assert beit.loc[0, "AUROC"] != beit.loc[1, "AUROC"]  # each seed its own model
