"""The caches follow the code: a fixed smoke-sized training problem pins what today's training makes
(:data:`mood.core.cache.TRAINING_CANARY`) beside the cache version, and a cache version change reaches
both the artifact folders and the run keys."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from mood.core import cache as cache_mod
from mood.core.cache import CACHE_VERSION, TRAINING_CANARY, Cache
from mood.core.images import ImageSet
from mood.experiments.pipeline import finetune, pretrain
from mood.experiments.resolve import resolve


def _problem() -> ImageSet:
    """128 28x28 images of 10 classes, each class a brightness band plus fixed noise."""
    rng = np.random.default_rng(0)
    labels = np.arange(128) % 10
    images = (rng.integers(0, 60, (128, 28, 28, 1)) + labels[:, None, None, None] * 19).astype(np.uint8)
    return ImageSet("canary", images, labels.astype(np.int64), np.arange(128), "canary", "tests")


def _train(root) -> dict[str, float]:
    prof = resolve("smoke", "multi-class").profile
    data = _problem()
    pre_cfg = replace(prof.pretrain, max_images=128)
    pre = pretrain(data, prof.model, pre_cfg, prof.format, Cache(root))
    fine = finetune(pre, data, replace(prof.finetune, max_images=128), 10, prof.format, Cache(root))
    weights = sum(float(v.double().sum()) for v in fine.backbone.state_dict().values() if v.is_floating_point())
    return {"pretrain loss": pre.history[-1]["loss"], "finetune loss": fine.history[-1]["loss"], "weight sum": weights}


def test_training_makes_what_the_cache_version_pins(tmp_path) -> None:
    got = _train(tmp_path)
    changed = {k: v for k, v in got.items() if abs(v - TRAINING_CANARY[k]) > 1e-4 * max(1.0, abs(v))}
    assert not changed, (f"training changed what it makes ({got}, pinned {TRAINING_CANARY}): bump CACHE_VERSION "
                         f"(now {CACHE_VERSION}) in mood/core/cache.py and pin TRAINING_CANARY = {got}")


def test_a_cache_written_before_a_training_change_is_not_reused_after_it(tmp_path, monkeypatch) -> None:
    data = _problem()
    prof = resolve("smoke", "multi-class").profile
    cfg = replace(prof.pretrain, max_images=64, epochs=1)
    first = pretrain(data, prof.model, cfg, prof.format, Cache(tmp_path))
    assert first.seconds > 0 and pretrain(data, prof.model, cfg, prof.format, Cache(tmp_path)).seconds == 0  # served
    key = resolve("smoke", "multi-class").key
    monkeypatch.setattr(cache_mod, "CACHE_VERSION", CACHE_VERSION + 1)  # read by Cache.key and Run.key alike
    again = pretrain(data, prof.model, cfg, prof.format, Cache(tmp_path))
    assert again.seconds > 0 and again.run_dir != first.run_dir  # trained anew, in another folder
    assert resolve("smoke", "multi-class").key != key
    torch.testing.assert_close(again.backbone.state_dict(), first.backbone.state_dict())  # same code here: same model
