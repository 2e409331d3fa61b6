"""The pipeline end to end at the smoke profile: clean protocols, caching, the command line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mood.core.cache import Cache, fingerprint
from mood.core.protocols import make_protocol
from mood.core.scores import SCORES
from mood.core.typecheck import override
from mood.experiments.config import StageOverrides
from mood.experiments.pipeline import run_mood, score
from mood.experiments.profiles import PROFILES, get_profile
from mood.experiments.resolve import resolve

pytestmark = pytest.mark.usefixtures("require_fmnist")


def test_multi_class_smoke_detects_noise_and_caches(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    run = run_mood("multi-class", "smoke", cache, ood=("gaussian", "uniform"))
    assert list(run.table.index) == ["gaussian", "uniform", "mean"]
    assert run.table.loc["uniform", "AUROC"] > 95  # a toy separable problem for a trained model
    spec = json.loads((run.pretrained.run_dir / "spec.json").read_text())
    assert spec["data"]["origin"] == "fashion-mnist/train"  # pretraining never sees a test image
    again = run_mood("multi-class", "smoke", cache, ood=("gaussian", "uniform"))
    assert again.pretrained.seconds == 0 and again.finetuned.seconds == 0  # from the cache
    # ... but the training time it cost is still reported, from the logs
    assert again.timings["pretrain_s"] == run.timings["pretrain_s"] == run.pretrained.train_seconds > 0
    assert again.timings["finetune_s"] == run.finetuned.train_seconds > 0
    np.testing.assert_allclose(again.table.values, run.table.values)


def test_pools_are_extracted_in_one_pass_and_cached_one_by_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mood.experiments.pipeline as pipeline
    from mood.experiments.pipeline import extract_protocol, extract_protocol_pools, training_sample

    cache = Cache(tmp_path)
    run = run_mood("multi-class", "smoke", cache, ood=("gaussian",))  # caches the profile's pool
    calls: list[tuple[str, ...]] = []
    real = pipeline.extract_pools
    monkeypatch.setattr(pipeline, "extract_pools",
                        lambda bb, x, pools, *a, **k: calls.append(tuple(pools)) or real(bb, x, pools, *a, **k))
    cfg = run.profile.eval
    new = ("tokens", "blocks") if cfg.pool != "tokens" else ("mean", "blocks")
    pools = extract_protocol_pools(run.finetuned, run.protocol, cfg, (cfg.pool, *new, new[0]), run.profile.format, cache,
                                   train=training_sample(run.protocol.train, run.profile.finetune))
    assert calls == [new] * 3  # fit, ID and one OOD set: only the pools not cached yet, one pass each
    assert list(pools) == [cfg.pool, *new]
    calls.clear()
    alone = extract_protocol(run.finetuned, run.protocol, override(cfg, pool=new[0]), run.profile.format, cache,
                             train=training_sample(run.protocol.train, run.profile.finetune))
    assert calls == [] and np.array_equal(alone.fit.features.numpy(), pools[new[0]].fit.features.numpy())


def test_one_class_pretrains_on_the_normal_class_only(tmp_path: Path) -> None:
    run = run_mood("one-class:4", "smoke", Cache(tmp_path))
    assert (run.protocol.train.labels == 4).all()
    spec = json.loads((run.pretrained.run_dir / "spec.json").read_text())
    assert spec["data"] == fingerprint(run.protocol.train)
    assert spec["pretrain"]["max_images"] == PROFILES["smoke"].one_class.pretrain["max_images"]
    assert list(run.table.index) == ["other classes", "mean"]
    # every score of the book runs on the saved features
    for det in ("mahalanobis_cc", "knn", "vim", "msp", "energy"):
        id_s, ood_s = score(run.features, det, backbone=run.finetuned.backbone)
        assert id_s.shape == (len(run.features.id),) and np.isfinite(id_s.numpy()).all()


def test_vim_scores_the_head_input_whatever_the_profile_pools(tmp_path: Path) -> None:
    tokens = StageOverrides(eval={"pool": "tokens"})  # as the cpu profile: 16 x 128 flattened tokens
    run = run_mood("near-pair:sneaker-boot", "smoke", Cache(tmp_path), detector="vim", changes=tokens)
    assert run.features.fit.features.shape[1] == run.finetuned.backbone.embed_dim  # the mean token, 128
    assert 0 <= run.table.loc["mean", "AUROC"] <= 100


def test_pretext_none_and_no_finetune(tmp_path: Path) -> None:
    untrained = StageOverrides(pretrain={"pretext": "none"})
    run = run_mood("near-pair:sneaker-boot", "smoke", Cache(tmp_path), finetune_stage=False, changes=untrained)
    assert run.pretrained.history == [] and run.finetuned is None
    assert 0 <= run.table.loc["mean", "AUROC"] <= 100


def test_profiles_and_overrides() -> None:
    assert set(PROFILES) == {"smoke", "cpu", "gpu", "cifar"}
    with pytest.raises(ValueError, match="smoke, cpu, gpu, cifar"):
        get_profile("laptop")
    with pytest.raises(ValueError, match="no field"):
        override(get_profile("smoke").pretrain, epochz=3)
    with pytest.raises(ValueError, match=r"PretrainConfig.epochs must be int, got '3'"):
        override(get_profile("smoke").pretrain, epochs="3")
    with pytest.raises(ValueError, match="epochs must be > 0, got 0"):
        override(get_profile("smoke").pretrain, epochs=0)
    with pytest.raises(ValueError, match=r"StageOverrides.pretrain: PretrainConfig has no field\(s\) \['max_image'\]"):
        StageOverrides(pretrain={"max_image": 10})
    with pytest.raises(ValueError, match=r"EvalConfig.n_ood must be int \| None, got 2.5"):
        StageOverrides(eval={"n_ood": 2.5})
    cli = StageOverrides.parse(["pretrain.batch_size=2048", "pretrain.compile=true", "finetune.lr=1e-3",
                                "eval.pool=mean", "eval.n_ood=None"]).apply(get_profile("gpu"))
    assert (cli.pretrain.batch_size, cli.pretrain.compile, cli.finetune.lr) == (2048, True, 1e-3)
    assert (cli.eval.pool, cli.eval.n_ood, cli.finetune.batch_size) == ("mean", None, get_profile("gpu").finetune.batch_size)
    with pytest.raises(ValueError, match=r"PretrainConfig.batch_size must be int, got 2.5"):
        StageOverrides.parse(["pretrain.batch_size=2.5"])
    with pytest.raises(ValueError, match="write stage.field=value with stage one of pretrain, finetune, eval, unleash"):
        StageOverrides.parse(["model.name=vit"])
    cpu = get_profile("cpu")
    one, multi = make_protocol("one-class:2"), make_protocol("multi-class", ood=("gaussian",), n_ood=10)
    assert (one.kind, multi.kind) == ("one-class", "multi-class")
    oc = resolve(cpu, one).profile
    assert oc.pretrain.epochs == cpu.one_class.pretrain["epochs"] != cpu.pretrain.epochs
    assert oc.finetune.label_smoothing == cpu.one_class.finetune["label_smoothing"] != cpu.finetune.label_smoothing
    assert oc.pretrain.batch_size == cpu.one_class.pretrain["batch_size"] != cpu.pretrain.batch_size
    assert resolve(cpu, multi).profile.pretrain == cpu.pretrain
    seeded = resolve(cpu, multi, finetune_seed=7).profile  # seeds share the pretraining
    assert seeded.finetune.seed == 7 and seeded.pretrain == cpu.pretrain
    with pytest.raises(ValueError, match="seeds must be distinct integers"):
        replace(cpu, seeds=(0, 0))
    with pytest.raises(ValueError, match=r"baseline_seeds must lie in 1..3"):
        replace(cpu, baseline_seeds=4)
    with pytest.raises(ValueError, match="ablation_protocols must name at least one protocol"):
        replace(cpu, ablation_protocols=())


def test_command_line_settings_hold_for_every_protocol_kind(tmp_path: Path, capsys) -> None:
    from mood.cli import _profile, build_parser, main

    cpu = get_profile("cpu")
    args = build_parser().parse_args(["run", "--profile", "cpu", "--protocol", "one-class:0", "--pretrain-epochs", "3",
                                      "--set", "finetune.batch_size=64", "--set", "eval.pool=mean"])
    for name in ("one-class:0", "multi-class"):  # the one-class overrides set both epochs and batch size
        prof = resolve(_profile(args), name).profile
        assert (prof.pretrain.epochs, prof.finetune.batch_size, prof.eval.pool) == (3, 64, "mean"), name
    prof = resolve(_profile(args), "one-class:0").profile
    assert prof.finetune.label_smoothing == cpu.one_class.finetune["label_smoothing"]  # the rest still holds
    ablation = lambda p: resolve(p, "multi-class", scale="ablation").profile.pretrain.epochs  # noqa: E731
    assert ablation(_profile(args)) == 3 != ablation(cpu)
    artifacts = tmp_path / "a"
    for argv, message in ((["--pretrain-epochs", "3", "--set", "pretrain.epochs=4"],
                           "pretrain.epochs set both by a flag and by --set"),
                          (["--set", "pretrain.batchsize=4"], r"PretrainConfig has no field\(s\) \['batchsize'\]"),
                          (["--set", "finetune.epochs=0"], "epochs must be > 0, got 0")):
        assert main(["run", "--profile", "smoke", "--artifacts", str(artifacts), *argv]) == 2
        assert re.search(message, capsys.readouterr().err), argv
    assert not artifacts.exists()  # refused before any work


def test_cli_run_writes_a_table(tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    env = {**os.environ, "MOOD_PROGRESS": "0"}
    proc = subprocess.run([sys.executable, "-m", "mood", "run", "--protocol", "near-pair:pullover-coat",
                           "--profile", "smoke", "--artifacts", str(tmp_path / "a"), "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())
    assert [r["ood"] for r in rows] == ["Coat", "mean"] and 0 <= rows[0]["AUROC"] <= 100
    assert rows[0]["ID acc"] == rows[1]["ID acc"] and 0 <= rows[0]["ID acc"] <= 100  # beside every AUROC
    bad = subprocess.run([sys.executable, "-m", "mood", "run", "--pretext", "jigsaw", "--profile", "smoke",
                          "--artifacts", str(tmp_path / "a")], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "valid: beit" in bad.stderr


def _mood(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mood", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "MOOD_PROGRESS": "0", **(env or {})})


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Cache:
    return Cache(tmp_path_factory.mktemp("artifacts"))


@pytest.mark.parametrize("name", list(SCORES))
def test_every_registered_score_scores_its_definition_and_tables_its_own_metrics(name: str, shared_cache: Cache,
                                                                                  score_by_definition) -> None:
    """One registry: every name it lists works end to end (trained once, then from the cache), its
    scores are those of its published definition recomputed in numpy / scikit-learn on the run's
    features (``score_by_definition``, tests/conftest.py), and each row of its table holds the
    metrics of those scores."""
    from sklearn.metrics import roc_auc_score, roc_curve

    from mood.experiments.pipeline import protocol_inputs

    run = run_mood("multi-class", "smoke", shared_cache, detector=name, ood=("mnist", "uniform"))
    t = run.table
    assert list(t.index) == ["mnist", "uniform", "mean (far)", "mean (noise)", "mean"]
    id_s, ood_s = run.scores[0].numpy(), {k: v.numpy() for k, v in run.scores[1].items()}
    inputs = protocol_inputs(run.protocol, run.profile.eval, run.profile.format) if SCORES[name].needs == "model" else None
    ref_id, ref_ood = score_by_definition(name, run.features, run.finetuned.backbone, inputs)
    for got, ref in ((id_s, ref_id), *((ood_s[k], ref_ood[k]) for k in ood_s)):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max(), err_msg=name)
    for k in ("mnist", "uniform"):
        y = np.r_[np.zeros(len(id_s)), np.ones(len(ood_s[k]))]  # 1 = OOD, the positive class of the AUROC
        assert t.loc[k, "AUROC"] == pytest.approx(100 * roc_auc_score(y, np.r_[id_s, ood_s[k]]), abs=1e-9)
        assert t.loc[k, "AUROC"] == pytest.approx(100 * roc_auc_score(y, np.r_[ref_id, ref_ood[k]]), abs=0.1)
        fpr, tpr, _ = roc_curve(1 - y, -np.r_[id_s, ood_s[k]], drop_intermediate=False)  # ID positive (MOOD)
        assert t.loc[k, "FPR95"] == pytest.approx(100 * fpr[np.searchsorted(tpr, 0.95)], abs=1e-9)
    np.testing.assert_allclose(t.loc["mean (far)"], t.loc["mnist"])  # one set per group here
    np.testing.assert_allclose(t.loc["mean (noise)"], t.loc["uniform"])
    np.testing.assert_allclose(t.loc["mean"], t.loc[["mnist", "uniform"]].mean())
    if SCORES[name].needs == "features":  # a distance to the ID training features puts noise far from them
        assert t.loc["uniform", "AUROC"] > 60, t


CLI_PROTOCOL = "near-pair:pullover-coat"


@pytest.fixture(scope="module")
def cli_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An artifact folder holding one smoke model of :data:`CLI_PROTOCOL`, trained once for the module:
    each detector the command line takes then only re-scores it."""
    root = tmp_path_factory.mktemp("cli-artifacts")
    run_mood(CLI_PROTOCOL, "smoke", Cache(root))
    return root


