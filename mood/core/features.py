"""From a model and images to features: extracted once, scored many ways.

- :func:`extract`: a ``mood`` :class:`~mood.core.models.Backbone` -> :class:`FeatureSet` (features, logits, labels);
  :func:`extract_pools`: several features from one forward pass.
- :func:`embed`: any ``nn.Module`` or callable mapping images to ``[n, D]``, in batches, in eval mode,
  without gradients: how a user scores their own backbone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from mood.core.distributed import gather_rows, shard
from mood.core.images import ImageFormat, ImageSet, to_tensor
from mood.core.io import atomic_torch_save
from mood.core.models import Backbone
from mood.core.progress import progress


@dataclass
class FeatureSet:
    """Features of one image set.

    Attributes:
        features: ``[N, D]`` pooled features (before any normalisation), float32 holding
            half-precision values when :func:`extract` made them (:func:`to_half_precision`).
        logits: ``[N, C]`` head outputs.
        labels: ``[N]`` labels (-1 when unlabelled).
    """

    features: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.features)

    def save(self, path: str | os.PathLike) -> Path:
        """Saves as a torch file, atomically; features that half precision holds exactly are stored
        as float16 (half the disk: a cpu book run's token features are ~4 GB, not ~8)."""
        path = Path(path)
        f = self.features
        exact = f.is_floating_point() and torch.equal(f.half().float(), f.float())
        atomic_torch_save({"features": f.half() if exact else f, "logits": self.logits, "labels": self.labels}, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureSet":
        d = torch.load(path, map_location="cpu", weights_only=True)
        return cls(d["features"].float(), d["logits"], d["labels"])


def to_half_precision(f: torch.Tensor) -> torch.Tensor:
    """``f [N, D]`` rounded to float16 and returned as float32, unless a value is beyond float16's
    range (then ``f`` unchanged). Extraction rounds so that features read back from the cache equal
    freshly extracted ones bit for bit: a cached and a cold run score the same numbers."""
    h = f.half()
    return h.float() if torch.isfinite(h).all() else f


def extract(backbone: Backbone, x: torch.Tensor, labels: torch.Tensor | None = None, pool: str = "mean",
            batch_size: int = 512, device: str | torch.device | None = None, desc: str = "features") -> FeatureSet:
    """Runs ``backbone`` in eval mode over ``x [N, C, H, W]``: features ``[N, D]`` pooled by ``pool``
    and the head's logits ``[N, C]`` (always from the pooling the head was trained on), on the CPU
    (bf16 autocast on CUDA)."""
    return extract_pools(backbone, x, (pool,), labels, batch_size, device, desc)[pool]


@torch.no_grad()
def extract_pools(backbone: Backbone, x: torch.Tensor, pools: Sequence[str], labels: torch.Tensor | None = None,
                  batch_size: int = 512, device: str | torch.device | None = None,
                  desc: str = "features") -> dict[str, FeatureSet]:
    """:func:`extract` of several pools in one pass over ``x [N, C, H, W]`` (one forward per batch
    however many pools): ``{pool: FeatureSet}``, the logits shared. In a distributed run
    (:mod:`mood.core.distributed`) each rank extracts its shard of ``x`` and every rank gets them all."""
    device = torch.device(device) if device is not None else next(backbone.parameters()).device
    backbone.eval().to(device)
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in (*pools, "logits")}
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    mine = x[shard(len(x))]
    for part in progress(mine.split(batch_size), desc=desc):
        with autocast:
            out = backbone.pooled(part.to(device), pools)
        for k, v in out.items():
            parts[k].append(v.float().cpu())
    lab = (labels if labels is not None else torch.full((len(x),), -1, dtype=torch.long)).cpu()
    joined = {k: gather_rows(torch.cat(v) if v else torch.empty(0)) for k, v in parts.items()}
    return {pool: FeatureSet(to_half_precision(joined[pool]), joined["logits"], lab) for pool in pools}


@torch.no_grad()
def embed(model: nn.Module | Callable[[torch.Tensor], torch.Tensor], images: ImageSet | torch.Tensor,
          fmt: ImageFormat = ImageFormat(), batch_size: int = 256,
          device: str | torch.device | None = None) -> torch.Tensor:
    """Features of ``images`` under any model, batch by batch: ``[N, D]`` float32 on the CPU.

    An ``nn.Module`` is put in eval mode first (dropout and drop-path off, so the same image always
    gives the same features) and restored to its former mode afterwards; memory stays at one batch.

    Args:
        model: maps ``[n, C, H, W]`` to ``[n, D]`` (a module or any callable).
        images: an :class:`~mood.core.images.ImageSet` (converted with ``fmt``) or ready ``[N, C, H, W]`` tensors.
        fmt: the model's input format, for an ImageSet.
        batch_size: images per forward pass.
        device: where the model runs (default: where its parameters are, else the CPU).
    """
    if batch_size < 1:
        raise ValueError(f"embed: batch_size must be >= 1, got {batch_size}")
    n = len(images)
    if n == 0:
        raise ValueError("embed: no images")
    module = model if isinstance(model, nn.Module) else None
    if device is None:
        params = next(iter(module.parameters()), None) if module is not None else None
        device = params.device if params is not None else torch.device("cpu")
    device = torch.device(device)
    was_training = module.training if module is not None else False
    if module is not None:
        module.eval()
    try:
        out = []
        for start in range(0, n, batch_size):
            part = (to_tensor(images.subset(range(start, min(n, start + batch_size))), fmt)
                    if isinstance(images, ImageSet) else images[start: start + batch_size])
            f = model(part.to(device))
            if not isinstance(f, torch.Tensor) or f.ndim != 2 or len(f) != len(part):
                shape = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
                raise ValueError(f"embed: the model must map [n, C, H, W] to features [n, D]; for {len(part)} "
                                 f"images it returned {shape}. Pool or flatten inside the callable")
            out.append(f.float().cpu())
    finally:
        if module is not None:
            module.train(was_training)
    return torch.cat(out)
