"""Each chapter's findings follow its tables, whichever way the numbers go."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mood.book import findings
from tests.test_summary import _save


def _one_class(res: Path, margins: list[float], untrained: float) -> None:
    t = pd.DataFrame({"AUROC": [90.0 + m for m in margins], "pixel 1-NN AUROC": [90.0] * len(margins),
                      "untrained AUROC": [untrained] * len(margins)},
                     index=pd.Index([f"c{i}" for i in range(len(margins))], name="class"))
    t.loc["mean"] = t.mean()
    _save("05_one_class", t, res)


def test_one_class_findings_read_the_sign_of_every_margin(tmp_path: Path) -> None:
    _one_class(tmp_path, [8.0, 1.0, -1.0], untrained=80.0)
    text = findings.say("05_one_class", tmp_path)
    assert "beats raw-pixel 1-NN on 2 of 3 classes" in text and "`c0` alone moves it by +2.67" in text
    assert "pretraining adds 12.67" in text
    _one_class(tmp_path, [-8.0, 1.0, -1.0], untrained=95.0)
    text = findings.say("05_one_class", tmp_path)
    assert "`c0` alone moves it by -2.67" in text and "the pretrained one is 7.67 lower" in text


def test_few_shot_findings_credit_exposure_only_where_it_carried_over(tmp_path: Path) -> None:
    mood, oe = "MOOD (no OOD data)", "OE 10-shot (outlier prob.)"
    for digits_oe, expect in ((60.0, "did not carry over"), (99.0, None)):
        f = pd.DataFrame({mood: [99.0, 97.0, 98.0], oe: [99.5, digits_oe, (99.5 + digits_oe) / 2]},
                         index=["mnist", "digits", "mean"])
        _save("08_few_shot", f, tmp_path)
        text = findings.say("08_few_shot_outlier_exposure", tmp_path)
        assert "ahead of MOOD in the mean over seeds on mnist" in text
        assert (expect in text) if expect else ("did not carry over" not in text)


def test_a_chapter_whose_tables_are_missing_says_which() -> None:
    assert findings.say("07_near_distribution", "/nonexistent").startswith("*No findings: `07_near_distribution_seeds`")


def test_per_set_reads_where_the_logit_scores_lose(tmp_path: Path) -> None:
    """studies.per_set averages each score's per-set AUROC over seeds and says what the score reads;
    chapter 13's findings locate the feature-minus-logit gap by OOD set, whichever way it goes."""
    from mood.experiments import studies

    rows = []
    for seed, jitter in ((0, -1.0), (1, 1.0)):
        for variant, coat, sandal in (("mahalanobis", 70.0, 90.0), ("msp", 55.0, 92.0), ("energy", 50.0, 91.0)):
            rows.append({"variant": variant, "protocol": "near-split", "seed": seed, "AUROC": (coat + sandal) / 2,
                         "AUROC: Coat": coat + jitter, "AUROC: Sandal": sandal + jitter})
    sets = studies.per_set(pd.DataFrame(rows), studies.STUDIES["ood_metric"])
    assert sets.loc[("msp", "near-split"), "Coat"] == 55.0  # mean over the seeds' ±1
    assert list(sets["reads"]) == ["features", "logits", "logits"]
    _save("13_ood_metric_sets", sets, tmp_path)
    line = findings._where_logits_lose(sets)[0]
    assert "Sandal -2.0, Coat +15.0 AUROC points" in line  # the best of each kind: 70 - 55 and 90 - 92
    assert "lose most on Coat and win on Sandal" in line
    with pytest.raises(ValueError, match="run the study again"):
        studies.per_set(pd.DataFrame(rows).drop(columns=["AUROC: Coat", "AUROC: Sandal"]))


def test_the_look_alike_finding_tests_each_twin_against_sandal(tmp_path: Path) -> None:
    t = pd.DataFrame({"seed": [0, 1, 2], "ID acc": [94.0] * 3, "Coat": [58.0, 56.0, 60.0], "Sandal": [90.0, 92.0, 91.0],
                      "Shirt": [95.0, 97.0, 96.0], "Ankle boot": [90.5, 91.0, 92.5]}).set_index("seed")
    t["mean"] = t[["Coat", "Sandal", "Shirt", "Ankle boot"]].mean(axis=1)
    _save("07_near_distribution_seeds", t, tmp_path)
    text = findings.say("07_near_distribution", tmp_path)
    assert "Coat -33.00 AUROC" in text and "it holds for Coat;" in text
    assert "Shirt scored above Sandal, against it" in text and "Ankle boot cannot be told apart from Sandal" in text