@pytest.mark.parametrize("name", list(SCORES))
def test_cli_tables_every_registered_detector_as_its_definition_scores(name: str, cli_artifacts: Path, tmp_path: Path,
                                                                     capsys, monkeypatch: pytest.MonkeyPatch,
                                                                     score_by_definition) -> None:
    """``mood run --detector NAME`` for every score of the registry: a full results table, finite, whose
    AUROC is that of the score's definition recomputed on the cached model's features, beside the ID
    accuracy of that model's logits; the one cached model serves every detector (nothing retrains)."""
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from mood.cli import main
    from mood.core.metrics import METRIC_COLUMNS
    from mood.experiments.pipeline import protocol_inputs

    monkeypatch.setenv("MOOD_PROGRESS", "0")
    out = tmp_path / "t.json"
    assert main(["run", "--detector", name, "--profile", "smoke", "--protocol", CLI_PROTOCOL,
                 "--artifacts", str(cli_artifacts), "--out", str(out)]) == 0, capsys.readouterr().err
    table = pd.DataFrame(json.loads(out.read_text())).set_index("ood")
    assert list(table.index) == ["Coat", "mean"] and {"ID acc", *METRIC_COLUMNS} <= set(table.columns)
    assert np.isfinite(table[["ID acc", *METRIC_COLUMNS]].to_numpy(float)).all()
    np.testing.assert_allclose(table.loc["mean", list(METRIC_COLUMNS)], table.loc["Coat", list(METRIC_COLUMNS)])
    assert [len(list((cli_artifacts / stage).iterdir())) for stage in ("pretrain", "finetune")] == [1, 1]
    run = run_mood(CLI_PROTOCOL, "smoke", Cache(cli_artifacts), detector=name)  # what the command scored, cached
    assert run.pretrained.seconds == 0 and run.finetuned.seconds == 0
    feats = run.features
    inputs = protocol_inputs(run.protocol, run.profile.eval, run.profile.format) if SCORES[name].needs == "model" else None
    ref_id, ref_ood = score_by_definition(name, feats, run.finetuned.backbone, inputs)
    y = np.r_[np.zeros(len(ref_id)), np.ones(len(ref_ood["Coat"]))]
    assert table.loc["Coat", "AUROC"] == pytest.approx(100 * roc_auc_score(y, np.r_[ref_id, ref_ood["Coat"]]), abs=0.1)
    accuracy = 100 * np.mean(feats.id.logits.numpy().argmax(1) == feats.id.labels.numpy())
    assert table["ID acc"].tolist() == pytest.approx([accuracy] * 2)
    assert accuracy > 100 / run.protocol.num_classes  # the trained head beats chance even at smoke scale


