"""Which patches to hide: BEiT's blockwise masking and uniform random masking.

Convention: a mask is ``bool``, **True = masked (hidden, to be predicted)**, False = visible.
Masks are drawn with a numpy ``Generator`` so a seeded run draws the same masks again.
"""

from __future__ import annotations

import math

import numpy as np
import torch

MASK_KINDS = ("block", "random")


def num_to_mask(num_patches: int, ratio: float) -> int:
    """Patches hidden at ``ratio``: ``round(ratio * L)``, at least 1 and at most ``L - 1``."""
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"mask ratio must be in (0, 1), got {ratio}")
    return min(num_patches - 1, max(1, round(ratio * num_patches)))


def random_mask(grid: tuple[int, int], ratio: float, rng: np.random.Generator) -> np.ndarray:
    """``[H, W]`` bool with exactly ``num_to_mask(H*W, ratio)`` patches hidden, uniformly at random."""
    h, w = grid
    m = np.zeros(h * w, dtype=bool)
    m[rng.choice(h * w, num_to_mask(h * w, ratio), replace=False)] = True
    return m.reshape(h, w)


def block_mask(grid: tuple[int, int], ratio: float, rng: np.random.Generator, min_block: int = 4,
               aspect: tuple[float, float] = (0.3, 1 / 0.3)) -> np.ndarray:
    """BEiT's blockwise masking: rectangles of >= ``min_block`` patches with a random aspect ratio
    are added until the target count is reached (then topped up by single random patches, so every
    mask of a batch hides exactly the same number of patches).

    Returns:
        ``[H, W]`` bool, exactly ``num_to_mask(H*W, ratio)`` True.
    """
    h, w = grid
    target = num_to_mask(h * w, ratio)
    m = np.zeros((h, w), dtype=bool)
    log_lo, log_hi = math.log(aspect[0]), math.log(aspect[1])
    count = 0
    while count < target:
        room, added = target - count, 0
        for _ in range(10):
            area = rng.uniform(min_block, max(min_block, room))
            r = math.exp(rng.uniform(log_lo, log_hi))
            bh, bw = int(round(math.sqrt(area * r))), int(round(math.sqrt(area / r)))
            if not (1 <= bh < h and 1 <= bw < w):
                continue
            top, left = rng.integers(0, h - bh + 1), rng.integers(0, w - bw + 1)
            new = bh * bw - int(m[top: top + bh, left: left + bw].sum())
            if 0 < new <= room:
                m[top: top + bh, left: left + bw] = True
                added = new
                break
        if added == 0:
            break
        count += added
    if count < target:
        free = np.flatnonzero(~m.reshape(-1))
        m.reshape(-1)[rng.choice(free, target - count, replace=False)] = True
    return m


def mask_batch(n: int, grid: tuple[int, int], ratio: float, kind: str = "block",
               rng: np.random.Generator | None = None) -> torch.Tensor:
    """``n`` masks: ``[n, H*W]`` bool, True = masked."""
    if kind not in MASK_KINDS:
        raise ValueError(f"unknown mask kind {kind!r}; valid: {', '.join(MASK_KINDS)}")
    rng = rng if rng is not None else np.random.default_rng()
    fn = block_mask if kind == "block" else random_mask
    return torch.from_numpy(np.stack([fn(grid, ratio, rng).reshape(-1) for _ in range(n)]))


class MaskSampler(torch.nn.Module):
    """Masks for a training step drawn without leaving the device and without a per-image host loop.

    ``"random"`` masks are drawn on the generator's device (uniform noise, the ``k`` smallest hidden,
    as MAE does). ``"block"`` masks come from a bank of ``bank_size`` BEiT masks drawn once on the host
    from ``seed`` (a buffer that follows the task to its device, not saved in checkpoints); each step
    picks rows of the bank at random. A bank drawn from the run's seed keeps a resumed run equal to
    an uninterrupted one.

    Args:
        grid: the ViT's patch grid ``(H, W)``.
        ratio: fraction of patches hidden.
        kind: ``"block"`` or ``"random"``.
        seed: seeds the bank.
        bank_size: masks in the bank (block masks only).
    """

    def __init__(self, grid: tuple[int, int], ratio: float, kind: str, seed: int = 0, bank_size: int = 4096) -> None:
        super().__init__()
        if kind not in MASK_KINDS:
            raise ValueError(f"unknown mask kind {kind!r}; valid: {', '.join(MASK_KINDS)}")
        self.grid, self.ratio, self.kind = tuple(grid), ratio, kind
        self.num_patches = grid[0] * grid[1]
        self.num_masked = num_to_mask(self.num_patches, ratio)
        bank = mask_batch(bank_size, grid, ratio, "block", np.random.default_rng(seed)) if kind == "block" \
            else torch.zeros(0, self.num_patches, dtype=torch.bool)
        self.register_buffer("bank", bank, persistent=False)

    def sample(self, n: int, g: torch.Generator) -> torch.Tensor:
        """``[n, H*W]`` bool masks (True = hidden, exactly ``num_masked`` per row) on ``self.bank``'s
        device, drawn with ``g`` (a generator on that device)."""
        device = self.bank.device
        if self.kind == "block":
            return self.bank[torch.randint(len(self.bank), (n,), generator=g, device=device)]
        noise = torch.rand(n, self.num_patches, generator=g, device=device)
        hidden = noise.argsort(dim=1)[:, :self.num_masked]
        return torch.zeros(n, self.num_patches, dtype=torch.bool, device=device).scatter_(1, hidden, True)
