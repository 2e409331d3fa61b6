"""The summary's verdicts follow the validity gate and the pixel baseline, read from result files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mood.artifacts import save_results
from mood.summary import claims_table


def _write(res: Path, one_auroc: float, pixel: float, acc: float, floor: float | None) -> None:
    save_results(pd.DataFrame({"AUROC": [one_auroc], "pixel 1-NN AUROC": [pixel]}, index=pd.Index(["mean"], name="class")),
                 res, "05_one_class")
    table = pd.DataFrame({"AUROC": [98.0, 99.0, 98.5]}, index=pd.Index(["mnist", "uniform", "mean"], name="ood"))
    save_results(table, res, "06_multi_class")
    save_results(table, res, "07_near_distribution")
    save_results(pd.DataFrame({"MOOD (no OOD data)": [98.0], "OE 10-shot": [97.0]}, index=["mean"]), res, "08_few_shot")
    for ch in ("06", "07"):
        v = pd.DataFrame([{"profile": "p", "id_accuracy": acc, "floor": floor, "ok": floor is not None and acc >= floor}])
        save_results(v.set_index("profile"), res, f"{ch}_validity")


def test_no_verdict_below_the_floor_or_the_pixel_baseline(tmp_path: Path) -> None:
    _write(tmp_path, one_auroc=87.4, pixel=92.3, acc=68.7, floor=84.5)
    c = claims_table(tmp_path)["replicated"]
    assert c.iloc[0] == "no verdict (below the raw-pixel 1-NN baseline, 92.3)"
    assert list(c.iloc[1:]) == ["no verdict (ID accuracy 68.7% < floor 84.5%)"] * 3
    _write(tmp_path, one_auroc=95.0, pixel=92.3, acc=99.0, floor=None)  # the smoke profile: never a verdict
    assert claims_table(tmp_path)["replicated"].iloc[3] == "no verdict (profile p exercises the code only)"


def test_verdicts_when_the_setting_is_valid(tmp_path: Path) -> None:
    _write(tmp_path, one_auroc=95.0, pixel=92.3, acc=91.0, floor=84.5)
    c = claims_table(tmp_path)["replicated"]
    assert c.iloc[0] is True or c.iloc[0] == True  # noqa: E712 (numpy bool)
    assert c.iloc[3] == True  # noqa: E712 (MOOD 98.0 >= OE 97.0)
    assert c.iloc[1] == "not tested (needs an equal-compute baseline)"


def test_missing_chapters_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="05_one_class, 06_multi_class"):
        claims_table(tmp_path)


def test_headline_reads_the_figures_of_record(tmp_path: Path) -> None:
    from mood.artifacts import save_table
    from mood.summary import headline, save_headline

    _write(tmp_path, one_auroc=90.0, pixel=92.3, acc=88.5, floor=84.5)
    save_table(pd.DataFrame({"seconds": [10.0, 20.0, 30.0]},
                            index=pd.Index(["01_a", "09_b", "10_c"], name="chapter")), tmp_path / "_timings.csv")
    h = headline(tmp_path).set_index("figure")["value"]
    assert h.to_dict() == {"id_accuracy": 88.5, "auroc_mnist": 98.0, "auroc_far_mean": 98.5,
                           "one_class_auroc_mean": 90.0, "one_class_pixel_knn_auroc_mean": 92.3,
                           "chapters_1_9_seconds": 30.0, "book_seconds": 60.0}
    back = pd.read_csv(save_headline(tmp_path))
    assert list(back.columns) == ["figure", "value"] and len(back) == 7


def test_provenance_names_commit_device_and_times(tmp_path: Path) -> None:
    from mood import book
    from mood.artifacts import provenance

    rec = provenance("smoke", pd.DataFrame({"seconds": [1.5, 2.0]}, index=["01_a", "02_b"]), book.REPO)
    assert rec["profile"] == "smoke" and rec["total_seconds"] == 3.5 and rec["chapter_seconds"]["02_b"] == 2.0
    assert len(rec["commit"]) == 40 and rec["torch"]
    assert "cores" in rec["device"] or "CUDA" in rec["device"]
