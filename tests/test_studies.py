"""The ablation studies: declared designs, what each profile asks, contrasts with Holm, MDE and calls,
and the studies' arms sharing the main chapters' models (equal run keys)."""

from __future__ import annotations

import pandas as pd
import pytest

from mood.core.stats import holm, mde
from mood.experiments import studies
from mood.experiments.profiles import PROFILES, get_profile
from mood.experiments.resolve import FromScratch, Variant, resolve


@pytest.mark.parametrize("profile", list(PROFILES))
def test_every_profile_asks_declared_variants_and_keeps_a_contrast_per_study(profile: str) -> None:
    prof = get_profile(profile)
    for name, full in studies.STUDIES.items():
        asked = studies.get(name, prof)
        assert {v.name for v in asked.variants} <= {v.name for v in full.variants}
        assert asked.contrasts, f"{profile} asks study {name} without any of its contrasts"
        assert all(c in full.contrasts for c in asked.contrasts)
        assert asked.variants[0] == full.variants[0]  # the reference arm is always trained


def test_a_plan_naming_an_undeclared_variant_is_refused_by_name() -> None:
    from dataclasses import replace
    prof = get_profile("cpu")
    bad = replace(prof, plan=replace(prof.plan, studies={"pretext": ("BEiT MIM", "MoCo")}))
    with pytest.raises(ValueError, match="MoCo"):
        studies.get("pretext", bad)


def test_the_cpu_studies_share_chapter_7s_models_and_baselines() -> None:
    """Equal keys, equal models: the BEiT arm of a study at the main scale is chapter 7's run of the same
    fine-tuning seed, and its from-scratch arm is chapter 7's equal-compute baseline of the same seed."""
    prof = get_profile("cpu")
    assert prof.plan.ablation_scale == "main" and prof.ablation_protocols == ("near-split",)
    beit = studies.get("pretext", prof).variants[0]
    for s in (0, 1):
        assert (resolve(prof, "near-split", variant=beit, finetune_seed=s).key
                == resolve(prof, "near-split", finetune_seed=s).key)
    scratch = Variant("no pretraining (equal compute)", from_scratch=True)
    cnn = Variant("CNN (equal compute)", model="cnn_small", from_scratch=True)
    as_variant = resolve(prof, "near-split", variant=scratch, seed=1).key
    assert as_variant == resolve(prof, "near-split", baseline=FromScratch(), seed=1).key
    assert (resolve(prof, "near-split", variant=cnn, seed=1).key
            == resolve(prof, "near-split", baseline=FromScratch("cnn_small"), seed=1).key)
    with pytest.raises(ValueError, match="from_scratch"):
        Variant("x", pretext="beit", from_scratch=True)


def _runs(gaps: dict[str, list[float]], acc: float = 95.0) -> pd.DataFrame:
    """Per-seed endpoint of each variant: the reference at 80 + seed, each other variant below it by its gaps."""
    ref = "BEiT MIM"
    rows = [{"variant": ref, "protocol": "near-split", "seed": s, "AUROC": 80.0 + s, "ID acc": acc} for s in range(3)]
    rows += [{"variant": v, "protocol": "near-split", "seed": s, "AUROC": 80.0 + s - g, "ID acc": acc}
             for v, gs in gaps.items() for s, g in enumerate(gs)]
    return pd.DataFrame(rows)


def test_contrasts_are_holm_adjusted_over_the_study_with_mde_and_calls() -> None:
    prof = get_profile("cpu")
    study = studies.get("pretext", prof)
    runs = _runs({"classification": [3.0, 3.2, 2.9], "no pretraining (equal compute)": [1.0, -2.0, 2.5]})
    gaps = studies.contrasts(runs, study, prof)
    assert len(gaps) == len(study.contrasts) == 2
    assert gaps["p (Holm)"].to_numpy() == pytest.approx(holm(gaps["p"].to_numpy()))
    for (_, _), r in gaps.iterrows():
        assert r["seeds"] == 3 and r["MDE"] == pytest.approx(mde(r["gap std"], 3, tests=2))
    consistent = gaps.xs("BEiT MIM − classification", level="comparison").iloc[0]
    assert consistent["call"] == "replicated"
    noisy = gaps.xs("BEiT MIM − no pretraining (equal compute)", level="comparison").iloc[0]
    assert noisy["call"].startswith("inconclusive: the 95% CI") and noisy["call"].endswith(
        f"the design detects gaps of {noisy['MDE']:.2f} AUROC or more with 80% power")
    # the paper's direction reversed: contradicted, not replicated
    reversed_ = studies.contrasts(_runs({"classification": [-3.0, -3.2, -2.9], "no pretraining (equal compute)": [1, 1, 1]}),
                                  study, prof)
    assert reversed_.loc[("BEiT MIM − classification", "near-split"), "call"] == "contradicted"
    # under the accuracy floor: no verdict, whatever the gap
    under = studies.contrasts(_runs({"classification": [3.0, 3.2, 2.9], "no pretraining (equal compute)": [1, 1, 1]},
                                    acc=50.0), study, prof)
    assert under["call"].str.contains("below the").all()


def test_the_declaration_names_question_endpoint_seeds_and_contrasts() -> None:
    prof = get_profile("cpu")
    text = studies.get("pretext", prof).declaration(prof)
    for part in ("**Question.**", "near-split", "3 seeds [0, 1, 2]", "`BEiT MIM` − `classification`",
                 "Holm-adjusted over these 2"):
        assert part in text
