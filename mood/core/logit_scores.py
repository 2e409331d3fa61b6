"""OOD scores of a classifier's logits ``[N, C] -> [N]`` (higher = more likely OOD), and ODIN,
which re-runs the model on a perturbed input. Registered by name in :data:`mood.core.scores.SCORES`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

Array = torch.Tensor



def _as_logits(logits: Array) -> Array:
    logits = torch.as_tensor(logits).float()
    if logits.ndim != 2:
        raise ValueError(f"expected logits [N, C], got shape {tuple(logits.shape)}")
    return logits


def msp(logits: Array, temperature: float = 1.0) -> Array:
    """Negative maximum softmax probability (Hendrycks & Gimpel 2017)."""
    return -F.softmax(_as_logits(logits) / temperature, dim=1).max(1).values


def max_logit(logits: Array) -> Array:
    """Negative maximum logit (Hendrycks et al. 2022)."""
    return -_as_logits(logits).max(1).values


def energy(logits: Array, temperature: float = 1.0) -> Array:
    """Free energy ``-T logsumexp(l / T)`` (Liu et al. 2020): low for ID, so it is an OOD score as is."""
    return -temperature * torch.logsumexp(_as_logits(logits) / temperature, dim=1)


def entropy(logits: Array) -> Array:
    """Entropy of the softmax."""
    logp = F.log_softmax(_as_logits(logits), dim=1)
    return -(logp.exp() * logp).sum(1)


def outlier_class(logits: Array) -> Array:
    """Softmax probability of the last class, for models trained with an extra "outlier" class
    (outlier exposure); higher = more OOD as is."""
    return F.softmax(_as_logits(logits), dim=1)[:, -1]


def odin(model: nn.Module, x: Array, temperature: float = 1000.0, epsilon: float = 0.0014,
         batch_size: int = 256) -> Array:
    """ODIN (Liang et al. 2018): each input takes a step of size ``epsilon`` against the gradient of
    the temperature-scaled cross-entropy of its own prediction (raising its max softmax), then the
    negative temperature-scaled MSP is the score.

    Args:
        model: maps ``[N, C, H, W]`` to logits ``[N, K]``.
        x: ``[N, C, H, W]`` images, in the model's input space.
    Returns:
        ``[N]`` OOD scores.
    """
    model.eval()
    device = next(model.parameters()).device
    out = []
    for part in x.split(batch_size):
        part = part.to(device).clone().requires_grad_(True)
        logits = model(part) / temperature
        loss = F.cross_entropy(logits, logits.argmax(1))
        grad, = torch.autograd.grad(loss, part)
        with torch.no_grad():
            perturbed = part - epsilon * grad.sign()
            out.append(msp(model(perturbed), temperature).cpu())
    return torch.cat(out)


# --------------------------------------------------------------------------------------------
# The registry: every score by name, with what it needs and its hyperparameters


__all__ = ["msp", "max_logit", "energy", "entropy", "outlier_class", "odin"]
