"""The headline figures, the README block and the compute appendix, read from result files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mood.experiments import tables


def _save(name: str, df: pd.DataFrame, res: Path) -> None:
    """``df`` as the registered result table ``name``, the declared columns it leaves out NaN."""
    tables.save(name, df.assign(**{c: np.nan for c in tables.get(name).columns if c not in df}), res)


def _write(res: Path, one_auroc: float, pixel: float, acc: float, floor: float | None, gap: float = 1.0,
           significant: bool = True) -> None:
    _save("05_one_class", pd.DataFrame({"AUROC": [one_auroc], "pixel 1-NN AUROC": [pixel], "untrained AUROC": [one_auroc - 2]},
                                       index=pd.Index(["mean"], name="class")), res)
    table = pd.DataFrame({"AUROC": [98.0, 99.0, 98.5]}, index=pd.Index(["mnist", "uniform", "mean"], name="ood"))
    _save("06_multi_class", table, res)
    _save("07_near_distribution", table, res)
    _save("08_few_shot", pd.DataFrame({"MOOD (no OOD data)": [98.0], "OE 10-shot": [97.0]}, index=["mean"]), res)
    for ch in ("06", "07"):
        duel = pd.DataFrame({"score": ["energy", "mahalanobis"], "mean": [gap, 2 * gap], "ci_lo": [gap - 1, gap],
                             "ci_hi": [gap + 1, 3 * gap], "seeds": [3, 3], "significant": [significant, True],
                             "p": [0.01, 0.002], "test": ["paired t over seeds"] * 2},
                            index=pd.Index(["cnn_small from scratch", "vit from scratch"], name="baseline"))
        _save(f"{ch}_versus_baselines", duel, res)
        v = pd.DataFrame([{"profile": "p", "id_accuracy": acc, "floor": floor, "ok": floor is not None and acc >= floor}])
        _save(f"{ch}_validity", v.set_index("profile"), res)
    # only the largest k decides: MOOD's claim is against 10-shot OE (the 5-shot row trails here)
    oe = pd.DataFrame({"score": ["outlier_class", "outlier_class", "mahalanobis"], "mean": [-5.0, gap, 2 * gap],
                       "ci_lo": [-6.0, gap - 1, gap], "ci_hi": [-4.0, gap + 1, 3 * gap], "significant": [True, significant, True],
                       "p": [0.001, 0.01, 0.002], "seeds": [3, 3, 3], "test": ["paired t over seeds"] * 3},
                      index=pd.Index(["OE 5-shot", "OE 10-shot", "OE 10-shot"], name="baseline"))
    _save("08_versus_oe", oe.set_index("score", append=True), res)


def test_headline_reads_the_figures_of_record(tmp_path: Path) -> None:
    from mood.book.summary import headline, save_headline
    from mood.core.io import save_table

    _write(tmp_path, one_auroc=90.0, pixel=92.3, acc=88.5, floor=84.5)
    save_table(pd.DataFrame({"seconds": [10.0, 20.0, 30.0]},
                            index=pd.Index(["01_ood_problem", "09_summary", "10_ablation_pretext"], name="chapter")),
              tmp_path / f"{tables.TIMINGS}.csv")
    h = headline(tmp_path).set_index("figure")["value"]
    assert h.to_dict() == {"id_accuracy": 88.5, "auroc_mnist": 98.0, "auroc_far_mean": 98.5,
                           "one_class_auroc_mean": 90.0, "one_class_pixel_knn_auroc_mean": 92.3,
                           "one_class_untrained_auroc_mean": 88.0, "chapters_1_9_seconds": 30.0,
                           "chapters_10_15_seconds": 30.0, "book_seconds": 60.0}
    back = pd.read_csv(save_headline(tmp_path))
    assert list(back.columns) == ["figure", "value"] and len(back) == 9
    # a whole-book run that loaded trained stages from the artifact cache says how much training it skipped
    (tmp_path / "provenance.json").write_text(json.dumps({"run_training": {"trained runs": 2, "trained s": 5.0,
                                                                           "trained images": 6000,
                                                                           "cached runs": 3, "cached s": 700.0}}))
    h = headline(tmp_path).set_index("figure")["value"]
    assert h["book_seconds"] == 60.0 and h["book_cached_training_seconds"] == 700.0
    assert h["train_img_per_s"] == 1200.0  # the images its trained stages processed over their seconds
    assert "book_cached_training_seconds" not in headline(tmp_path, whole_book=False)["figure"].to_list()
    (tmp_path / "provenance.json").unlink()
    # with seeds, the means over seeds are the figures of record, with their spread and interval
    per_seed = pd.DataFrame({"ID acc": [88.0, 89.0, 90.0], "mnist": [98.0, 98.5, 99.0], "mean (far)": [97.0, 97.0, 97.0]},
                            index=pd.Index([0, 1, 2], name="seed"))
    from mood.core.stats import seed_summary

    tables.save("06_multi_class_summary", seed_summary(per_seed), tmp_path)
    h = headline(tmp_path).set_index("figure")["value"]
    assert h["id_accuracy"] == 89.0 and h["auroc_mnist"] == pytest.approx(98.5) and h["seeds"] == 3
    assert h["auroc_mnist_ci_lo"] < 98.5 < h["auroc_mnist_ci_hi"] and h["auroc_far_mean_std"] == 0.0
    # Unleashing Mask: the study's per-condition tables, as chapter 16 saves them
    from mood.experiments.unleash_study import UnleashStudy

    floors = pd.DataFrame([{"condition": c, "model": "m", "seed": s, "floor b": 1.0, "last-epoch train CE": 0.05,
                            "last-epoch train acc": acc + s, "UM final train CE": ratio + 0.1 * s, "UM loss / b": ratio + 0.1 * s}
                           for c, acc, ratio in (("clean", 99.0, 0.9), ("noise 20%", 97.0, 1.4)) for s in (0, 1, 2)])
    climb = pd.DataFrame([{"condition": c, "model": "m", "seed": s, "epoch": e, "ce": 1.0, "floor b": 1.0, "ce / b": 1.0}
                          for c in ("clean", "noise 20%") for s in (0, 1, 2) for e in (1, 2)])
    runs = pd.DataFrame([{"condition": c, "model": "m", "seed": s, "method": m, "score": "energy",
                          "AUROC": base + s + (gain if m == "+UM" else 0.0), "FPR95": 50.0, "ID acc": 80.0}
                         for c, base, gain in (("clean", 80.0, 1.0), ("noise 20%", 60.0, -2.0)) for s in (0, 1, 2)
                         for m in ("baseline (last epoch)", "+UM")])
    curve = pd.DataFrame([{"condition": c, "model": "m", "seed": s, "epoch": e, "energy AUROC": 80.0}
                          for c in ("clean", "noise 20%") for s in (0, 1, 2) for e in (1, 2)])
    study = UnleashStudy(curve, runs, floors, pd.DataFrame(), ("energy",), climb)
    study.save(tmp_path)
    h = headline(tmp_path).set_index("figure")["value"]
    assert h["um_train_accuracy_final"] == 100.0 and h["um_train_accuracy_final_noisy"] == 98.0
    assert h["um_loss_to_floor_ratio"] == pytest.approx(1.0) and h["um_loss_to_floor_ratio_noisy"] == pytest.approx(1.5)
    assert h["um_energy_auroc_gain"] == pytest.approx(1.0) and h["um_energy_auroc_gain_noisy"] == pytest.approx(-2.0)
    assert h["um_energy_auroc_gain_ci_lo"] == h["um_energy_auroc_gain_ci_hi"] == pytest.approx(1.0)  # same gain every seed


def test_provenance_names_commit_device_and_times(tmp_path: Path) -> None:
    from mood.book import runner as book
    from mood.book.records import provenance

    rec = provenance("smoke", pd.DataFrame({"seconds": [1.5, 2.0]}, index=["01_a", "02_b"]), book.REPO)
    assert rec["profile"] == "smoke" and rec["total_seconds"] == 3.5 and rec["chapter_seconds"]["02_b"] == 2.0
    assert len(rec["commit"]) == 40 and rec["torch"]
    assert "cores" in rec["device"] or "CUDA" in rec["device"]


def test_provenance_outside_git_takes_the_commit_it_is_told(tmp_path: Path, monkeypatch) -> None:
    from mood.book.records import provenance

    timings = pd.DataFrame({"seconds": [1.0]}, index=["01_a"])
    assert provenance("smoke", timings, tmp_path)["commit"] == "unknown"  # no repository, no word
    monkeypatch.setenv("MOOD_COMMIT", "c" * 40)
    assert provenance("smoke", timings, tmp_path)["commit"] == "c" * 40
    # inside a repository whose HEAD is another commit (the device's copy), the stated commit still wins
    repo = Path(__file__).resolve().parents[1]
    rec = provenance("smoke", timings, repo)
    assert rec["commit"] == "c" * 40 and rec["code_changed_since_commit"] is False


def test_readme_rows_put_the_seed_spread_beside_its_figure(tmp_path: Path) -> None:
    import json

    from mood.book.summary import readme_block

    (tmp_path / "cpu").mkdir()
    pd.DataFrame({"figure": ["auroc_mnist", "auroc_mnist_std", "auroc_mnist_ci_lo", "auroc_mnist_ci_hi", "seeds"],
                  "value": [97.0, 0.5, 95.8, 98.2, 3]}).to_csv(tmp_path / "cpu" / "headline.csv", index=False)
    (tmp_path / "cpu" / "provenance.json").write_text(json.dumps({"commit": "a" * 40, "date": "2026-11-26",
                                                                    "device": "cpu", "torch": "2"}))
    block = readme_block(tmp_path, profiles=("cpu",))
    assert "| multi-class: AUROC, Fashion-MNIST vs MNIST | 97.00 ± 0.50 [95.80, 98.20] |" in block
    assert "auroc_mnist_std" not in block and "seeds |" not in block  # the seed count goes beside the ID accuracy
    record = json.loads((tmp_path / "cpu" / "provenance.json").read_text())
    record.update(chapter_seconds={"05_one_class": 300.0}, total_seconds=300.0,
                  run_training={"trained runs": 2, "trained s": 5.0, "trained images": 5000, "cached runs": 0, "cached s": 0})
    (tmp_path / "cpu" / "provenance.json").write_text(json.dumps(record))
    block = readme_block(tmp_path, profiles=("cpu",))  # a record of some chapters (the gpu one) names them
    assert "commit `aaaaaaaaaa`, 2026-11-26, cpu (training at 1,000 img/s), torch 2, chapter 5 (300 s)." in block
    record["other_runs"] = [{"commit": "b" * 40, "date": "2026-11-27", "chapter_seconds": {"10_pretext": 4321.0}}]
    (tmp_path / "cpu" / "provenance.json").write_text(json.dumps(record))
    block = readme_block(tmp_path, profiles=("cpu",))  # runs of other code: no record, no column
    assert "- `cpu`: no record:" in block and "`bbbbbbbbbb` (10_pretext)" in block and "97.00" not in block


def test_headline_takes_the_pretext_gaps_of_chapter_10(tmp_path: Path) -> None:
    from mood.book.summary import headline
    from mood.experiments import studies
    from mood.experiments.profiles import get_profile

    runs = pd.DataFrame([{"variant": v, "protocol": "near-split", "seed": s, "ID acc": 90.0,
                          "AUROC": a + s * (1.0 if v == "BEiT MIM" else 0.5)} for s in range(3)
                         for v, a in (("BEiT MIM", 80.0), ("classification", 78.0), ("no pretraining (equal compute)", 70.0))])
    cpu = get_profile("cpu")
    tables.save("10_pretext_gaps", studies.contrasts(runs, studies.get("pretext", cpu), cpu), tmp_path)
    h = headline(tmp_path).set_index("figure")["value"]
    assert h["pretext_mim_minus_scratch"] == pytest.approx(10.5)  # (10, 10.5, 11)
    # paired by seed: (2, 2.5, 3)
    assert h["pretext_mim_minus_classification"] == pytest.approx(2.5)
    assert h["pretext_mim_minus_classification_std"] == pytest.approx(0.5)
    assert h["pretext_mim_minus_classification_ci_lo"] < 2.5 < h["pretext_mim_minus_classification_ci_hi"]
    assert not any(f.startswith("architecture_") for f in h.index)  # chapter 11 did not run


def test_headline_takes_chapter_11s_vit_minus_cnn_contrast_not_its_other_pair(tmp_path: Path) -> None:
    from mood.book.summary import ARCHITECTURE_HEADLINE, headline
    from mood.core.stats import pair_names
    from mood.experiments import studies
    from mood.experiments.profiles import get_profile

    a, b = pair_names(ARCHITECTURE_HEADLINE)
    variants = ((a, 80.0, 1.0), (b, 84.0, 0.0), ("ViT + classification", 70.0, 0.0), ("ResNet + classification", 60.0, 2.0),
                ("ViT (equal compute)", 50.0, 0.0))
    runs = pd.DataFrame([{"variant": v, "protocol": "near-split", "seed": s, "AUROC": x + s * slope, "ID acc": 90.0}
                         for s in range(3) for v, x, slope in variants])
    gpu = get_profile("gpu")  # the full grid: both architecture pairs
    tables.save("11_architecture_gaps", studies.contrasts(runs, studies.get("architecture", gpu), gpu), tmp_path)
    h = headline(tmp_path).set_index("figure")["value"]
    # the declared headline pair, paired by seed: (-4, -3, -2); the ViT-vs-ResNet pair is (10, 8, 6)
    assert h["architecture_vit_minus_cnn"] == pytest.approx(-3.0)
    assert h["architecture_vit_minus_cnn_std"] == pytest.approx(1.0)
    assert h["architecture_vit_minus_cnn_ci_lo"] < -3.0 < h["architecture_vit_minus_cnn_ci_hi"] < 0
    assert "pretext_mim_minus_classification" not in h


def test_headline_table_puts_each_figures_spread_beside_it_under_its_label() -> None:
    from mood.book.summary import FIGURE_LABELS, headline_table

    figures = pd.DataFrame({"figure": ["id_accuracy", "id_accuracy_std", "id_accuracy_ci_lo", "id_accuracy_ci_hi",
                                       "seeds", "book_seconds"], "value": [85.0, 0.5, 84.0, 86.0, 3.0, 100.0]})
    table = headline_table(figures, keep=lambda f: not f.endswith("_seconds"))
    assert list(table.index) == [FIGURE_LABELS["id_accuracy"], FIGURE_LABELS["seeds"]]
    row = table.loc[FIGURE_LABELS["id_accuracy"]]
    assert row["value"] == 85.0 and row["std"] == 0.5 and row["95% CI"] == "[84.00, 86.00]"
    assert table.loc[FIGURE_LABELS["seeds"], "95% CI"] == ""
