"""Unleashing Mask: the floored loss and its gradient, the floor estimate, weight masks, UM and UMAP."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from mood.core.cache import Cache
from mood.core.data import from_array
from mood.core.engine import TrainConfig
from mood.core.masks import add_masks, bake_masks, estimate_floor, maskable_layers
from mood.core.models import create_backbone
from mood.core.pretext import Classification, Rng, loss_floor
from mood.experiments.config import UnleashConfig
from mood.experiments.unleash import stage_curve, train_stages, tune
from mood.experiments.unleash_eval import EvalSets
from mood.experiments.unleash_study import effect, summarize


def _toy(n: int = 96, seed: int = 0):
    """Ten classes of 28 px images: class k is a bright square at position k, plus noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    img = rng.integers(0, 60, (n, 28, 28), dtype=np.uint8)
    for i, k in enumerate(y):
        r, c = 2 + 8 * (k // 4), 2 + 6 * (k % 4)
        img[i, r:r + 6, c:c + 5] = 250
    return from_array(f"toy{seed}", img, y)


def _cfg(**kw) -> UnleashConfig:
    fast = dict(batch_size=32, device="cpu", warmup_epochs=0.0)
    return UnleashConfig(train=TrainConfig(epochs=3, lr=2e-3, **fast), tune=TrainConfig(epochs=2, lr=1e-3, **fast),
                         augment=False, **kw)


# -- the loss ---------------------------------------------------------------------------------

@pytest.mark.parametrize("floor_above", [True, False])
def test_loss_floor_value_and_gradient_sign(floor_above: bool) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 10, generator=g, requires_grad=True)
    y = torch.randint(0, 10, (16,), generator=g)
    ce = F.cross_entropy(logits, y)
    b = ce.item() + (0.5 if floor_above else -0.5)
    loss = loss_floor(F.cross_entropy(logits, y), b)  # UM's objective
    grad_um, = torch.autograd.grad(loss, logits)
    grad_ce, = torch.autograd.grad(F.cross_entropy(logits, y), logits)
    if floor_above:  # below the floor: mirrored, so a descent step raises the CE
        assert loss.item() == pytest.approx(2 * b - ce.item())
        assert torch.allclose(grad_um, -grad_ce)
    else:  # above the floor: plain CE
        assert loss.item() == pytest.approx(ce.item())
        assert torch.allclose(grad_um, grad_ce)
    assert loss.item() >= b - 1e-6


def test_classification_applies_the_floor_only_when_asked() -> None:
    torch.manual_seed(0)
    net = create_backbone("vit_tiny_p4", drop_path=0.0).eval()
    x, y = torch.randn(8, 1, 28, 28), torch.arange(8) % 10
    plain, m_plain = Classification(net, augment=False).loss(x, y, Rng.seeded(0))
    floored, m = Classification(net, augment=False, floor=plain.item() + 1.0).loss(x, y, Rng.seeded(0))
    assert "ce" not in m_plain and m["ce"].item() == pytest.approx(plain.item())
    assert floored.item() == pytest.approx(plain.item() + 2.0)


# -- masks ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["vit_tiny_p4", "resnet10_narrow"])
@pytest.mark.parametrize("init", ["random", "magnitude"])
def test_masks_keep_the_asked_fraction_of_every_layer(name: str, init: str) -> None:
    torch.manual_seed(0)
    net = create_backbone(name)
    before = {id(m): m.weight.detach().clone() for m in maskable_layers(net)}
    masks = add_masks(net, keep=0.8, init=init, seed=1)
    assert len(masks) == len(before) > 3
    for layer, mask in zip(maskable_layers(net), masks):
        kept = int(mask.mask().sum())
        assert kept == max(1, round(0.8 * layer.weight.numel()))
        w0 = layer.parametrizations.weight.original
        assert torch.equal(layer.weight, w0 * mask.mask())  # the forward sees masked weights
    if init == "magnitude":  # the largest weights are the ones kept
        layer, mask = maskable_layers(net)[1], masks[1]
        w, m = layer.parametrizations.weight.original.abs(), mask.mask().bool()
        assert w[m].min() >= w[~m].max()
    bake_masks(net)
    layers = maskable_layers(net)
    kept = sum(int((m.weight != 0).sum()) for m in layers) / sum(m.weight.numel() for m in layers)
    assert kept == pytest.approx(0.8, abs=0.01)
    assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in maskable_layers(net))


