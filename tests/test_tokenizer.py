"""The k-means visual tokenizer: patchify round trip, recovery of known codes, errors."""

from __future__ import annotations

import pytest
import torch

from mood.core.tokenizer import PatchTokenizer, patchify, unpatchify


def test_patchify_round_trip() -> None:
    x = torch.randn(3, 2, 28, 28)
    p = patchify(x, 4)
    assert p.shape == (3, 49, 32)
    torch.testing.assert_close(p[0, 1], x[0, :, 0:4, 4:8].reshape(-1))  # row-major patch order
    torch.testing.assert_close(unpatchify(p, 4, (7, 7), 2), x)
    with pytest.raises(ValueError, match="multiple"):
        patchify(torch.zeros(1, 1, 30, 30), 4)


def _images_from_codes(codes: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    return unpatchify(codes[tokens], 4, (7, 7), 1)


def test_fit_recovers_a_known_codebook() -> None:
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(8, 16, generator=g) * 3
    tokens = torch.randint(0, 8, (64, 49), generator=g)
    x = _images_from_codes(codes, tokens)
    tok = PatchTokenizer(patch_size=4, channels=1, vocab_size=8).fit(x, iters=30, seed=0)
    assert tok.quantisation_error(x) < 1e-8
    t = tok.encode(x)
    assert t.shape == (64, 49) and t.dtype == torch.long
    # same partition as the true tokens, up to renaming of codes
    pairs = {(int(a), int(b)) for a, b in zip(t.reshape(-1), tokens.reshape(-1))}
    assert len(pairs) == 8
    # decode then encode is the identity on tokens
    assert torch.equal(tok.encode(tok.decode(t, (7, 7))), t)


def test_quantisation_error_falls_with_vocab() -> None:
    x = torch.randn(32, 1, 28, 28)
    small = PatchTokenizer(4, 1, 4).fit(x, iters=10).quantisation_error(x)
    large = PatchTokenizer(4, 1, 64).fit(x, iters=10).quantisation_error(x)
    assert large < small


def test_unfitted_and_too_few_patches() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        PatchTokenizer().encode(torch.zeros(1, 1, 28, 28))
    with pytest.raises(ValueError, match="cannot fit"):
        PatchTokenizer(4, 1, 1000).fit(torch.zeros(1, 1, 28, 28))
