"""From a model and images to saved features: extracted once, scored many ways."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from mood.models import Backbone
from mood.progress import progress


@dataclass
class FeatureSet:
    """Features of one image set.

    Attributes:
        features: ``[N, D]`` pooled features (before any normalisation).
        logits: ``[N, C]`` head outputs.
        labels: ``[N]`` labels (-1 when unlabelled).
    """

    features: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.features)

    def save(self, path: str | os.PathLike) -> Path:
        """Saves as a torch file, atomically."""
        from mood.engine import atomic_torch_save

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save({"features": self.features, "logits": self.logits, "labels": self.labels}, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureSet":
        return cls(**torch.load(path, map_location="cpu", weights_only=True))


@torch.no_grad()
def extract(backbone: Backbone, x: torch.Tensor, labels: torch.Tensor | None = None, pool: str = "mean",
            batch_size: int = 512, device: str | torch.device | None = None, desc: str = "features") -> FeatureSet:
    """Runs ``backbone`` in eval mode over ``x [N, C, H, W]``: features ``[N, D]`` and logits ``[N, C]``
    on the CPU (bf16 autocast on CUDA)."""
    device = torch.device(device) if device is not None else next(backbone.parameters()).device
    backbone.eval().to(device)
    feats, logits = [], []
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    for part in progress(x.split(batch_size), desc=desc):
        with autocast:
            f = backbone.features(part.to(device), pool=pool)
            logits.append(backbone.head(f).float().cpu())
        feats.append(f.float().cpu())
    lab = labels if labels is not None else torch.full((len(x),), -1, dtype=torch.long)
    return FeatureSet(torch.cat(feats), torch.cat(logits), lab.cpu())