def test_random_masks_differ_by_seed_and_reject_bad_keep() -> None:
    net = create_backbone("resnet10_narrow")
    a = add_masks(copy.deepcopy(net), 0.5, "random", seed=0)[0].mask()
    b = add_masks(copy.deepcopy(net), 0.5, "random", seed=1)[0].mask()
    assert not torch.equal(a, b)
    with pytest.raises(ValueError, match=r"keep must lie in \(0, 1\]"):
        add_masks(net, 1.5)
    with pytest.raises(ValueError, match="unknown mask init"):
        add_masks(net, 0.5, init="lottery")


def test_estimate_floor() -> None:
    torch.manual_seed(0)
    net = create_backbone("resnet10_narrow").eval()
    x, y = torch.randn(40, 1, 28, 28), torch.arange(40) % 10
    state = copy.deepcopy(net.state_dict())
    with torch.no_grad():
        plain = F.cross_entropy(net(x), y).item()
    assert estimate_floor(net, x, y, keep=1.0, batch_size=16) == pytest.approx(plain, rel=1e-5)
    b1, b2 = estimate_floor(net, x, y, keep=0.9, seed=3), estimate_floor(net, x, y, keep=0.9, seed=3)
    assert b1 == b2 and b1 != pytest.approx(plain)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())  # the model is left as it was


# -- the stages -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stages(tmp_path_factory: pytest.TempPathFactory):
    from mood.core.models import ModelConfig

    cache = Cache(tmp_path_factory.mktemp("cache"))
    cfg = _cfg()
    data = _toy()
    return train_stages(data, ModelConfig("vit_tiny_p4", drop_path=0.0), cfg, cache=cache), data, cfg, cache


def test_every_epoch_is_kept_and_the_curve_has_a_row_each(stages, tmp_path: Path) -> None:
    st, data, cfg, cache = stages
    assert [p.exists() for p in st.epochs] == [True] * cfg.train.epochs
    assert len(st.final.history) == cfg.train.epochs and st.final.history[-1]["loss"] < st.final.history[0]["loss"]
    last = torch.load(st.epochs[-1], weights_only=True)
    assert all(torch.equal(v, st.final.backbone.state_dict()[k]) for k, v in last.items())
    from mood.core.images import to_tensor

    ood = torch.randn(30, 1, 28, 28)
    sets = EvalSets(to_tensor(data), torch.from_numpy(data.labels), {"noise": ood}, to_tensor(data))
    curve = stage_curve(st, sets, cache_file=tmp_path / "curve.csv")
    assert list(curve["epoch"]) == [1, 2, 3]
    for col in ("train loss", "ID acc", "msp AUROC", "energy FPR95", "odin AUROC"):
        assert curve[col].between(0, 100).all() if col != "train loss" else (curve[col] > 0).all(), col
    assert stage_curve(st, sets, cache_file=tmp_path / "curve.csv").equals(pd.read_csv(tmp_path / "curve.csv"))
    again = train_stages(data, st.final.backbone.cfg, cfg, cache=cache)  # cached: nothing trains
    assert again.final.seconds == 0.0 and again.final.history == st.final.history


def test_um_keeps_the_loss_above_the_floor(stages) -> None:
    st, data, cfg, cache = stages
    floor = st.final.history[-1]["loss"] * 2.0  # a floor above where plain CE has already got
    um = tune(st.final, data, "um", floor, cfg, cache=cache)
    assert all(r["loss"] >= floor for r in um.history)
    assert all(r["ce"] < r["loss"] for r in um.history)  # under the floor: the reported loss is the mirror
    start = st.final.backbone.state_dict()
    assert any(not torch.equal(v, start[k]) for k, v in um.backbone.state_dict().items())
    ce = tune(st.final, data, "ce", None, cfg, cache=cache)
    assert "ce" not in ce.history[0] and ce.run_dir != um.run_dir


