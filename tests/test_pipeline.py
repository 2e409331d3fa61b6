"""The pipeline end to end at the smoke profile: clean protocols, caching, the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mood.config import PROFILES, get_profile, override
from mood.pipeline import Cache, fingerprint, run_mood, score

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


def test_one_class_pretrains_on_the_normal_class_only(tmp_path: Path) -> None:
    run = run_mood("one-class:4", "smoke", Cache(tmp_path))
    assert (run.protocol.train.labels == 4).all()
    spec = json.loads((run.pretrained.run_dir / "spec.json").read_text())
    assert spec["data"] == fingerprint(run.protocol.train)
    assert spec["pretrain"]["max_images"] == PROFILES["smoke"].one_class["pretrain"]["max_images"]
    assert list(run.table.index) == ["other classes", "mean"]
    # every score of the book runs on the saved features
    for det in ("mahalanobis_cc", "knn", "vim", "msp", "energy"):
        id_s, ood_s = score(run.features, det, backbone=run.finetuned.backbone)
        assert id_s.shape == (len(run.features.id),) and np.isfinite(id_s.numpy()).all()


def test_pretext_none_and_no_finetune(tmp_path: Path) -> None:
    prof = get_profile("smoke")
    prof.pretrain = override(prof.pretrain, pretext="none")
    run = run_mood("near-pair:sneaker-boot", prof, Cache(tmp_path), finetune_stage=False)
    assert run.pretrained.history == [] and run.finetuned is None
    assert 0 <= run.table.loc["mean", "AUROC"] <= 100


def test_profiles_and_overrides() -> None:
    assert set(PROFILES) == {"smoke", "cpu", "gpu"}
    with pytest.raises(ValueError, match="smoke, cpu, gpu"):
        get_profile("laptop")
    with pytest.raises(ValueError, match="no field"):
        override(get_profile("smoke").pretrain, epochz=3)
    cpu = get_profile("cpu")
    oc = cpu.for_protocol("one-class:2")
    assert oc.pretrain.max_images == cpu.one_class["pretrain"]["max_images"] != cpu.pretrain.max_images
    assert oc.pretrain.batch_size == cpu.one_class["pretrain"]["batch_size"] != cpu.pretrain.batch_size
    assert cpu.for_protocol("multi-class").pretrain == cpu.pretrain


def test_cli_run_writes_a_table(tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    env = {**os.environ, "MOOD_PROGRESS": "0"}
    proc = subprocess.run([sys.executable, "-m", "mood", "run", "--protocol", "near-pair:pullover-coat",
                           "--profile", "smoke", "--artifacts", str(tmp_path / "a"), "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())
    assert [r["ood"] for r in rows] == ["Coat", "mean"] and 0 <= rows[0]["AUROC"] <= 100
    bad = subprocess.run([sys.executable, "-m", "mood", "run", "--pretext", "jigsaw", "--profile", "smoke",
                          "--artifacts", str(tmp_path / "a")], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "valid: beit" in bad.stderr
