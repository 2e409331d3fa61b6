"""Masking: exact counts, BEiT's blocks are blocks, seeded reproducibility, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from mood.core import masking


@pytest.mark.parametrize("kind", masking.MASK_KINDS)
@pytest.mark.parametrize("ratio", [0.1, 0.4, 0.6, 0.75])
def test_exact_count(kind: str, ratio: float) -> None:
    m = masking.mask_batch(200, (7, 7), ratio, kind, np.random.default_rng(0))
    assert m.shape == (200, 49) and m.dtype.is_floating_point is False
    assert (m.sum(1) == round(ratio * 49)).all()


def test_block_masks_are_blocky() -> None:
    rng = np.random.default_rng(0)
    comps = {kind: np.mean([ndimage.label(fn((14, 14), 0.4, rng))[1] for _ in range(200)])
             for kind, fn in (("block", masking.block_mask), ("random", masking.random_mask))}
    # 78 of 196 patches: a few rectangles vs dozens of scattered patches
    assert comps["block"] < 6 < 15 < comps["random"]


def test_block_mask_rectangles_have_min_size() -> None:
    m = masking.block_mask((14, 14), 0.4, np.random.default_rng(3), min_block=16)
    labels, n = ndimage.label(m)
    sizes = np.bincount(labels.ravel())[1:]
    assert sizes.max() >= 16


def test_seeded_masks_repeat() -> None:
    a = masking.mask_batch(8, (7, 7), 0.4, "block", np.random.default_rng(5))
    b = masking.mask_batch(8, (7, 7), 0.4, "block", np.random.default_rng(5))
    assert (a == b).all()


def test_bad_input() -> None:
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        masking.num_to_mask(49, 1.0)
    with pytest.raises(ValueError, match="block, random"):
        masking.mask_batch(2, (7, 7), 0.4, "grid")


@pytest.mark.parametrize("kind", ["block", "random"])
def test_mask_sampler_hides_exactly_the_count_and_repeats_with_its_seeds(kind: str) -> None:
    a = masking.MaskSampler((7, 7), 0.4, kind, seed=3, bank_size=64)
    m = a.sample(50, torch.Generator().manual_seed(1))
    assert m.shape == (50, 49) and m.dtype == torch.bool
    assert (m.sum(1) == masking.num_to_mask(49, 0.4)).all()
    assert len({tuple(r.tolist()) for r in m}) > 10  # not one mask repeated
    b = masking.MaskSampler((7, 7), 0.4, kind, seed=3, bank_size=64)
    assert torch.equal(m, b.sample(50, torch.Generator().manual_seed(1)))
    assert "bank" not in a.state_dict()  # checkpoints do not carry it: the seed rebuilds it


def test_block_bank_holds_blockwise_masks() -> None:
    bank = masking.MaskSampler((7, 7), 0.4, "block", seed=0, bank_size=32).bank
    assert torch.equal(bank, masking.mask_batch(32, (7, 7), 0.4, "block", np.random.default_rng(0)))