def test_umap_learns_only_a_mask(stages) -> None:
    st, data, cfg, cache = stages
    cfg = _cfg(umap_keep=0.8, umap_init="magnitude", umap_lr=0.05)
    out = tune(st.final, data, "umap", st.final.history[-1]["loss"], cfg, cache=cache)
    start, end = st.final.backbone, out.backbone
    masked = {name for name, m in start.named_modules() if m in maskable_layers(start)}
    changed_mask = False
    after = dict(end.named_parameters())
    assert sorted(after) == sorted(n for n, _ in start.named_parameters())
    for name, a in start.named_parameters():
        b = after[name]
        layer = name.rsplit(".", 1)[0]
        if layer in masked and name.endswith("weight"):
            keep = b != 0
            assert torch.equal(b[keep], a[keep]), name  # surviving weights are untouched
            assert keep.float().mean().item() == pytest.approx(0.8, abs=0.01), name
            magnitude = a.abs() >= a.abs().flatten().kthvalue(a.numel() - keep.sum()).values
            changed_mask |= not torch.equal(keep, magnitude)
        else:
            assert torch.equal(a, b), name  # biases and norms are frozen
    assert changed_mask, "the scores trained, so some layer's mask left magnitude pruning"
    assert all(p.requires_grad for p in end.parameters())


def test_tune_bad_input(stages) -> None:
    st, data, cfg, cache = stages
    with pytest.raises(ValueError, match="unknown method"):
        tune(st.final, data, "prune", 0.1, cfg, cache=cache)
    with pytest.raises(ValueError, match="needs a finite, non-negative loss floor"):
        tune(st.final, data, "um", None, cfg, cache=cache)


# -- tables -----------------------------------------------------------------------------------

def _runs() -> pd.DataFrame:
    rows = []
    for seed, (base, um) in enumerate([(80.0, 84.0), (82.0, 85.0), (81.0, 83.0)]):
        for method, auroc in (("baseline (last epoch)", base), ("+UM", um)):
            rows.append({"condition": "clean", "model": "m", "seed": seed, "method": method, "score": "energy",
                         "AUROC": auroc, "FPR95": 100 - auroc, "ID acc": 90.0})
    return pd.DataFrame(rows)


def test_effect_is_the_paired_difference() -> None:
    eff = effect(_runs()).loc[("clean", "m", "energy")]
    assert eff["Δ"] == pytest.approx(3.0) and eff["std"] == pytest.approx(1.0) and eff["seeds"] == 3
    # per seed (4, 3, 2): t = 3 / (1 / sqrt 3) = 5.196 on 2 df, p = 0.035; 95% CI 3 -+ 4.303 / sqrt 3
    assert bool(eff["significant"]) and eff["p"] == pytest.approx(0.0351, abs=1e-3)
    assert eff["ci_lo"] == pytest.approx(3 - 4.3027 / 3 ** 0.5, abs=1e-3)
    table = summarize(_runs())
    assert table.loc[("clean", "m", "+UM"), ("energy", "AUROC")] == "84.00 ± 1.00"


def test_effect_against_another_method_and_bad_names() -> None:
    runs = _runs()
    flipped = effect(runs, method="baseline (last epoch)", against="+UM").loc[("clean", "m", "energy"), "Δ"]
    assert flipped == pytest.approx(-3.0)
    both = pd.concat({"auroc": effect(runs), "fpr": effect(runs, metric="FPR95")})
    assert both.loc[("fpr", "clean", "m", "energy"), "Δ"] == pytest.approx(-3.0) and not both.isna().any().any()
    with pytest.raises(ValueError, match="methods present"):
        effect(runs, method="+UMAP")


def test_cli_unleash_refuses_a_bad_floor_before_training(tmp_path: Path, capsys) -> None:
    from mood.cli import main

    for floor in ("-0.5", "nan"):
        assert main(["unleash", "--profile", "smoke", "--floor", floor, "--artifacts", str(tmp_path / "a")]) == 2
        assert "UnleashConfig.floor: the loss floor b must be a finite number >= 0" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


