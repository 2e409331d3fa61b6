"""Distributed training: torchrun with 2 CPU processes (gloo) against one process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mood.core.distributed import World, gather_rows, shard, world

HERE = Path(__file__).parent
# Two processes sum each gradient in another order than one: weights agree to float32 rounding,
# compounded over 12 AdamW steps.
ATOL = 1e-4


def torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MOOD_PROGRESS": "0"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=HERE.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def launch(out: Path, run_dir: Path | None = None, stop_after: int | None = None) -> dict:
    args = [str(HERE / "ddp_fit.py"), "--out", str(out)]
    args += ["--run-dir", str(run_dir)] if run_dir else []
    args += ["--stop-after", str(stop_after)] if stop_after else []
    torchrun(*args)
    return torch.load(out, weights_only=False)


def max_diff(a: dict, b: dict) -> float:
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def test_shards_cover_every_item_once_in_rank_order() -> None:
    for n in (0, 1, 7, 16):
        parts = [range(n)[shard(n, World(r, 3))] for r in range(3)]
        assert [i for p in parts for i in p] == list(range(n)) and max(map(len, parts)) - min(map(len, parts)) <= 1
    assert world() == World() and gather_rows(torch.ones(2, 3)).shape == (2, 3)  # no process group: one process


def test_a_global_batch_that_does_not_split_is_refused_before_training(monkeypatch) -> None:
    from ddp_fit import CONFIG, data

    import mood.core.engine as engine

    monkeypatch.setattr(engine, "world", lambda: World(0, 3))
    with pytest.raises(ValueError, match="batch of 16 does not split over 3 processes"):
        engine.fit(torch.nn.Linear(1, 1), *data(), CONFIG)


@pytest.mark.slow
def test_two_processes_train_what_one_does_and_resume_at_any_world_size(tmp_path: Path) -> None:
    from ddp_fit import data, train

    one, one_history = train(None)
    two = launch(tmp_path / "two.pt")
    assert two["world"] == 2
    assert max_diff(two["state"], one.state_dict()) < ATOL  # same global batches, same mean gradients
    assert [r["loss"] for r in two["history"]] == pytest.approx([r["loss"] for r in one_history], abs=ATOL)
    assert torch.allclose(two["features"], extract_one(one, data()[0]), atol=1e-2)  # gathered in order

    # interrupted after epoch 1 (rank 0 alone wrote the checkpoint), then resumed by 2 processes, and by 1
    launch(tmp_path / "part.pt", tmp_path / "run", stop_after=1)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["last.pt", "log.jsonl"]
    shutil.copytree(tmp_path / "run", tmp_path / "run1")
    resumed = launch(tmp_path / "resumed.pt", tmp_path / "run")
    assert max_diff(resumed["state"], two["state"]) == 0  # same world size: the same run, bit for bit
    alone, history = train(str(tmp_path / "run1"))
    assert max_diff(alone.state_dict(), two["state"]) < ATOL and len(history) == 3


def extract_one(backbone, x: torch.Tensor) -> torch.Tensor:
    from mood.core.features import extract_pools

    return extract_pools(backbone, x, ("mean",), batch_size=8)["mean"].features


@pytest.mark.slow
@pytest.mark.usefixtures("require_fmnist")
def test_the_cli_runs_under_torchrun_and_rank_0_reports(tmp_path: Path) -> None:
    proc = torchrun("-m", "mood", "finetune", "--protocol", "near-pair:pullover-coat", "--profile", "smoke",
                    "--artifacts", str(tmp_path))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1 and '"stage": "finetune"' in lines[0]  # one report, from rank 0
    assert len(list((tmp_path / "finetune").glob("*/backbone.pt"))) == 1
