"""The claims registry: three-way calls that follow the tables, the accuracy floor and the trivial
baselines; cells never cut; the results page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mood.book import claims
from mood.experiments import tables
from tests.test_summary import _save, _write


def _one_class(res: Path, margins: list[float]) -> None:
    classes = [f"c{i}" for i in range(len(margins))]
    t = pd.DataFrame({"AUROC": [90.0 + m for m in margins], "pixel 1-NN AUROC": [90.0] * len(margins)},
                     index=pd.Index(classes, name="class"))
    t.loc["mean"] = t.mean()
    _save("05_one_class", t, res)


def test_every_call_is_one_of_three_and_missing_chapters_are_inconclusive(tmp_path: Path) -> None:
    t = claims.table(tmp_path)
    assert len(t) == len(claims.CLAIMS) and set(t["call"]) == {"inconclusive"}
    assert t["why"].str.startswith("chapter ").all() and t["why"].str.endswith("did not run").all()
    _write(tmp_path, one_auroc=95.0, pixel=92.3, acc=91.0, floor=84.5)
    _one_class(tmp_path, [2.0, 2.5, 3.0, 1.5, 2.2])
    assert set(claims.table(tmp_path)["call"]) <= set(claims.CALLS)


def test_one_class_is_paired_over_classes_against_raw_pixels(tmp_path: Path) -> None:
    _one_class(tmp_path, [2.0, 2.5, 3.0, 1.5, 2.2])
    r = claims.table(tmp_path, chapters=("05_one_class",)).iloc[0]
    assert r["call"] == "replicated" and "ahead on 5 of 5 classes" in r["measured here"]
    assert r["MDE"] > 0 and "raw-pixel 1-NN" in r["trivial baseline"]
    _one_class(tmp_path, [6.0, -5.0, 4.0, -3.0, 1.0])  # the mean margin positive, the classes split
    r = claims.table(tmp_path, chapters=("05_one_class",)).iloc[0]
    assert r["call"] == "inconclusive" and "includes 0" in r["why"] and "ahead on 3 of 5" in r["measured here"]


def test_baselines_must_all_be_beaten_above_the_accuracy_floor(tmp_path: Path) -> None:
    main = ("06_multi_class", "07_near_distribution", "08_few_shot_outlier_exposure")
    _write(tmp_path, one_auroc=95.0, pixel=92.3, acc=91.0, floor=84.5, gap=2.0)
    assert list(claims.table(tmp_path, chapters=main)["call"]) == ["replicated"] * 3  # 5-shot trails, but the claim is 10-shot
    _write(tmp_path, one_auroc=95.0, pixel=92.3, acc=91.0, floor=84.5, gap=-2.0)  # a baseline ahead, significantly
    assert list(claims.table(tmp_path, chapters=main)["call"]) == ["contradicted"] * 3
    _write(tmp_path, one_auroc=95.0, pixel=92.3, acc=91.0, floor=84.5, significant=False, gap=0.5)
    c = claims.table(tmp_path, chapters=main[:1]).iloc[0]
    assert c["call"] == "inconclusive" and c["why"] == "not every baseline is beaten significantly"
    _write(tmp_path, one_auroc=95.0, pixel=92.3, acc=80.0, floor=84.5, gap=2.0)  # under the floor: no verdict, whatever the gap
    c = claims.table(tmp_path, chapters=main[:1]).iloc[0]
    assert c["call"] == "inconclusive" and c["why"] == "ID accuracy 80.0% < floor 84.5%"


def test_a_study_claim_takes_the_declared_contrasts_call(tmp_path: Path) -> None:
    from mood.experiments import studies
    from mood.experiments.profiles import get_profile

    cpu = get_profile("cpu")
    cases = (([3.0, 3.2, 2.9], "replicated"), ([-3.0, -3.2, -2.9], "contradicted"), ([1.0, -2.0, 2.5], "inconclusive"))
    for gaps, expected in cases:
        runs = pd.DataFrame([{"variant": v, "protocol": "near-split", "seed": s, "ID acc": 95.0,
                              "AUROC": 80.0 + s - (g if v == "classification" else 1.0)}
                             for s, g in enumerate(gaps)
                             for v in ("BEiT MIM", "classification", "no pretraining (equal compute)")])
        runs.loc[runs["variant"] == "BEiT MIM", "AUROC"] = [80.0 + s for s in range(3)]
        tables.save("10_pretext_gaps", studies.contrasts(runs, studies.get("pretext", cpu), cpu), tmp_path)
        r = claims.table(tmp_path, chapters=("10_ablation_pretext",)).iloc[0]
        assert r["call"] == expected, (gaps, r["why"])
        assert "95.0% / 95.0%" in r["ID accuracy"] and np.isfinite(r["MDE"])
    assert "with 80% power" in r["why"]


def test_the_markdown_table_keeps_every_cell_whole_and_links_chapters(tmp_path: Path) -> None:
    _write(tmp_path, one_auroc=95.0, pixel=92.3, acc=91.0, floor=84.5)
    t = claims.table(tmp_path)
    text = claims.markdown(t, link=lambda ch: f"[{int(ch[:2])}](chapters/{ch}.ipynb)")
    for _, r in t.iterrows():
        assert r["measured here"].replace("|", "\\|") in text and f"**{r['call']}**" in text
    assert "[6](chapters/06_multi_class.ipynb)" in text
    assert claims.page(None).startswith("No run of record")


@pytest.mark.parametrize("chapter", sorted({c.chapter for c in claims.CLAIMS}))
def test_every_claim_names_a_chapter_of_the_book(chapter: str) -> None:
    from mood.book.layout import chapters

    assert chapter in {p.stem for p in chapters()}


def test_no_verdict_at_a_code_only_profile_or_from_one_training_seed(tmp_path: Path) -> None:
    _write(tmp_path, one_auroc=95.0, pixel=92.3, acc=91.0, floor=None, gap=2.0)  # smoke: no accuracy floor
    _one_class(tmp_path, [2.0, 2.5, 3.0, 1.5, 2.2])
    t = claims.table(tmp_path, chapters=("05_one_class", "06_multi_class"))
    assert set(t["call"]) == {"inconclusive"} and t["why"].str.contains("exercises the code only").all()
    _write(tmp_path, one_auroc=95.0, pixel=92.3, acc=91.0, floor=84.5, gap=2.0)
    duel = tables.load("06_versus_baselines", tmp_path).assign(seeds=1)
    tables.save("06_versus_baselines", duel, tmp_path)
    r = claims.table(tmp_path, chapters=("06_multi_class",)).iloc[0]
    assert r["call"] == "inconclusive" and "one training seed" in r["why"]
    tables.save("06_versus_baselines", duel.assign(seeds=3, **{"ID acc": 70.0}), tmp_path)  # baselines under the floor
    r = claims.table(tmp_path, chapters=("06_multi_class",)).iloc[0]
    assert r["call"] == "inconclusive" and "(baselines)" in r["why"]


def test_unleash_and_moodv2_claims_read_their_tables(tmp_path: Path) -> None:
    effect = pd.DataFrame([{"comparison": c, "condition": "clean", "model": "m", "score": "energy", "Δ": d, "std": 0.5,
                            "seeds": 3, "ci_lo": d - 1.0, "ci_hi": d + 1.0, "p": 0.01, "significant": True}
                           for c, d in (("UM vs last", 2.0), ("val-OOD epoch vs last", -3.0))])
    tables.save("16_unleash_effect", effect.set_index(["comparison", "condition", "model", "score"]), tmp_path)
    t = claims.table(tmp_path, chapters=("16_unleashing_mask",))
    assert list(t["call"]) == ["contradicted", "replicated"]  # the intermediate stage, then UM
    spread = pd.DataFrame([{"comparison": "classification − beit", "protocol": "near-split", "spread a": 30.0,
                            "spread b": 20.0, "gap": 10.0, "ci_lo": 2.0, "ci_hi": 18.0, "p": 0.02, "MDE": 8.0,
                            "ID acc a": 95.0, "ID acc b": 95.0, "call": "replicated"}])
    tables.save("13_score_spread", spread.set_index(["comparison", "protocol"]), tmp_path)
    r = claims.table(tmp_path, chapters=("13_ablation_ood_metric",)).loc[claims.CLAIMS[-1].claim]
    assert r["call"] == "replicated" and r["MDE"] == 8.0 and "near-split" in r["measured here"]


def test_a_claim_answered_by_later_chapters_says_so_until_they_have_run(tmp_path: Path) -> None:
    """Chapter 9 runs before the studies (10-11) whose equal-compute contrasts answer the
    near-distribution claim at cpu: it says where the call will come from, not that chapter 7 did not run."""
    from mood.experiments.profiles import get_profile
    from mood.experiments.verdicts import check

    gate = check(get_profile("cpu"), 95.0, "near-split")
    tables.save("07_validity", pd.DataFrame([gate.to_dict()]).set_index("profile"), tmp_path)
    r = claims.table(tmp_path, chapters=("07_near_distribution",)).iloc[0]
    assert r["call"] == "inconclusive" and "chapters 10-11, which run after this one" in r["measured here"]
    assert "did not run" not in r["why"]