@pytest.mark.slow
@pytest.mark.usefixtures("require_fmnist")
def test_cli_unleash_tables_agree_with_its_curve_its_selections_and_its_floor(tmp_path: Path) -> None:
    """``mood unleash`` on Fashion-MNIST: training lowers the loss epoch by epoch; the rows of the
    epoch-picked models are the curve's rows at the epochs the validation data pick (lowest ID val
    loss, highest val AUROC); tuning with a floor below every loss is plain CE, bit for bit; and the
    UM row chosen on validation OOD is the sweep's best by that validation AUROC."""
    import os
    import subprocess
    import sys

    out = tmp_path / "um"
    proc = subprocess.run([sys.executable, "-m", "mood", "unleash", "--profile", "smoke", "--model", "cnn_dense",
                           "--seed", "0", "--noise", "0", "--noise", "0.2", "--floor", "0.5",
                           "--artifacts", str(tmp_path / "a"), "--out", str(out)],
                          capture_output=True, text=True, env={**os.environ, "MOOD_PROGRESS": "0"}, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "UM floor b 0.500 vs last-epoch train CE" in proc.stdout and "Paper: Energy + UM: +1.66 AUROC" in proc.stdout
    assert "cnn_dense, clean: final train accuracy" in proc.stdout and "cnn_dense, noise 20%" in proc.stdout
    runs = pd.read_csv(out / "unleash_runs.csv")
    methods = ["baseline (last epoch)", "early stopping (ID val loss)", "epoch chosen on val OOD", "+CE (control)",
               "+UM (0.5b)", "+UM", "+UM (2b)", "+UMAP", "+UM (b chosen on val OOD)"]
    assert list(dict.fromkeys(runs["method"])) == methods
    scores = ["energy", "mahalanobis", "msp", "odin"]
    assert sorted(runs["score"].unique()) == scores and len(runs) == 2 * len(methods) * len(scores)
    curve = pd.read_csv(out / "unleash_curve.csv")
    assert list(curve["epoch"]) == [1, 2, 1, 2] and {"val loss", "energy val AUROC"} <= set(curve.columns)
    floors = pd.read_csv(out / "unleash_floors.csv").set_index("condition")
    metrics = ["AUROC", "FPR95", "ID acc", "val AUROC"]
    row = runs.set_index(["condition", "method", "score"]).sort_index()
    for cond, c in curve.groupby("condition"):
        c = c.set_index("epoch")
        assert c.loc[2, "train loss"] < c.loc[1, "train loss"], cond  # a second epoch lowers the training loss
        assert floors.loc[cond, "last-epoch train CE"] == pytest.approx(c.loc[2, "train loss"])
        picked = {"baseline (last epoch)": 2, "early stopping (ID val loss)": int(c["val loss"].idxmin()),
                  "epoch chosen on val OOD": int(c["energy val AUROC"].idxmax())}  # energy: the selection score
        assert (picked["early stopping (ID val loss)"], picked["epoch chosen on val OOD"]) == \
            (floors.loc[cond, "early-stopping epoch"], floors.loc[cond, "val-OOD epoch"])
        for method, epoch in picked.items():  # the table evaluates the very model the curve did at that epoch
            for score in ("msp", "energy"):
                got = row.loc[(cond, method, score)]
                assert [got["AUROC"], got["FPR95"], got["ID acc"], got["val AUROC"]] == pytest.approx(
                    [c.loc[epoch, f"{score} AUROC"], c.loc[epoch, f"{score} FPR95"], c.loc[epoch, "ID acc"],
                     c.loc[epoch, f"{score} val AUROC"]]), (cond, method, score)
        # |CE - b| + b is CE while CE > b: with b and b/2 far below the training loss, UM trains as +CE
        assert floors.loc[cond, "floor b"] == 0.5 and floors.loc[cond, "last-epoch train CE"] > 2 * 0.5
        for um in ("+UM (0.5b)", "+UM"):
            pd.testing.assert_frame_equal(row.loc[(cond, um)], row.loc[(cond, "+CE (control)")])
        sweep = runs[(runs["condition"] == cond) & runs["method"].isin(["+UM (0.5b)", "+UM", "+UM (2b)"])]
        best = sweep[sweep["score"] == "energy"].set_index("method")["val AUROC"].idxmax()
        pd.testing.assert_frame_equal(row.loc[(cond, "+UM (b chosen on val OOD)")], row.loc[(cond, best)])
    assert np.isfinite(runs[metrics].to_numpy()).all()
    assert list(floors.index) == ["clean", "noise 20%"]
    assert list(floors["mislabelled share"]) == pytest.approx([0.0, 0.2], abs=0.005)  # round(0.2 * 192) of 192
    for table in ("stages", "effect"):
        assert (out / f"unleash_{table}.csv").exists() and (out / f"unleash_{table}.json").exists()
    stages = pd.read_csv(out / "unleash_stages.csv")
    assert set(stages["score"]) == {"msp", "energy"} and (stages["gap"] >= 0).all()


def test_study_tables_and_verdict_from_runs() -> None:
    """The chapter's logic, in the library: best-vs-last epoch per seed, paired effects, the verdict."""
    from mood.experiments.unleash_study import UnleashStudy, stage_table, study_effects

    curve = pd.DataFrame([{"condition": "clean", "model": "m", "seed": s, "epoch": e, "energy AUROC": a,
                           "energy val AUROC": v}
                          for s in (0, 1) for e, a, v in zip((1, 2, 3), (70.0 + s, 80.0 + s, 75.0), (60.0, 61.0, 62.0))])
    stages = stage_table(curve, ("energy",))
    assert list(stages["best epoch"]) == [2, 2] and list(stages["gap"]) == [5.0, 6.0]
    assert list(stages["val epoch"]) == [3, 3] and list(stages["val gap"]) == [0.0, 0.0]  # validation picks the last
    # every score's validation pick is the epoch Energy's validation AUROC picks (as in the method tables)
    both = curve.assign(**{"msp AUROC": [50.0, 60.0, 55.0] * 2, "msp val AUROC": [90.0, 10.0, 10.0] * 2})
    picked = stage_table(both, ("energy", "msp"))
    assert list(picked.loc[picked["score"] == "msp", "val epoch"]) == [3, 3]
    assert list(picked.loc[picked["score"] == "msp", "val gap"]) == [0.0, 0.0]
    rows = []
    for seed in (0, 1, 2):
        for method, auroc in (("baseline (last epoch)", 80.0 + seed), ("+CE (control)", 80.5 + seed),
                              ("+UM", 82.0 + seed), ("+UMAP", 79.0 + seed)):
            rows.append({"condition": "clean", "model": "m", "seed": seed, "method": method, "score": "energy",
                         "AUROC": auroc, "FPR95": 100 - auroc, "ID acc": 90.0})
    runs = pd.DataFrame(rows)
    effects = study_effects(runs)
    assert effects.loc[("UM vs last", "clean", "m", "energy"), "Δ"] == pytest.approx(2.0)
    assert effects.loc[("UM vs CE control", "clean", "m", "energy"), "Δ"] == pytest.approx(1.5)
    assert effects.loc[("UMAP vs last", "clean", "m", "energy"), "Δ"] == pytest.approx(-1.0)
    assert "early stopping vs last" not in effects.index.get_level_values("comparison")  # not run: not compared
    floors = pd.DataFrame([{"condition": "clean", "model": "m", "seed": s, "floor b": 0.3, "last-epoch train CE": 0.1,
                            "last-epoch train acc": 99.5} for s in (0, 1, 2)])
    study = UnleashStudy(curve, runs, floors, pd.DataFrame(), ("energy",), pd.DataFrame())
    pd.testing.assert_frame_equal(study.stages, stages)
    pd.testing.assert_frame_equal(study.effects, effects)
    text = study.verdict()
    assert "m, clean: final train accuracy 99.5%; oracle best Energy epoch 2.0 of 3, 5.50 AUROC above the last" in text
    assert ("UM at the estimated b minus the last epoch: +2.00 Energy AUROC, 95% CI [+2.00, +2.00], p = 0.000, "
            "Holm p = 0.000 (paired t-test) — significant." in text)
    # the declared family: UM vs last and UM vs the control on Energy; UMAP is described, not called
    assert list(effects.loc[effects["family"] == "primary"].index.get_level_values("comparison")) == [
        "UM vs last", "UM vs CE control"]
    assert effects.loc[("UMAP vs last", "clean", "m", "energy"), "p (Holm)"] != effects.loc[
        ("UMAP vs last", "clean", "m", "energy"), "p (Holm)"]  # NaN: not in the family
    assert "UMAP minus the last epoch: -1.00 Energy AUROC" in text and "(secondary: described, not called)" in text
    assert "UM minus the plain-CE control: +1.50" in text
    assert "above the final loss, so UM trains the loss back up" in text


def test_unleash_data_holds_out_validation_and_noises_labels() -> None:
    from mood.core.protocols import Protocol
    from mood.experiments.unleash_eval import unleash_data

    data = _toy(400)
    proto = Protocol(name="toy", kind="multi-class", train=data, id_test=_toy(50, seed=1), ood_test={},
                     num_classes=10, classes=tuple(str(k) for k in range(10)))
    cfg = _cfg(val_id=40, val_ood=30)
    cfg = replace(cfg, train=replace(cfg.train, max_images=200))
    d = unleash_data(proto, cfg, noise=0.2, seed=3)
    assert (len(d.train), len(d.val), len(d.val_ood)) == (200, 40, 30)
    ids = [set(d.train.ids), set(d.val.ids), {int(i) for i in d.val_ood.ids}]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])  # disjoint
    assert d.mislabelled.mean() == pytest.approx(0.2)
    assert (d.clean_labels == data.labels[np.searchsorted(data.ids, d.train.ids)]).all()
    assert (d.val.labels != data.labels[np.searchsorted(data.ids, d.val.ids)]).mean() == pytest.approx(0.2, abs=0.03)
    assert (d.val_ood.labels == -1).all() and "noise 0.2" in d.train.name
    clean = unleash_data(proto, cfg, noise=0.0, seed=3)
    assert not clean.mislabelled.any() and np.array_equal(clean.train.ids, d.train.ids)  # same images, clean labels
    with pytest.raises(ValueError, match="leaves no training image"):
        unleash_data(proto, _cfg(val_id=300, val_ood=100), seed=0)


