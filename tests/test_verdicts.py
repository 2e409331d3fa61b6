"""The verdict rules: the accuracy floor, the three-way call on a claim, a paired comparison in words."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from mood.experiments.verdicts import Validity, call, direction, gate, paired

NAN = math.nan


def test_gate_names_the_models_below_the_floor_and_skips_models_without_a_classifier() -> None:
    assert gate({"A": 80.5, "B": 90.0}, 84.5) == "no verdict: below the 84.5% accuracy floor (A 80.5%)"
    assert gate({"A": 85.0, "B": NAN}, 84.5) == ""  # B has no classifier: not gated
    assert gate({"A": 99.0}, None) == "no verdict: this profile exercises the code only"


def test_validity_is_the_same_rule_for_one_model_and_reads_back_from_its_row() -> None:
    below, above, code_only = Validity("cpu", 68.7, 84.5), Validity("cpu", 90.0, 84.5), Validity("smoke", 99.0, None)
    assert (below.ok, above.ok, code_only.ok) == (False, True, False)
    assert below.gated(True) == "no verdict (ID accuracy 68.7% < floor 84.5%)" and above.gated(True) is True
    assert code_only.gated(False) == "no verdict (profile smoke exercises the code only)"
    assert not Validity("cpu", NAN, 84.5).ok  # a model that was never scored
    for v in (below, code_only):  # NN_validity.csv's row: index profile, the floor NaN when there is none
        row = pd.DataFrame([v.to_dict()]).set_index("profile").astype({"floor": float}).iloc[0]
        assert Validity.read(row) == v


def test_the_call_on_a_claim_reads_the_interval_against_the_claimed_direction() -> None:
    assert call(0.5, 2.0, +1) == ("replicated", "")
    assert call(-2.0, -0.5, +1) == ("contradicted", "")
    assert call(-2.0, -0.5, -1).outcome == "replicated"  # a claimed drop, e.g. FPR95
    assert call(-0.5, 2.0, +1) == ("inconclusive", "the 95% CI [-0.50, +2.00] includes 0")
    assert call(NAN, NAN, +1) == ("inconclusive", "one seed: no test")
    assert call(0.5, 2.0, +1, p_holm=0.07) == ("inconclusive", "Holm p = 0.070 is not below 0.05")
    assert call(0.5, 2.0, +1, p_holm=0.01).outcome == "replicated"
    floor = gate({"A": 80.0}, 84.5)
    assert call(0.5, 2.0, +1, no_verdict=floor) == ("inconclusive", floor)
    with pytest.raises(ValueError, match="claimed must be"):
        call(0.5, 2.0, 0)
    assert [direction(*ci) for ci in ((0.1, 1.0), (-1.0, -0.1), (-1.0, 1.0), (NAN, NAN))] == [1, -1, 0, 0]


def test_a_paired_comparison_in_words() -> None:
    assert paired(3.0, 1.1, 4.9, 0.035) == "+3.00 AUROC, 95% CI [+1.10, +4.90], p = 0.035 — significant"
    assert (paired(3.0, 1.1, 4.9, 0.035, p_holm=0.07, says=("M is better", "C is better", "too close to call"))
            == "+3.00 AUROC, 95% CI [+1.10, +4.90], p = 0.035, Holm p = 0.070 — too close to call")
    assert (paired(-2.0, -3.0, -1.0, 0.01, unit="points", test="paired t over seeds", says=None)
            == "-2.00 points, 95% CI [-3.00, -1.00], p = 0.010 (paired t over seeds)")
    assert paired(2.0, NAN, NAN, NAN) == "+2.00 AUROC — one seed: no test"
    assert paired(2.0, 1.0, 3.0, 0.01, claimed=+1) == "+2.00 AUROC, 95% CI [+1.00, +3.00], p = 0.010 — replicated"
    assert paired(2.0, -1.0, 5.0, 0.3, claimed=+1).endswith("— inconclusive: the 95% CI [-1.00, +5.00] includes 0")
    floor = gate({"A": 80.0}, 84.5)
    assert paired(2.0, 1.0, 3.0, 0.01, no_verdict=floor).endswith(f"p = 0.010 — {floor}")
    assert paired(2.0, NAN, NAN, NAN, no_verdict=floor) == f"+2.00 AUROC — {floor}"
