"""Each chapter's findings follow its tables, whichever way the numbers go."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

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