def test_beside_mood_picks_each_conditions_method_on_validation_not_on_test() -> None:
    from mood.experiments.unleash_study import beside_mood

    rows = []
    for seed in (0, 1):
        for cond in ("clean", "noise 20%"):
            # "+UM" wins on the test sets, the picked epoch on the validation set: the validation one is shown
            for method, test, val in (("+UM", 99.0, 80.0), ("epoch chosen on val OOD", 90.0 + seed, 95.0)):
                rows.append({"condition": cond, "model": "m", "seed": seed, "method": method, "score": "energy",
                             "AUROC": test, "FPR95": 10.0, "ID acc": 85.0, "val AUROC": val})
                rows.append({"condition": cond, "model": "m", "seed": seed, "method": method, "score": "msp",
                             "AUROC": 50.0, "FPR95": 90.0, "ID acc": 85.0, "val AUROC": 99.0})
    mood = pd.DataFrame({"mean": [98.0, 99.0], "ID acc": [85.0, 86.0]})
    table = beside_mood(pd.DataFrame(rows), mood)
    assert list(table.index) == ["MOOD (chapter 6): Mahalanobis, MIM-pretrained and fine-tuned ViT",
                                 "clean: epoch chosen on val OOD (m, energy)", "noise 20%: epoch chosen on val OOD (m, energy)"]
    assert table.iloc[0]["AUROC"] == 98.5 and table.iloc[0]["ID acc"] == 85.5
    assert table.iloc[1]["AUROC"] == 90.5 and table.iloc[1]["seeds"] == 2
    with pytest.raises(ValueError, match="no 'odin' rows"):
        beside_mood(pd.DataFrame(rows), mood, score="odin")
