"""Metrics against hand-computed cases, both FPR95 conventions, bad scores and shapes, tables on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mood.core import metrics
from mood.core.io import load_table, save_table


def test_auroc_hand_cases() -> None:
    assert metrics.auroc([0, 1, 2], [3, 4]) == 1.0
    assert metrics.auroc([3, 4], [0, 1, 2]) == 0.0
    assert metrics.auroc([1, 1], [1, 1]) == 0.5
    # pairs (id, ood): (0,1)>, (0,3)>, (2,1)<, (2,3)> -> 3/4
    assert metrics.auroc([0, 2], [1, 3]) == 0.75


def test_fpr95_both_conventions_by_hand() -> None:
    id_s = np.arange(1, 21, dtype=float)  # 20 ID scores 1..20
    ood_s = np.array([10.0, 19.0, 19.5, 30.0])
    # positive=id: accept the 19 lowest ID scores (t = 19); OOD accepted: 10 and 19 -> 2/4
    assert metrics.fpr_at_tpr(id_s, ood_s, positive="id") == 0.5
    # positive=ood: flag ceil(0.95*4)=4 OOD -> t = 10; ID flagged: 10..20 -> 11/20
    assert metrics.fpr_at_tpr(id_s, ood_s, positive="ood") == 11 / 20
    with pytest.raises(ValueError, match="positive"):
        metrics.fpr_at_tpr(id_s, ood_s, positive="both")  # type: ignore[arg-type]


def test_aupr_in_and_out_by_hand() -> None:
    # OOD ranking by score: 3 (ood), 2 (id), 1 (ood), 0 (id): AP_out = (1/1 + 2/3) / 2
    assert metrics.aupr_out([0, 2], [1, 3]) == pytest.approx((1 + 2 / 3) / 2)
    # ID ranking by -score: 0 (id), 1 (ood), 2 (id), 3 (ood): AP_in = (1/1 + 2/3) / 2
    assert metrics.aupr_in([0, 2], [1, 3]) == pytest.approx((1 + 2 / 3) / 2)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_scores_are_rejected(bad: float) -> None:
    with pytest.raises(ValueError, match="NaN/inf"):
        metrics.evaluate(np.array([0.1, bad]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="empty"):
        metrics.auroc([], [1.0])


def test_results_table_and_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    id_s = rng.normal(0, 1, 500)
    df = metrics.results_table(id_s, {"near": rng.normal(0.5, 1, 300), "far": rng.normal(4, 1, 300)})
    assert list(df.index) == ["near", "far", "mean"] and list(df.columns) == list(metrics.METRIC_COLUMNS)
    assert df.loc["far", "AUROC"] > 99 > df.loc["near", "AUROC"] > 55
    assert df.loc["mean", "AUROC"] == pytest.approx(df.loc[["near", "far"], "AUROC"].mean())
    for suffix in ("csv", "json"):
        back = load_table(save_table(df, tmp_path / f"t.{suffix}"))
        pd.testing.assert_frame_equal(back, df, check_names=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.json"]  # no temp files left


def test_bad_rates_and_shapes_are_named() -> None:
    with pytest.raises(ValueError, match=r"tpr is a rate in \(0, 1\], got 1.5"):
        metrics.fpr_at_tpr([0.0, 1.0], [2.0, 3.0], tpr=1.5)
    with pytest.raises(ValueError, match="tpr is a rate"):
        metrics.fpr_at_tpr([0.0, 1.0], [2.0, 3.0], tpr=0.0)
    with pytest.raises(ValueError, match=r"shape \[N\]; got shape \(4, 2\)"):
        metrics.results_table(np.zeros((4, 2)), {"x": np.ones(3)})
    with pytest.raises(ValueError, match="OOD scores must be one number per image"):
        metrics.auroc(np.zeros(4), np.ones((3, 1)))


def test_results_table_reports_group_means_apart() -> None:
    rng = np.random.default_rng(0)
    id_s = rng.normal(0, 1, 300)
    ood = {"mnist": rng.normal(2, 1, 200), "digits": rng.normal(1, 1, 200), "gaussian": rng.normal(9, 1, 200)}
    df = metrics.results_table(id_s, ood, groups={"mnist": "far", "digits": "far", "gaussian": "noise"})
    assert list(df.index) == ["mnist", "digits", "gaussian", "mean (far)", "mean (noise)", "mean"]
    assert df.loc["mean (far)", "AUROC"] == pytest.approx(df.loc[["mnist", "digits"], "AUROC"].mean())
    assert df.loc["mean", "AUROC"] == pytest.approx(df.loc[["mnist", "digits", "gaussian"], "AUROC"].mean())
    one = metrics.results_table(id_s, {"a": ood["mnist"]}, groups={"a": "near"})
    assert list(one.index) == ["a", "mean"]
