"""Pretext tasks: each loss is finite and falls on a tiny set; MAE hides what it should."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mood.core.engine import TrainConfig, fit
from mood.core.models import create_backbone
from mood.core.pretext import MAE, MASK_DEFAULTS, PRETEXTS, Rng, build_pretext
from mood.core.tokenizer import PatchTokenizer


def _tiny_images(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Structured images: a bright square, top or bottom half, small or large (4 labels, unchanged
    by the horizontal flips of the fine-tuning augmentation), jittered by up to 3 px, on a flat
    background (as Fashion-MNIST's)."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 4
    x = torch.full((n, 1, 28, 28), -0.8)
    shifts = torch.randint(-3, 4, (n, 2), generator=g).tolist()
    for i, c in enumerate(y.tolist()):
        row, half = 14 * (c // 2) + 7 + shifts[i][0], 2 + 3 * (c % 2)
        col = 14 + shifts[i][1]
        x[i, 0, row - half: row + half, col - half: col + half] = 2.0
    return x, y


@pytest.mark.parametrize("name", [p for p in PRETEXTS if p != "none"])
def test_loss_falls_on_a_tiny_set(name: str) -> None:
    torch.manual_seed(0)
    x, y = _tiny_images()
    bb = create_backbone("vit_tiny_p4", num_classes=4, drop_path=0.0)
    tok = PatchTokenizer(4, 1, 16).fit(x, iters=10) if name == "beit" else None
    task = build_pretext(name, bb, tokenizer=tok)
    cfg = TrainConfig(epochs=8, batch_size=32, lr=2e-3, warmup_epochs=0.5, seed=0, device="cpu")
    hist = fit(task, x, y, cfg)
    losses = [h["loss"] for h in hist]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.9 * losses[0], losses


def test_mae_encoder_sees_only_visible_patches() -> None:
    bb = create_backbone("vit_tiny_p4", drop_path=0.0)
    mae = MAE(bb, mask_ratio=0.75).eval()
    x = torch.randn(2, 1, 28, 28)
    rng = Rng.seeded(0)
    from mood.core.masking import mask_batch

    mask = mask_batch(2, (7, 7), 0.75, "random", rng.np_rng)
    latent = mae.forward_encoder(x, mask)
    assert latent.shape == (2, 1 + 49 - 37, bb.embed_dim)
    x2 = x.clone().reshape(2, 1, 7, 4, 7, 4)
    hidden = mask.reshape(2, 7, 7)
    x2 = x2.permute(0, 1, 2, 4, 3, 5)
    x2[hidden.unsqueeze(1)] = 9.0  # overwrite every hidden patch
    x2 = x2.permute(0, 1, 2, 4, 3, 5).reshape(2, 1, 28, 28)
    torch.testing.assert_close(mae.forward_encoder(x2, mask), latent)
    assert mae.forward_decoder(latent, mask).shape == (2, 49, 16)


def test_build_pretext_errors() -> None:
    bb = create_backbone("vit_tiny_p4")
    with pytest.raises(ValueError, match="beit, simmim"):
        build_pretext("jigsaw", bb)
    with pytest.raises(ValueError, match="tokenizer"):
        build_pretext("beit", bb)
    with pytest.raises(ValueError, match="needs a ViT"):
        build_pretext("simmim", create_backbone("resnet18_small"))
    assert build_pretext("none", bb) is None
    assert build_pretext("simclr", create_backbone("resnet18_small")) is not None


def test_settings_a_task_cannot_honour_are_errors(tmp_path) -> None:
    bb = create_backbone("vit_tiny_p4")
    with pytest.raises(ValueError, match="MAE removes a uniformly random subset.*mask_kind='block'"):
        build_pretext("mae", bb, mask_kind="block")
    assert build_pretext("mae", bb, mask_kind="random") is not None
    with pytest.raises(ValueError, match="simclr masks nothing"):
        build_pretext("simclr", bb, mask_ratio=0.5)


def test_a_published_masking_named_explicitly_names_the_same_cached_model() -> None:
    from mood.experiments.config import PretrainConfig

    bb = create_backbone("vit_tiny_p4")
    tok = PatchTokenizer(4, 1, 8)
    for name, (ratio, kind) in MASK_DEFAULTS.items():
        task = build_pretext(name, bb, tokenizer=tok)
        assert task.mask_ratio == ratio  # the table is the tasks' own default
        assert getattr(task, "mask_kind", "random") == kind
        explicit = PretrainConfig(pretext=name, mask_ratio=ratio, mask_kind=kind)
        assert (explicit.mask_ratio, explicit.mask_kind) == (None, None)
        assert explicit.to_dict() == PretrainConfig(pretext=name).to_dict()  # the cache key's part
    other = PretrainConfig(pretext="beit", mask_ratio=0.75, mask_kind="random")
    assert (other.mask_ratio, other.mask_kind) == (0.75, "random")
    # SimMIM's default ratio is not BEiT's: 0.4 stays a setting of its own
    assert PretrainConfig(pretext="simmim", mask_ratio=0.4).mask_ratio == 0.4


def test_make_task_fits_beit_tokenizer_once_and_reloads_it(tmp_path) -> None:
    from mood.core.pretext import TOKENIZER_FILE, make_task
    from mood.experiments.config import PretrainConfig

    cfg = PretrainConfig(vocab_size=8, tokenizer_iters=2)
    x = torch.randn(16, 1, 28, 28)
    task = make_task(cfg, create_backbone("vit_tiny_p4"), x, tmp_path)
    assert (tmp_path / TOKENIZER_FILE).exists() and task.tokenizer.vocab_size == 8
    again = make_task(cfg, create_backbone("vit_tiny_p4"), None, tmp_path)  # no images: loaded from disk
    torch.testing.assert_close(again.tokenizer.codebook, task.tokenizer.codebook)
    with pytest.raises(ValueError, match="not saved .* no images"):
        make_task(cfg, create_backbone("vit_tiny_p4"), None, tmp_path / "other")


def test_random_shift_moves_each_image_by_its_own_offset() -> None:
    from mood.core import augment

    x = torch.randn(6, 2, 9, 9)
    out = augment.random_shift(x, torch.Generator().manual_seed(4), pad=2)
    g = torch.Generator().manual_seed(4)
    dx, dy = torch.randint(0, 5, (6,), generator=g).tolist(), torch.randint(0, 5, (6,), generator=g).tolist()
    fill = x.amin(dim=(1, 2, 3), keepdim=True)
    padded = torch.nn.functional.pad(x - fill, (2, 2, 2, 2)) + fill
    for i in range(6):  # the per-image crop the batched gather replaces
        torch.testing.assert_close(out[i], padded[i, :, dy[i]: dy[i] + 9, dx[i]: dx[i] + 9])


def test_masked_losses_average_over_hidden_patches_only() -> None:
    from mood.core.pretext import SimMIM

    torch.manual_seed(0)
    task = SimMIM(create_backbone("vit_tiny_p4", drop_path=0.0)).eval()
    x = torch.randn(4, 1, 28, 28)
    loss, _ = task.loss(x, torch.zeros(4, dtype=torch.long), Rng.seeded(2))
    mask = task.masks.sample(4, Rng.seeded(2).torch_gen)
    from mood.core.tokenizer import patchify

    expected = (task.predict(x, mask) - patchify(x, 4)).abs()[mask].mean()  # boolean indexing, as a reference
    torch.testing.assert_close(loss, expected)
