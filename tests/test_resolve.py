"""The one resolver: each step of its documented order applies, later steps win, the derived rules
hold after every knob, and the production paths (ablations, baselines, the command line) train what
it resolved."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from mood.core.cache import Cache
from mood.experiments.config import StageOverrides
from mood.experiments.profiles import get_profile
from mood.experiments.resolve import FromScratch, Variant, base_profile, resolve

NEAR = "near-pair:sneaker-boot"  # a small protocol, with fewer ID classes than the profile's ten


def test_each_step_of_the_order_applies_and_later_steps_win() -> None:
    smoke = get_profile("smoke")
    one = resolve(smoke, "one-class:0").profile  # step 4: the one-class overrides
    assert one.pretrain.max_images == smoke.one_class.pretrain["max_images"] != smoke.pretrain.max_images
    abl = resolve(smoke, "one-class:0", scale="ablation", seed=3).profile  # step 5 wins over step 4
    assert abl.pretrain.max_images == smoke.ablation.pretrain["max_images"]
    assert abl.eval.max_test == smoke.ablation.eval["max_test"]
    assert abl.pretrain.seed == abl.finetune.seed == 3
    v = Variant("x", pretext="simmim", model="resnet10_narrow", label_smoothing=0.0, mask_ratio=0.5, mask_kind="block",
                pretrain_epochs=4, pool="cls", normalize=True)
    p = resolve(smoke, "multi-class", scale="ablation", variant=v).profile  # step 6
    assert (p.pretrain.pretext, p.pretrain.mask_ratio, p.pretrain.mask_kind, p.pretrain.epochs) == ("simmim", 0.5, "block", 4)
    assert (p.finetune.label_smoothing, p.model.name, p.eval.pool, p.eval.normalize) == (0.0, "resnet10_narrow", "cls", True)
    assert p.finetune.epochs == smoke.ablation.finetune["epochs"] and smoke.pretrain.pretext == "beit"  # nothing else moved
    same = resolve(smoke, "multi-class", scale="ablation", variant=Variant("default")).profile
    plain = resolve(smoke, "multi-class", scale="ablation").profile
    assert same.pretrain == plain.pretrain and same.finetune == plain.finetune
    # step 2's changes win over the one-class and ablation overrides that set the same field
    asked = StageOverrides(pretrain={"max_images": 100})
    assert resolve(smoke, "one-class:0", changes=asked).profile.pretrain.max_images == 100
    assert resolve(smoke, "multi-class", scale="ablation", changes=asked).profile.pretrain.max_images == 100
    # step 8: the run's seed seeds every stage, finetune_seed only the fine-tuning, after it
    seeded = resolve(smoke, NEAR, seed=5, finetune_seed=7).profile
    assert (seeded.pretrain.seed, seeded.finetune.seed, seeded.unleash.train.seed, seeded.unleash.tune.seed) == (5, 7, 5, 5)
    assert resolve(base_profile(smoke, seed=2), NEAR, finetune_seed=9).profile.pretrain.seed == 2  # the base seed stays
    # step 9: the protocol's data set the model's head and input
    near = resolve(smoke, NEAR)
    assert near.protocol.num_classes != smoke.model.num_classes
    assert (near.profile.model.num_classes, near.profile.model.img_size, near.profile.model.in_chans) == (
        near.protocol.num_classes, 28, 1)


@pytest.mark.parametrize("how", ["variant", "baseline", "change"])
def test_a_random_init_fine_tunes_without_layer_decay_however_it_was_asked_for(how: str) -> None:
    smoke = get_profile("smoke")
    assert smoke.finetune.layer_decay is not None
    ask = {"variant": {"variant": Variant("none", pretext="none"), "scale": "ablation"},
           "baseline": {"baseline": FromScratch()},
           "change": {"changes": StageOverrides(pretrain={"pretext": "none"})}}[how]
    assert resolve(smoke, "multi-class", **ask).profile.finetune.layer_decay is None
    # published weights are no random init: their decay stays
    weights = {"name": "beit_base_patch16_224.in22k_ft_in22k", "pretrained": "timm"}
    if how != "baseline":  # a from-scratch baseline has no published weights by definition
        kept = resolve(smoke, "multi-class", model=weights, **ask).profile
        assert kept.finetune.layer_decay == smoke.finetune.layer_decay
    pretrained = resolve(smoke, "multi-class", scale="ablation", variant=Variant("cls", pretext="classification")).profile
    assert pretrained.finetune.layer_decay == smoke.finetune.layer_decay


def test_a_score_read_from_the_head_scores_the_head_input() -> None:
    cpu = get_profile("cpu")  # scores the flattened tokens; ViM reads the head's input, the mean token
    assert resolve(cpu, "multi-class", detector="vim").profile.eval.pool == "mean" != cpu.eval.pool
    assert resolve(cpu, "multi-class", scale="ablation", variant=Variant("vim", detector="vim")).profile.eval.pool == "mean"
    assert resolve(cpu, "multi-class", variant=Variant("knn", detector="knn")).profile.eval.pool == cpu.eval.pool


def test_a_resolved_run_is_frozen_and_its_key_follows_its_configuration() -> None:
    run = resolve("smoke", NEAR)
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.profile.finetune.epochs = 99  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.profile.eval = run.profile.eval  # type: ignore[misc]
    assert resolve("smoke", NEAR).key == run.key
    assert resolve("smoke", NEAR, finetune_seed=1).key != run.key
    assert resolve("smoke", NEAR, detector="knn").key != run.key
    assert run.key in run.describe() and "layer decay 0.75" in run.describe()


def test_bad_requests_fail_before_any_data_is_loaded() -> None:
    with pytest.raises(ValueError, match="unknown scale 'huge'"):
        resolve("smoke", "multi-class", scale="huge")
    with pytest.raises(ValueError, match="unknown score"):
        resolve("smoke", "multi-class", detector="nope")
    with pytest.raises(ValueError, match=r"ModelConfig has no field\(s\) \['nam'\]"):
        base_profile("smoke", model={"nam": "x"})
    with pytest.raises(ValueError, match="unknown pretext"):
        resolve("smoke", "multi-class", variant=Variant("x", pretext="jigsaw"))


def _finetune_specs(root: Path) -> list[dict]:
    return [json.loads(p.read_text())["finetune"] for p in sorted((root / "finetune").glob("*/spec.json"))]


@pytest.mark.usefixtures("require_fmnist")
def test_the_ablation_code_fine_tunes_a_random_init_without_layer_decay(tmp_path: Path) -> None:
    """The production path: run_variant resolves the variant before the random-init rule (it used to
    set pretext ``none`` after the rule had run, so "no pretraining" fine-tuned with decay 0.75)."""
    from mood.experiments.ablations import run_variant

    prof = get_profile("smoke")
    run_variant(Variant("none", pretext="none"), NEAR, prof, seed=0, cache=Cache(tmp_path / "none"))
    run_variant(Variant("BEiT", pretext="beit"), NEAR, prof, seed=0, cache=Cache(tmp_path / "beit"))
    assert [s["layer_decay"] for s in _finetune_specs(tmp_path / "none")] == [None]
    assert [s["layer_decay"] for s in _finetune_specs(tmp_path / "beit")] == [prof.finetune.layer_decay]


def test_seeds_of_offsets_each_kind_from_the_base_seed() -> None:
    from dataclasses import replace

    from mood.experiments.profiles import get_profile
    from mood.experiments.resolve import seeds_of

    prof = replace(get_profile("smoke"), seeds=(0, 1, 2), ablation_seeds=(0, 4))
    assert seeds_of(prof, 10) == (10, 11, 12)
    assert seeds_of(prof, 10, "studies") == ((10, 11, 12) if prof.plan.ablation_scale == "main" else (10, 14))
    assert seeds_of(replace(prof, plan=replace(prof.plan, ablation_scale="ablation")), 10, "studies") == (10, 14)
    assert seeds_of(prof, 3, "unleash") == tuple(3 + s for s in prof.unleash.seeds)
    with pytest.raises(ValueError, match="unknown kind 'final'; valid: headline, studies, unleash"):
        seeds_of(prof, 0, "final")
