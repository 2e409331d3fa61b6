"""Weight masks (Unleashing Mask, Zhu et al. 2023): keep a fraction of every convolution and linear
layer's weights, chosen by scores that are random, the weights' magnitudes, or learned (edge-popup,
Ramanujan et al. 2020, with a straight-through top-k). UM's loss floor ``b`` is the training loss of
a model with a small random share of its weights masked (:func:`estimate_floor`)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from mood.core.models import Backbone


class _TopK(torch.autograd.Function):
    """Binary mask of the ``keep`` fraction of largest entries; gradients pass straight through."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, keep: float) -> torch.Tensor:  # type: ignore[override]
        k = max(1, round(keep * scores.numel()))
        # flatten() and the flat mask both follow the logical order, whatever the memory format
        mask = torch.zeros(scores.numel(), dtype=scores.dtype, device=scores.device)
        mask[scores.flatten().topk(k, sorted=False).indices] = 1.0
        return mask.view(scores.shape)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return grad, None


class WeightMask(nn.Module):
    """Parametrisation ``weight -> weight * m``, ``m`` keeping the ``keep`` fraction of the layer's
    weights with the largest ``|scores|`` (edge-popup, Ramanujan et al. 2020).

    Args:
        scores: same shape as the weight; a parameter, so it can be learned (UMAP) or left alone.
        keep: fraction of the layer's weights kept, in (0, 1].
    """

    def __init__(self, scores: torch.Tensor, keep: float) -> None:
        super().__init__()
        self.scores = nn.Parameter(scores)
        self.keep = keep

    def mask(self) -> torch.Tensor:
        return _TopK.apply(self.scores.abs(), self.keep)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask()


def maskable_layers(model: nn.Module) -> list[nn.Module]:
    """The layers whose weights masks act on: every convolution and linear layer (the official
    code swaps exactly these for its ``SubnetConv`` / ``SubnetLinear``)."""
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def add_masks(model: nn.Module, keep: float, init: str = "random", seed: int = 0) -> list[WeightMask]:
    """Puts a :class:`WeightMask` on every maskable layer of ``model`` (in place).

    Args:
        keep: fraction of each layer's weights kept.
        init: ``"random"`` scores (a uniformly random subset is kept) or ``"magnitude"`` (``|w|``
            plus a tie-breaking jitter: the largest weights are kept).
        seed: seeds the random scores.
    Returns:
        The masks, in layer order.
    """
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must lie in (0, 1], got {keep}")
    if init not in ("random", "magnitude"):
        raise ValueError(f"unknown mask init {init!r}; valid: random, magnitude")
    gen = torch.Generator().manual_seed(seed)
    masks = []
    for layer in maskable_layers(model):
        w = layer.weight.detach()
        noise = torch.rand(w.shape, generator=gen).to(w.device, w.dtype)
        scores = noise if init == "random" else w.abs() + 1e-6 * w.abs().mean() * noise
        mask = WeightMask(scores, keep)
        parametrize.register_parametrization(layer, "weight", mask)
        masks.append(mask)
    if not masks:
        raise ValueError(f"{type(model).__name__} has no convolution or linear layer to mask")
    return masks


def bake_masks(model: nn.Module) -> nn.Module:
    """Replaces every masked weight by ``weight * mask`` and removes the masks (in place)."""
    for layer in maskable_layers(model):
        if parametrize.is_parametrized(layer, "weight"):
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    return model


@torch.no_grad()
def masked_losses(backbone: Backbone, x: torch.Tensor, y: torch.Tensor, keep: float = 0.965, seed: int = 0,
                  batch_size: int = 512) -> torch.Tensor:
    """Per-image cross-entropy ``[N]`` over ``x [N, C, H, W]`` / ``y [N]`` of a copy of ``backbone``
    (eval mode) with a random ``1 - keep`` of every layer's weights set to zero."""
    model = copy.deepcopy(backbone).eval()
    add_masks(model, keep, "random", seed)
    device = next(model.parameters()).device
    with torch.no_grad():
        return torch.cat([F.cross_entropy(model(xb.to(device)).float(), yb.to(device), reduction="none").cpu()
                          for xb, yb in zip(x.split(batch_size), y.split(batch_size))])


def estimate_floor(backbone: Backbone, x: torch.Tensor, y: torch.Tensor, keep: float = 0.965, seed: int = 0,
                   batch_size: int = 512) -> float:
    """UM's loss floor ``b``, as the paper estimates it: the mean of :func:`masked_losses`, the training
    loss of the final model with a small random share of its weights masked."""
    return float(masked_losses(backbone, x, y, keep, seed, batch_size).mean())


__all__ = ["WeightMask", "maskable_layers", "add_masks", "bake_masks", "masked_losses", "estimate_floor"]
