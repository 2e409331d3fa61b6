"""The training loop: resume equals an uninterrupted run, logs and checkpoints, failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mood.core.engine import TrainConfig, fit, make_optimizer
from mood.core.models import create_backbone
from mood.core.pretext import Classification, build_pretext
from mood.core.tokenizer import PatchTokenizer


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(96, 1, 28, 28, generator=g), torch.randint(0, 10, (96,), generator=g)


def _beit() -> torch.nn.Module:
    torch.manual_seed(0)
    x, _ = _data()
    return build_pretext("beit", create_backbone("vit_tiny_p4"), tokenizer=PatchTokenizer(4, 1, 16).fit(x, iters=3))


def test_resume_matches_uninterrupted(tmp_path: Path) -> None:
    x, y = _data()
    cfg = TrainConfig(epochs=3, batch_size=32, lr=1e-3, warmup_epochs=1, seed=3, device="cpu")
    straight = _beit()
    h1 = fit(straight, x, y, cfg, run_dir=tmp_path / "a")
    interrupted = _beit()
    fit(interrupted, x, y, cfg, run_dir=tmp_path / "b", stop_after=1)
    assert json.loads((tmp_path / "b" / "log.jsonl").read_text().splitlines()[-1])["epoch"] == 1
    resumed = _beit()  # a fresh process would start from a fresh model
    h2 = fit(resumed, x, y, cfg, run_dir=tmp_path / "b")
    assert [r["loss"] for r in h1] == [r["loss"] for r in h2]
    for (k, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k
    assert len((tmp_path / "b" / "log.jsonl").read_text().splitlines()) == 3
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["last.pt", "log.jsonl"]
    assert fit(resumed, x, y, cfg, run_dir=tmp_path / "b") == h2  # finished: nothing more to do


def test_layer_decay_scales_lr_by_depth() -> None:
    task = Classification(create_backbone("vit_tiny_p4"))
    opt = make_optimizer(task, TrainConfig(layer_decay=0.5))
    scales = sorted({g["lr_scale"] for g in opt.param_groups})
    assert scales[-1] == 1.0 and scales[0] == pytest.approx(0.5 ** 5)  # embed, 4 blocks, head
    n_params = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n_params == sum(p.numel() for p in task.parameters())


class _Diverging(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def loss(self, x, y, rng):
        return self.w * float("nan"), {}


def test_nan_loss_is_an_error() -> None:
    x, y = _data()
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        fit(_Diverging(), x, y, TrainConfig(epochs=1, batch_size=32, device="cpu"))


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="no training images"):
        fit(_Diverging(), torch.zeros(0, 1, 28, 28), None, TrainConfig())
    with pytest.raises(ValueError, match="labels"):
        fit(_Diverging(), torch.zeros(4, 1, 28, 28), torch.zeros(3, dtype=torch.long), TrainConfig())


def test_compiling_is_not_part_of_a_stage_cache_key() -> None:
    assert TrainConfig(compile=True).to_dict() == TrainConfig().to_dict()
    assert "compile" not in TrainConfig().to_dict()
