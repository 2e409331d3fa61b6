"""A training run for tests/test_distributed.py, launched by ``torchrun`` (or run as one process).

Trains a small ViT classifier (no augmentation, no drop-path: the task draws no random numbers, so
any world size must give the same weights) on seeded random images, extracts its features, and has
rank 0 save both to ``--out``.
"""

from __future__ import annotations

import argparse

import torch

from mood.core import distributed
from mood.core.engine import TrainConfig, fit
from mood.core.features import extract_pools
from mood.core.models import Backbone, ModelConfig
from mood.core.pretext import Classification

CONFIG = TrainConfig(epochs=3, batch_size=16, lr=1e-3, warmup_epochs=0.5, device="cpu")


def data() -> tuple[torch.Tensor, torch.Tensor]:
    """``[64, 1, 28, 28]`` images whose class is their brightness, and the ``[64]`` labels."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(64) % 4
    return torch.randn(64, 1, 28, 28, generator=g) * 0.5 + y.view(-1, 1, 1, 1) * 0.3, y


def train(run_dir: str | None, stop_after: int | None = None) -> tuple[Backbone, list[dict]]:
    torch.manual_seed(0)
    backbone = Backbone(ModelConfig("vit_tiny_p7", num_classes=4, drop_path=0.0))
    x, y = data()
    history = fit(Classification(backbone, augment=False), x, y, CONFIG, run_dir=run_dir, stop_after=stop_after)
    return backbone, history


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--run-dir", default=None)
    ap.add_argument("--stop-after", type=int, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    w = distributed.init()
    backbone, history = train(args.run_dir, args.stop_after)
    feats = extract_pools(backbone, data()[0], ("mean",), batch_size=8)["mean"].features
    if w.is_main:
        torch.save({"state": backbone.state_dict(), "history": history, "features": feats, "world": w.size}, args.out)
    distributed.close()
