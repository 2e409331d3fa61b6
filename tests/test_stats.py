"""Intervals and paired tests, and the false-positive rates the book states for them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from mood.core import stats


def test_paired_test_matches_scipy_and_its_interval() -> None:
    d = np.array([1.2, 0.4, 2.0, 0.9])
    out = stats.paired_test(d)
    ref = sps.ttest_1samp(d, 0.0)
    assert out["p"] == pytest.approx(ref.pvalue) and out["seeds"] == 4
    ci = ref.confidence_interval(0.95)
    assert (out["ci_lo"], out["ci_hi"]) == pytest.approx((ci.low, ci.high))
    assert out["significant"] == (ref.pvalue < 0.05)
    assert not stats.paired_test(np.array([3.0]))["significant"]  # one seed: never called


def _fires(rule, seeds: int, trials: int = 20_000) -> float:
    """How often ``rule`` (per-seed differences -> "there is a difference") fires on N(0, 1) noise."""
    rng = np.random.default_rng(0)
    return float(np.mean([rule(rng.normal(size=seeds)) for _ in range(trials)]))


def test_false_positive_rates_of_the_rules() -> None:
    """The t-test calls a difference 5% of the time when there is none; the former rule
    (|mean| > 2 std over 2 seeds) 21.6% (|Cauchy| > 2 sqrt 2: 1 - 2/pi atan(2 sqrt 2))."""
    t_rule = lambda d: stats.paired_test(d)["significant"]  # noqa: E731
    for seeds in (2, 3, 5):
        assert _fires(t_rule, seeds) == pytest.approx(0.05, abs=0.006)
    old_rule = lambda d: abs(d.mean()) > 2 * d.std(ddof=1)  # noqa: E731
    theory = 1 - 2 / np.pi * np.arctan(2 * np.sqrt(2))
    assert theory == pytest.approx(0.216, abs=1e-3)
    assert _fires(old_rule, 2) == pytest.approx(theory, abs=0.01)


def test_holm_adjusts_by_rank_keeps_order_and_controls_the_familywise_rate() -> None:
    # worked example: sorted p 0.01, 0.02, 0.04 times 3, 2, 1 -> 0.03, 0.04, 0.04 (monotone)
    adj = stats.holm(np.array([0.04, 0.01, np.nan, 0.02]))
    assert np.isnan(adj[2]) and adj[[1, 3, 0]] == pytest.approx([0.03, 0.04, 0.04])
    assert stats.holm(np.array([0.5, 0.9])) == pytest.approx([1.0, 1.0])  # capped at 1
    # six independent null tests: any raw p < 0.05 happens ~26% of the time, any Holm p < 0.05 <= 5%
    p = np.random.default_rng(0).uniform(size=(20_000, 6))
    raw = (p < 0.05).any(1).mean()
    family = (np.apply_along_axis(stats.holm, 1, p) < 0.05).any(1).mean()
    assert raw == pytest.approx(1 - 0.95 ** 6, abs=0.01) and family == pytest.approx(0.05, abs=0.006)


def test_auroc_interval_covers_the_estimate_and_shrinks_with_data() -> None:
    rng = np.random.default_rng(0)
    small = rng.normal(0, 1, 100), rng.normal(1, 1, 100)
    large = rng.normal(0, 1, 2000), rng.normal(1, 1, 2000)
    lo_s, hi_s = stats.auroc_ci(*small)
    lo_l, hi_l = stats.auroc_ci(*large)
    assert lo_s < 100 * roc_auc_score(np.r_[np.zeros(100), np.ones(100)], np.r_[small]) < hi_s
    assert hi_l - lo_l < (hi_s - lo_s) / 3  # ~1/sqrt(20) as wide
    true = 100 * sps.norm.cdf(1 / np.sqrt(2))  # AUROC of N(1,1) vs N(0,1)
    assert lo_l < true < hi_l
    with pytest.raises(ValueError, match="n_boot"):
        stats.auroc_ci(*small, n_boot=10)


def test_seed_gaps_groups() -> None:
    diffs = pd.DataFrame({"g": ["a"] * 3 + ["b"] * 3, "d": [1.0, 1.1, 0.9, -1.0, 1.0, 0.0]})
    out = stats.seed_gaps(diffs, ["g"], "d")
    assert list(out.index) == ["a", "b"] and bool(out.loc["a", "significant"]) and not out.loc["b", "significant"]


def test_auroc_intervals_per_set() -> None:
    rng = np.random.default_rng(1)
    id_s, near, far = rng.normal(0, 1, 500), rng.normal(0.5, 1, 300), rng.normal(3, 1, 300)
    out = stats.auroc_intervals(id_s, {"near": near, "far": far})
    assert list(out.index) == ["near", "far"] and (out["lo"] < out["AUROC"]).all() and (out["AUROC"] < out["hi"]).all()
    want = 100 * roc_auc_score(np.r_[np.zeros(500), np.ones(300)], np.r_[id_s, near])
    assert out.loc["near", "AUROC"] == pytest.approx(want)


def test_seed_summary_gives_the_t_interval_of_each_figure() -> None:
    per_seed = pd.DataFrame({"auroc": [97.0, 98.0, 99.0], "acc": [88.0, 88.0, 88.0]}, index=[0, 1, 2])
    s = stats.seed_summary(per_seed)
    half = sps.t.ppf(0.975, 2) * 1.0 / np.sqrt(3)
    assert s.loc["auroc", "mean"] == 98.0 and s.loc["auroc", "std"] == 1.0 and s.loc["auroc", "seeds"] == 3
    assert s.loc["auroc", "ci_lo"] == pytest.approx(98.0 - half) and s.loc["auroc", "ci_hi"] == pytest.approx(98.0 + half)
    assert s.loc["acc", "ci_lo"] == s.loc["acc", "ci_hi"] == 88.0


def test_paired_bootstrap_finds_a_real_gap_and_not_a_null_one() -> None:
    rng = np.random.default_rng(0)
    id_s = rng.normal(0, 1, 400)
    ood = {"a": rng.normal(1.0, 1, 300), "b": rng.normal(1.5, 1, 300)}
    same = stats.paired_bootstrap((id_s, ood), (id_s, ood))
    assert same["mean"] == 0 and not same["significant"]
    # b is a noisier copy of a on the same images: a lower AUROC, and the pairing shows it
    noisy = (id_s + rng.normal(0, 1, 400), {k: v + rng.normal(0, 1, len(v)) for k, v in ood.items()})
    gap = stats.paired_bootstrap((id_s, ood), noisy)
    want = 100 * np.mean([roc_auc_score(np.r_[np.zeros(400), np.ones(300)], np.r_[id_s, v]) -
                          roc_auc_score(np.r_[np.zeros(400), np.ones(300)], np.r_[noisy[0], noisy[1][k]])
                          for k, v in ood.items()])
    assert gap["mean"] == pytest.approx(want) and gap["significant"] and gap["ci_lo"] > 0
    with pytest.raises(ValueError, match="same images"):
        stats.paired_bootstrap((id_s, ood), (id_s[:10], ood))


def test_paired_bootstrap_false_positive_rate_is_near_alpha() -> None:
    """Two detectors with the same population AUROC (independent noise on the same images)."""
    rng = np.random.default_rng(1)
    fired = []
    for t in range(150):
        x_id, x_ood = rng.normal(0, 1, 120), rng.normal(1, 1, 120)
        a = (x_id + rng.normal(0, 1, 120), {"o": x_ood + rng.normal(0, 1, 120)})
        b = (x_id + rng.normal(0, 1, 120), {"o": x_ood + rng.normal(0, 1, 120)})
        fired.append(stats.paired_bootstrap(a, b, n_boot=300, seed=t)["significant"])
    assert 0.0 < np.mean(fired) < 0.12


def test_resampled_auroc_equals_sklearn_on_the_resampled_scores_ties_included() -> None:
    rng = np.random.default_rng(3)
    s_id, s_ood = rng.integers(0, 20, 300).astype(float), rng.integers(5, 25, 120).astype(float)  # many ties
    resampled = stats._ResampledAUROC(s_id, s_ood)
    for _ in range(5):
        i, o = rng.integers(0, 300, 300), rng.integers(0, 120, 120)
        y = np.r_[np.zeros(300), np.ones(120)]
        assert resampled(i, o) == pytest.approx(roc_auc_score(y, np.r_[s_id[i], s_ood[o]]), abs=1e-12)


def test_pair_names_inverts_pair_label_and_refuses_a_label_without_the_separator() -> None:
    from mood.core.stats import pair_label, pair_names

    assert pair_label("ViT + classification", "ResNet, none") == "ViT + classification − ResNet, none"
    assert pair_names(pair_label("ViT + classification", "ResNet, none")) == ("ViT + classification", "ResNet, none")
    with pytest.raises(ValueError, match="not a paired comparison"):
        pair_names("ViT - ResNet")  # an ASCII hyphen is not the separator


def test_mde_is_monotone_and_proportional_to_the_spread() -> None:
    assert stats.mde(1.0, 3) > stats.mde(1.0, 4) > stats.mde(1.0, 5) > stats.mde(1.0, 10)
    assert stats.mde(1.0, 3) < stats.mde(1.0, 3, tests=2) < stats.mde(1.0, 3, tests=3)
    assert stats.mde(1.0, 4, power=0.5) < stats.mde(1.0, 4) < stats.mde(1.0, 4, power=0.9)
    assert stats.mde(2.5, 4, tests=2) == pytest.approx(2.5 * stats.mde(1.0, 4, tests=2), rel=1e-9)
    assert np.isnan(stats.mde(1.0, 1)) and np.isnan(stats.mde(float("nan"), 3)) and stats.mde(0.0, 3) == 0.0
    # many seeds: the t-test is the z-test, MDE = (z_{1 - alpha/2} + z_power) sd / sqrt(seeds)
    assert stats.mde(1.0, 400) == pytest.approx((sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) / 20, rel=0.005)


@pytest.mark.parametrize("tests", [1, 2])
def test_mde_is_detected_at_the_stated_power(tests: int) -> None:
    """20,000 simulated 3-seed experiments whose true difference is the MDE: the t-test at
    alpha / tests rejects 80% of them."""
    rng = np.random.default_rng(0)
    d = rng.normal(stats.mde(1.0, 3, tests=tests), 1.0, size=(20_000, 3))
    rejected = sps.ttest_1samp(d, 0.0, axis=1).pvalue < stats.ALPHA / tests
    assert rejected.mean() == pytest.approx(0.8, abs=0.015)


@pytest.mark.parametrize("kwargs, name", [
    ({"seeds": 3.0}, "seeds"), ({"tests": 0}, "tests"), ({"alpha": 1.0}, "alpha"),
    ({"power": 0.0}, "power"), ({"power": 0.01}, "power"), ({"sd": -1.0}, "sd"),
])
def test_mde_refuses_bad_arguments_by_name(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        stats.mde(**{"sd": 1.0, "seeds": 3, **kwargs})


def test_bounded_interval_stays_inside_the_bounds_and_contains_the_mean() -> None:
    per_seed = pd.DataFrame({"near_top": [99.2, 99.9, 100.0], "middle": [60.0, 62.0, 64.0]})
    plain = stats.seed_summary(per_seed)
    assert plain.loc["near_top", "ci_hi"] > 100  # the case it fixes
    bounded = stats.seed_summary(per_seed, bounds=(0, 100))
    pd.testing.assert_frame_equal(bounded[["mean", "std", "seeds"]], plain[["mean", "std", "seeds"]])
    lo, hi = bounded.loc["near_top", ["ci_lo", "ci_hi"]]
    assert 0 <= lo < 99.7 < hi <= 100
    assert (lo, hi) == (plain.loc["near_top", "ci_lo"], 100.0)  # the t-interval, clipped at the bound
    assert (lo, hi) == stats.bounded_interval(per_seed["near_top"].to_numpy(), 0, 100)
    # inside the bounds: the t-interval itself
    assert bounded.loc["middle", ["ci_lo", "ci_hi"]].to_numpy() == pytest.approx(
        plain.loc["middle", ["ci_lo", "ci_hi"]].to_numpy())


def test_bounded_interval_edge_cases() -> None:
    assert np.isnan(stats.bounded_interval(np.array([99.0, np.nan]), 0, 100)).all()
    assert stats.bounded_interval(np.array([100.0, 100.0, 100.0]), 0, 100) == (100.0, 100.0)
    with pytest.raises(ValueError, match="bounds"):
        stats.bounded_interval(np.array([99.0, 101.0]), 0, 100)


def test_seed_summary_without_bounds_is_the_paired_t_interval() -> None:
    per_seed = pd.DataFrame({"auroc": [99.6, 98.1, 99.9], "fpr": [12.0, 20.5, 15.25]})
    s = stats.seed_summary(per_seed)
    for c in per_seed:
        t = stats.paired_test(per_seed[c].to_numpy())
        assert (s.loc[c, "ci_lo"], s.loc[c, "ci_hi"]) == (t["ci_lo"], t["ci_hi"])
