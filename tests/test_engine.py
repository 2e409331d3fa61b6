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


def test_a_run_stopped_inside_an_epoch_resumes_exactly_and_a_shorter_wsd_run_branches_off_it(tmp_path: Path) -> None:
    """The zoo's trick: a "wsd" run of 7 steps equals the 11-step run's checkpoint at its cooldown's
    start (step 7 - round(0.2 * 7) = 6, inside the second epoch of 3 steps) followed by its own cooldown."""
    x, y = _data()
    cfg = TrainConfig(epochs=4, batch_size=32, lr=1e-3, warmup_epochs=1, seed=3, device="cpu", schedule="wsd", steps=11)
    short = TrainConfig(**{**cfg.__dict__, "steps": 7, "epochs": 3})
    alone = _beit()
    h_alone = fit(alone, x, y, short, run_dir=tmp_path / "alone")
    assert [r["epoch"] for r in h_alone] == [1, 2, 3] and len(h_alone) == 3  # 3 + 3 + 1 steps
    trunk = _beit()
    fit(trunk, x, y, cfg, run_dir=tmp_path / "trunk", stop_at_step=6)
    state = torch.load(tmp_path / "trunk" / "last.pt", weights_only=False)
    assert state["step"] == 6 and state["inside"] is None and state["epoch"] == 2  # 6 = two whole epochs
    fit(_beit(), x, y, cfg, run_dir=tmp_path / "trunk", stop_at_step=5 + 0)  # already past: nothing to do
    fit(_beit(), x, y, cfg, run_dir=tmp_path / "mid", stop_at_step=5)
    assert torch.load(tmp_path / "mid" / "last.pt", weights_only=False)["inside"] is not None  # inside epoch 2
    fit(_beit(), x, y, cfg, run_dir=tmp_path / "mid", stop_at_step=6)  # resumed inside the epoch
    for name in ("trunk", "mid"):
        branch = tmp_path / f"branch-{name}"
        branch.mkdir()
        (branch / "last.pt").write_bytes((tmp_path / name / "last.pt").read_bytes())
        branched = _beit()
        h = fit(branched, x, y, short, run_dir=branch)
        assert [r["loss"] for r in h] == [r["loss"] for r in h_alone], name
        for (k, a), (_, b) in zip(alone.state_dict().items(), branched.state_dict().items()):
            assert torch.equal(a, b), (name, k)


def test_the_wsd_schedule_warms_up_holds_then_cools_down() -> None:
    from mood.core.engine import make_scheduler

    task = Classification(create_backbone("vit_tiny_p7"))
    cfg = TrainConfig(lr=1e-3, min_lr=1e-5, warmup_epochs=1, schedule="wsd", cooldown=0.25)
    opt = make_optimizer(task, cfg)
    sched = make_scheduler(opt, cfg, spe=10, total=100)
    lrs = []
    for t in range(101):
        sched.step_update(t)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(1e-6) and lrs[5] == pytest.approx(0.5e-3, rel=0.01)
    assert set(lrs[10:76]) == {1e-3}  # stable until the last quarter
    assert all(a > b for a, b in zip(lrs[75:], lrs[76:])) and lrs[100] == pytest.approx(1e-5)
    longer = make_scheduler(make_optimizer(task, cfg), cfg, spe=10, total=400)
    for t in range(76):  # a longer run's lr equals it until this one's cooldown begins
        longer.step_update(t)
        assert longer.optimizer.param_groups[0]["lr"] == lrs[t]


def test_a_step_budget_and_a_schedule_stay_out_of_the_older_cache_keys() -> None:
    d = TrainConfig().to_dict()
    assert not {"steps", "schedule", "cooldown"} & set(d)
    assert {"steps", "schedule", "cooldown"} <= set(TrainConfig(steps=5, schedule="wsd").to_dict())
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear")


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
