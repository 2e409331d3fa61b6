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
from mood.experiments.config import PROFILES, StageOverrides, get_profile, override
from mood.experiments.pipeline import run_mood, score
from mood.core.protocols import make_protocol
from mood.core.scores import SCORES

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
    monkeypatch.setattr(pipeline, "extract_pools", lambda bb, x, pools, *a, **k: calls.append(tuple(pools)) or real(bb, x, pools, *a, **k))
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
    prof = get_profile("smoke")
    prof.eval = override(prof.eval, pool="tokens")  # as the cpu profile: 16 x 128 flattened tokens
    run = run_mood("near-pair:sneaker-boot", prof, Cache(tmp_path), detector="vim")
    assert run.features.fit.features.shape[1] == run.finetuned.backbone.embed_dim  # the mean token, 128
    assert 0 <= run.table.loc["mean", "AUROC"] <= 100


def test_pretext_none_and_no_finetune(tmp_path: Path) -> None:
    prof = get_profile("smoke")
    prof.pretrain = override(prof.pretrain, pretext="none")
    run = run_mood("near-pair:sneaker-boot", prof, Cache(tmp_path), finetune_stage=False)
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
    with pytest.raises(ValueError, match="write stage.field=value with stage one of pretrain, finetune, eval"):
        StageOverrides.parse(["model.name=vit"])
    cpu = get_profile("cpu")
    one, multi = make_protocol("one-class:2"), make_protocol("multi-class", ood=("gaussian",), n_ood=10)
    assert (one.kind, multi.kind) == ("one-class", "multi-class")
    oc = cpu.for_protocol(one)
    assert oc.pretrain.epochs == cpu.one_class.pretrain["epochs"] != cpu.pretrain.epochs
    assert oc.finetune.label_smoothing == cpu.one_class.finetune["label_smoothing"] != cpu.finetune.label_smoothing
    assert oc.pretrain.batch_size == cpu.one_class.pretrain["batch_size"] != cpu.pretrain.batch_size
    assert cpu.for_protocol(multi).pretrain == cpu.pretrain
    seeded = cpu.with_finetune_seed(7)  # seeds share the pretraining
    assert seeded.finetune.seed == 7 and seeded.pretrain == cpu.pretrain
    with pytest.raises(ValueError, match="seeds must be distinct integers"):
        replace(cpu, seeds=(0, 0))
    with pytest.raises(ValueError, match=r"baseline_seeds must lie in 1..3"):
        replace(cpu, baseline_seeds=4)
    with pytest.raises(ValueError, match="ablation_protocols must name at least one protocol"):
        replace(cpu, ablation_protocols=())


def test_command_line_settings_hold_for_every_protocol_kind(tmp_path: Path, capsys) -> None:
    from mood.cli import _profile, build_parser, main
    from mood.experiments.pipeline import setup

    cpu = get_profile("cpu")
    args = build_parser().parse_args(["run", "--profile", "cpu", "--protocol", "one-class:0", "--pretrain-epochs", "3",
                                      "--set", "finetune.batch_size=64", "--set", "eval.pool=mean"])
    for name in ("one-class:0", "multi-class"):  # the one-class overrides set both epochs and batch size
        _, prof = setup(name, _profile(args))
        assert (prof.pretrain.epochs, prof.finetune.batch_size, prof.eval.pool) == (3, 64, "mean"), name
    _, prof = setup("one-class:0", _profile(args))
    assert prof.finetune.label_smoothing == cpu.one_class.finetune["label_smoothing"]  # the rest still holds
    assert _profile(args).at_ablation_scale().pretrain.epochs == 3 != cpu.at_ablation_scale().pretrain.epochs
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
def test_every_registered_score_runs_through_run(name: str, shared_cache: Cache) -> None:
    """One registry: every name it lists works end to end (trained once, then from the cache)."""
    run = run_mood("multi-class", "smoke", shared_cache, detector=name, ood=("mnist", "uniform"))
    assert list(run.table.index) == ["mnist", "uniform", "mean (far)", "mean (noise)", "mean"]
    assert run.table[["AUROC", "FPR95"]].apply(lambda c: c.between(0, 100)).all().all()


def test_cli_takes_every_registered_detector(tmp_path: Path) -> None:
    proc = _mood("run", "--detector", "odin", "--profile", "smoke", "--protocol", "near-pair:pullover-coat",
                 "--artifacts", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "Coat" in proc.stdout and "unknown" not in proc.stderr


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
