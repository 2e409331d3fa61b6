"""A visual tokenizer for BEiT-style MIM: a k-means codebook over image patches.

BEiT predicts the DALL-E dVAE's token of each masked patch. Those weights cannot be downloaded
here, so ``mood`` learns its own discrete vocabulary from the pretraining images: k-means over all
``p x p`` patches (``C*p*p`` values each, in the model's normalised pixel space). A patch's token is
the index of its nearest centroid; decoding pastes the centroids back. Like the dVAE, the codebook is
fitted once, before pretraining, on pretraining data only, and frozen.
"""

from __future__ import annotations

import torch
from torch import nn


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """``[N, C, H, W]`` to ``[N, L, C*p*p]`` with L = (H/p)*(W/p), patches in row-major order."""
    n, c, h, w = x.shape
    if h % p or w % p:
        raise ValueError(f"image side {h}x{w} is not a multiple of the patch size {p}")
    x = x.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(n, (h // p) * (w // p), c * p * p)


def unpatchify(patches: torch.Tensor, p: int, grid: tuple[int, int], channels: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``[N, L, C*p*p]`` to ``[N, C, H, W]``."""
    n = patches.shape[0]
    gh, gw = grid
    x = patches.reshape(n, gh, gw, channels, p, p).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(n, channels, gh * p, gw * p)


class PatchTokenizer(nn.Module):
    """k-means codebook over ``p x p`` patches.

    Args:
        patch_size: side of a patch in pixels (the ViT's patch size).
        channels: image channels.
        vocab_size: number of codes K.
    """

    def __init__(self, patch_size: int = 4, channels: int = 1, vocab_size: int = 256) -> None:
        super().__init__()
        self.patch_size, self.channels, self.vocab_size = patch_size, channels, vocab_size
        self.register_buffer("codebook", torch.zeros(vocab_size, channels * patch_size ** 2))
        self.register_buffer("fitted", torch.tensor(False))

    def _nearest(self, flat: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
        """Index of the nearest code for each row of ``flat [M, d]``: ``[M]`` long."""
        cb = self.codebook
        c2 = (cb * cb).sum(1)
        out = [(c2[None] - 2 * part @ cb.T).argmin(1) for part in flat.split(chunk)]
        return torch.cat(out)

    @torch.no_grad()
    def fit(self, images: torch.Tensor, iters: int = 25, max_patches: int = 200_000, seed: int = 0) -> "PatchTokenizer":
        """Lloyd's k-means on (a sample of) the patches of ``images [N, C, H, W]``; codes that lose
        all their patches are moved to random patches, so every code stays in use."""
        g = torch.Generator().manual_seed(seed)
        flat = patchify(images.float(), self.patch_size).reshape(-1, self.codebook.shape[1])
        if len(flat) > max_patches:
            flat = flat[torch.randperm(len(flat), generator=g)[:max_patches]]
        if len(flat) < self.vocab_size:
            raise ValueError(f"tokenizer: {len(flat)} patches cannot fit {self.vocab_size} codes")
        self.codebook.copy_(flat[torch.randperm(len(flat), generator=g)[: self.vocab_size]])
        for _ in range(iters):
            assign = self._nearest(flat)
            sums = torch.zeros_like(self.codebook).index_add_(0, assign, flat)
            counts = torch.bincount(assign, minlength=self.vocab_size).float()
            alive = counts > 0
            self.codebook[alive] = sums[alive] / counts[alive, None]
            dead = int((~alive).sum())
            if dead:
                self.codebook[~alive] = flat[torch.randint(len(flat), (dead,), generator=g)]
        self.fitted.fill_(True)
        return self

    def _check(self) -> None:
        if not bool(self.fitted):
            raise RuntimeError("PatchTokenizer is not fitted: call .fit(images) first")

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens ``[N, L]`` (long, in ``0..K-1``) of images ``[N, C, H, W]``."""
        self._check()
        p = patchify(x.float(), self.patch_size)
        return self._nearest(p.reshape(-1, p.shape[-1])).reshape(p.shape[0], p.shape[1])

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Images ``[N, C, H, W]`` from tokens ``[N, L]`` (each patch becomes its centroid)."""
        self._check()
        return unpatchify(self.codebook[tokens], self.patch_size, grid, self.channels)

    @torch.no_grad()
    def quantisation_error(self, x: torch.Tensor) -> float:
        """Mean squared error of ``decode(encode(x))`` against ``x`` (per pixel)."""
        grid = (x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size)
        return float(((self.decode(self.encode(x), grid) - x) ** 2).mean())
