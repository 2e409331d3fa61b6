"""Batched image augmentations on tensors ``[N, C, H, W]`` (no per-image Python loop).

Every function takes a ``torch.Generator`` so that a seeded run sees the same views again; its
random numbers are drawn on the generator's device (a CUDA generator keeps a GPU step free of host
round trips).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _uniform(n: int, lo: float, hi: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=g.device).to(device) * (hi - lo) + lo


def random_resized_crop(x: torch.Tensor, g: torch.Generator, scale: tuple[float, float] = (0.35, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """A random crop of each image (area fraction in ``scale``, aspect in ``ratio``), resized back
    to the full size with bilinear sampling."""
    n = x.shape[0]
    area = _uniform(n, *scale, g, x.device)
    logr = _uniform(n, math.log(ratio[0]), math.log(ratio[1]), g, x.device)
    r = torch.exp(logr)
    sw, sh = torch.sqrt(area * r).clamp(max=1.0), torch.sqrt(area / r).clamp(max=1.0)
    tx = (_uniform(n, -1, 1, g, x.device)) * (1 - sw)
    ty = (_uniform(n, -1, 1, g, x.device)) * (1 - sh)
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sw, tx, sh, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_shift(x: torch.Tensor, g: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random translation by up to ``pad`` pixels (the classic pad-and-crop), zero-filled in the
    normalised space's background value (the image minimum)."""
    n, _, h, w = x.shape
    fill = x.amin(dim=(1, 2, 3), keepdim=True)
    padded = F.pad(x - fill, (pad, pad, pad, pad)) + fill
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=g, device=g.device).to(x.device)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=g, device=g.device).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # [N, 1, h, 1]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # [N, 1, 1, w]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]


def random_flip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Horizontal flip of a random half of the images."""
    flip = (torch.rand(x.shape[0], generator=g, device=g.device) < 0.5).to(x.device).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(-1), x)


def random_jitter(x: torch.Tensor, g: torch.Generator, strength: float = 0.4) -> torch.Tensor:
    """Random brightness (additive) and contrast (multiplicative) change per image."""
    n = x.shape[0]
    b = _uniform(n, -strength, strength, g, x.device).view(-1, 1, 1, 1)
    c = _uniform(n, 1 - strength, 1 + strength, g, x.device).view(-1, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * c + mean + b


def finetune_view(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Light augmentation for supervised training: shift and flip."""
    return random_flip(random_shift(x, g), g)


def contrastive_view(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """SimCLR-style view: resized crop, flip, brightness/contrast jitter."""
    return random_jitter(random_flip(random_resized_crop(x, g), g), g)