def test_bad_names_are_rejected_before_any_work(tmp_path: Path) -> None:
    cases = {("run", "--detector", "foo"): "unknown score 'foo'; valid: mahalanobis",
             ("run", "--protocol", "one-class:12"): "normal class K must lie in 0..9, got 12",
             ("run", "--model", "vit_giant"): "unknown model 'vit_giant'",
             ("pretrain", "--pretext", "jigsaw"): "unknown pretext task 'jigsaw'; valid: beit",
             ("pretrain", "--pretrain-epochs", "0"): "PretrainConfig.epochs must be > 0, got 0",
             ("finetune", "--finetune-epochs", "-1"): "FinetuneConfig.epochs must be > 0, got -1",
             ("run", "--device", "tpu"): "device must be 'auto', 'cpu' or 'cuda[:N]'",
             ("run", "--profile", "laptop"): "unknown profile 'laptop'; valid: smoke, cpu, gpu"}
    for args, message in cases.items():
        proc = _mood(*args, "--artifacts", str(tmp_path / "a"), env={"MOOD_PROFILE": "smoke"})
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)
        assert not (tmp_path / "a").exists(), f"{args}: work started before the error"


def test_each_command_offers_only_its_flags_and_reports_its_own_time(tmp_path: Path) -> None:
    helps = {cmd: _mood(cmd, "--help").stdout for cmd in ("pretrain", "finetune", "evaluate", "run")}
    assert "--detector" not in helps["pretrain"] and "--out" not in helps["pretrain"]
    assert "--finetune-epochs" not in helps["pretrain"] and "--finetune-epochs" not in helps["evaluate"]
    assert "--detector" in helps["run"] and "--finetune-epochs" in helps["finetune"]
    proc = _mood("pretrain", "--profile", "smoke", "--protocol", "one-class:3", "--artifacts", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # the command's own wall time, not the last epoch's (printed rounded to 0.1 s)
    assert out["command_seconds"] >= out["train_seconds"] >= out["last_epoch"]["seconds"] - 0.05 > 0
    assert out["last_epoch"]["epoch"] == out["epochs"] == 1


def test_book_command_uses_mood_profile(tmp_path: Path) -> None:
    proc = _mood("book", "run", "--only", "no-such-chapter", env={"MOOD_PROFILE": "laptop"})
    assert proc.returncode == 2 and "unknown profile 'laptop'" in proc.stderr


def test_validity_gate_follows_the_profile() -> None:
    from mood.experiments.verdicts import check

    cpu = check(get_profile("cpu"), 68.7)
    assert not cpu.ok and "No verdict" in cpu.message and "84.5%" in cpu.message
    assert check(get_profile("cpu"), 90.0).ok
    smoke = check(get_profile("smoke"), 99.0)
    assert not smoke.ok and "meaningless" in smoke.message


def test_related_scores_keep_their_identities_on_the_cli_model(cli_artifacts: Path) -> None:
    """Scores of the registry that are functions of one another agree on the command line's cached model:
    MSP = -exp(energy - MaxLogit) (softmax's max is exp(max logit - logsumexp)), energy lies within
    log(C) below MaxLogit (so they rank alike up to that gap), the entropy is at least the min-entropy
    -log(max softmax), and ODIN without its input step at T=1 is MSP on the very images featured."""
    from mood.experiments.pipeline import protocol_inputs

    cache = Cache(cli_artifacts)
    runs = {n: run_mood(CLI_PROTOCOL, "smoke", cache, detector=n) for n in ("msp", "maxlogit", "energy", "entropy")}
    run = runs["msp"]
    inputs = protocol_inputs(run.protocol, run.profile.eval, run.profile.format)
    odin = score(run.features, "odin", backbone=run.finetuned.backbone, inputs=inputs, temperature=1.0, epsilon=0.0)
    n_classes = run.features.id.logits.shape[1]

    def part(scores: tuple, which: str) -> np.ndarray:
        return (scores[0] if which == "ID" else scores[1][which]).numpy().astype(np.float64)

    for which in ("ID", "Coat"):
        msp, maxlogit, energy, entropy = (part(runs[n].scores, which) for n in ("msp", "maxlogit", "energy", "entropy"))
        np.testing.assert_allclose(msp, -np.exp(energy - maxlogit), rtol=1e-5, err_msg=which)
        assert (energy <= maxlogit + 1e-5).all() and (energy >= maxlogit - np.log(n_classes) - 1e-5).all(), which
        assert (entropy >= -np.log(-msp) - 1e-5).all(), which
        np.testing.assert_allclose(part(odin, which), msp, rtol=1e-5, err_msg=which)


def test_missed_returns_the_most_id_like_ood_images_with_their_class_and_the_heads_guess() -> None:
    """The failure cases are the OOD images with the lowest scores, over every set, as they were
    scored: the image, its class, the share of ID images scored higher, and the head's guess."""
    import pandas as pd
    import torch

    from mood.core.features import FeatureSet
    from mood.core.images import ImageSet
    from mood.core.protocols import Protocol
    from mood.experiments.pipeline import MoodRun, ProtocolFeatures
    from mood.experiments.selection import missed

    def images(name: str, n: int, labels: list[int], start: int) -> ImageSet:
        px = np.stack([np.full((4, 4, 1), start + i, np.uint8) for i in range(n)])  # pixel value = identity
        return ImageSet(name=name, images=px, labels=np.array(labels, np.int64), ids=np.arange(n), origin=name,
                        source="test", classes=("a", "b", "c", "d"))

    ident, coat, shirt = images("id", 4, [0, 1, 0, 1], 0), images("coat", 3, [2, 2, 2], 10), images("shirt", 2, [3, 3], 20)
    protocol = Protocol(name="near-split", train=ident, id_test=ident, ood_test={"coat": coat, "shirt": shirt},
                        num_classes=2, classes=("a", "b"), kind="near")
    logits = lambda guesses: torch.nn.functional.one_hot(torch.tensor(guesses), 2).float()  # noqa: E731
    feats = ProtocolFeatures(fit=None, id=None, ood={"coat": FeatureSet(torch.zeros(3, 1), logits([0, 1, 1]), torch.zeros(3)),
                                                     "shirt": FeatureSet(torch.zeros(2, 1), logits([1, 0]), torch.zeros(2))})
    scores = (torch.tensor([1.0, 2.0, 3.0, 4.0]), {"coat": torch.tensor([5.0, 2.5, 9.0]), "shirt": torch.tensor([0.5, 6.0])})
    run = MoodRun(protocol, get_profile("smoke"), None, object(), feats, pd.DataFrame(), {}, scores)
    shown, why = missed(run, n=3)
    assert list(why["set"]) == ["shirt", "coat", "coat"] and list(why["class"]) == ["d", "c", "c"]
    assert list(why["score"]) == [0.5, 2.5, 5.0]
    assert list(why["ID scored higher (%)"]) == [100.0, 50.0, 0.0]
    assert list(why["taken for"]) == ["b", "b", "a"]
    assert [int(img[0, 0, 0]) for img in shown.images] == [20, 11, 10]  # the images themselves
    assert "taken for" not in missed(replace(run, finetuned=None), n=1)[1]  # no head to ask


def test_the_validation_protocol_holds_only_training_images_the_detector_was_not_fitted_on() -> None:
    from mood.experiments.pipeline import eval_sample, training_sample
    from mood.experiments.selection import validation_protocol

    run = resolve("smoke", "multi-class")
    prof = replace(run.profile, eval=replace(run.profile.eval, max_fit=100))
    val = validation_protocol(run.protocol, prof, n=50)
    train = training_sample(run.protocol.train, prof.finetune)
    fit = eval_sample(train, 100)
    assert len(val.id_test) == 50 and set(val.id_test.ids) <= set(train.ids) and not set(val.id_test.ids) & set(fit.ids)
    assert val.id_test.origin == train.origin != run.protocol.id_test.origin  # training images, no test image
    shuffled = val.ood_test["tile-shuffled"]
    assert shuffled.images.shape == val.id_test.images.shape and (shuffled.images != val.id_test.images).any()
    assert sorted(shuffled.images.ravel()) == sorted(val.id_test.images.ravel())  # the same pixels, moved
    with pytest.raises(ValueError, match="set eval.max_fit below"):
        validation_protocol(run.protocol, replace(run.profile, eval=replace(run.profile.eval, max_fit=None)))
