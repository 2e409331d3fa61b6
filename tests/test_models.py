"""Backbones: shapes of every view, masking reaches the tokens, clear errors."""

from __future__ import annotations

import pytest
import torch

from mood.core.models import (
    MODEL_PRESETS,
    Backbone,
    ModelConfig,
    create_backbone,
    nearest_in_flops,
    resnet_presets,
    training_flops,
)


@pytest.mark.parametrize("name", [n for n in MODEL_PRESETS if n != "vit_s_p4"])
def test_preset_shapes(name: str) -> None:
    bb = create_backbone(name, num_classes=7).eval()
    x = torch.randn(2, 1, 28, 28)
    f = bb.features(x)
    assert f.shape == (2, bb.embed_dim) and bb(x).shape == (2, 7) and torch.isfinite(f).all()
    torch.testing.assert_close(bb.head(f), bb(x))
    if bb.is_vit:
        side = 28 // bb.patch_size
        assert bb.tokens(x).shape == (2, 1 + side * side, bb.embed_dim) and bb.grid == (side, side)
        assert bb.features(x, pool="cls").shape == (2, bb.embed_dim)


def test_vit_mean_pool_matches_timm_head() -> None:
    bb = create_backbone("vit_tiny_p4").eval()
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(bb(x), bb.net(x))  # timm's own forward: avg pool of normed tokens + head


def test_mask_token_replaces_masked_patches_only() -> None:
    bb = create_backbone("vit_tiny_p4", drop_path=0.0).eval()
    x = torch.randn(1, 1, 28, 28)
    mask = torch.zeros(1, 49, dtype=torch.bool)
    torch.testing.assert_close(bb.tokens(x, mask), bb.tokens(x))
    mask[0, :10] = True
    assert not torch.allclose(bb.tokens(x, mask), bb.tokens(x))
    x2 = x.clone()
    x2[..., :4, :] = 5.0  # change the pixels of the first row of patches (tokens 0..6), all masked
    torch.testing.assert_close(bb.tokens(x2, mask), bb.tokens(x, mask))


def test_reset_head_and_any_timm_model() -> None:
    bb = create_backbone("vit_tiny_p4")
    bb.reset_head(3)
    assert bb(torch.randn(1, 1, 28, 28)).shape == (1, 3) and bb.num_classes == 3
    other = Backbone(ModelConfig("resnet10t", num_classes=4))
    assert other(torch.randn(2, 1, 28, 28)).shape == (2, 4)


def test_errors() -> None:
    with pytest.raises(ValueError, match="not a timm model"):
        create_backbone("vit_gigantic_p1")
    rn = create_backbone("resnet18_small")
    with pytest.raises(ValueError, match="needs a ViT"):
        rn.tokens(torch.randn(1, 1, 28, 28))
    with pytest.raises(ValueError, match="pool='cls' needs a ViT"):
        rn.features(torch.randn(1, 1, 28, 28), pool="cls")
    with pytest.raises(ValueError, match="mean, cls"):
        create_backbone("vit_tiny_p4").features(torch.randn(1, 1, 28, 28), pool="max")


def test_small_resnets_keep_full_resolution_and_narrow_halves_the_width() -> None:
    wide, narrow = create_backbone("resnet10_small"), create_backbone("resnet10_narrow")
    assert (wide.embed_dim, narrow.embed_dim) == (512, 256)
    for bb in (wide, narrow):
        assert bb.net.conv1.stride == (1, 1) and isinstance(bb.net.maxpool, torch.nn.Identity)
        assert bb.net.forward_features(torch.randn(1, 1, 28, 28)).shape[-1] == 4  # 28 -> 28, 14, 7, 4


def test_training_flops_count_a_step_and_pick_the_resnet_nearest_the_vit() -> None:
    vit = training_flops("vit_tiny_p7")
    assert 6e7 < vit < 1e8 and vit == training_flops("vit_tiny_p7")
    quarter, narrow, small = (training_flops(n) for n in ("resnet10_quarter", "resnet10_narrow", "resnet10_small"))
    # doubling the width: ~4x the FLOPs (the stem, reading one channel, grows only 2x)
    assert 3 < narrow / quarter < 4.2 and 3 < small / narrow < 4.2
    assert set(resnet_presets()) >= {"resnet10_quarter", "resnet10_narrow", "resnet10_small", "resnet18_small"}
    assert "vit_tiny_p7" not in resnet_presets()
    assert nearest_in_flops(ModelConfig("vit_tiny_p7"), resnet_presets()) == "resnet10_quarter"
    assert nearest_in_flops(ModelConfig("vit_s_p4"), resnet_presets()) == "resnet18_small"
    assert nearest_in_flops(ModelConfig("vit_tiny_p7"), ["resnet10_narrow"]) == "resnet10_narrow"
    with pytest.raises(ValueError, match="at least one candidate"):
        nearest_in_flops(ModelConfig("vit_tiny_p7"), [])


def test_convolutional_backbones_run_channels_last_with_the_same_outputs() -> None:
    torch.manual_seed(0)
    bb = create_backbone("resnet10_quarter").eval()
    assert bb.net.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(4, 1, 28, 28)
    reference = bb.net.to(memory_format=torch.contiguous_format)(x)
    assert torch.allclose(bb.to(memory_format=torch.channels_last)(x), reference, atol=1e-5)
    assert create_backbone("vit_tiny_p7").net.patch_embed.proj.weight.is_contiguous()  # ViTs left as they are


def test_mood_feature_is_a_norm_of_the_mean_then_l2() -> None:
    import torch.nn.functional as F

    bb = create_backbone("vit_tiny_p4", drop_path=0.0).eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        f = bb.features(x, pool="mood")
        raw = bb.tokens(x, norm=False)[:, 1:].mean(1)
        want = F.normalize(bb.net.norm(raw), dim=1)
        torch.testing.assert_close(f, want)
        assert torch.allclose(f.norm(dim=1), torch.ones(3))
        # the logits of a feature set come from the head's own pooling, whatever the pool scored
        from mood.core.features import extract

        fs = extract(bb, x, pool="mood")
        torch.testing.assert_close(fs.logits, bb(x))
        torch.testing.assert_close(extract(bb, x, pool="cls").logits, bb(x))


def test_blocks_feature_is_every_blocks_mean_patch_token() -> None:
    bb = create_backbone("vit_tiny_p7", drop_path=0.0).eval()
    x = torch.randn(3, 1, 28, 28)
    seen = []
    hooks = [b.register_forward_hook(lambda m, i, o: seen.append(o[:, 1:].mean(1))) for b in bb.net.blocks]
    with torch.no_grad():
        f = bb.features(x, pool="blocks")
    for h in hooks:
        h.remove()
    depth, dim = len(bb.net.blocks), bb.embed_dim
    assert f.shape == (3, depth * dim) and len(seen) == depth
    torch.testing.assert_close(f, torch.cat(seen, 1))
    with torch.no_grad():  # the last block's part is the pre-norm mean the final norm would see
        torch.testing.assert_close(f[:, -dim:], bb.tokens(x, norm=False)[:, 1:].mean(1))


def test_tokens_feature_keeps_each_patch_in_order() -> None:
    bb = create_backbone("vit_tiny_p7", drop_path=0.0).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        f, blocks, last = bb.features(x, pool="tokens"), bb.features(x, pool="blocks"), bb.tokens(x, norm=False)
    n_patches, dim = last.shape[1] - bb.net.num_prefix_tokens, bb.embed_dim
    assert f.shape == (2, n_patches * dim)
    torch.testing.assert_close(f.view(2, n_patches, dim)[:, 3], last[:, bb.net.num_prefix_tokens + 3])
    torch.testing.assert_close(f.view(2, n_patches, dim).mean(1), blocks[:, -dim:])  # its mean is the pooled feature


def test_cnn_tokens_are_its_last_feature_map_whose_mean_is_its_pooled_feature() -> None:
    cnn = create_backbone("cnn_small").eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        maps, tokens, pooled = cnn.net.forward_features(x), cnn.features(x, pool="tokens"), cnn.features(x, pool="mean")
    assert tokens.shape == (2, maps[0].numel())
    torch.testing.assert_close(tokens.view(2, maps.shape[1], -1).mean(-1), pooled)


def test_extracted_features_round_trip_the_cache_exactly_at_half_the_size(tmp_path) -> None:
    from mood.core.features import FeatureSet, extract

    bb = create_backbone("vit_tiny_p7", drop_path=0.0).eval()
    x = torch.randn(5, 1, 28, 28)
    fs = extract(bb, x, pool="tokens")
    with torch.no_grad():
        fresh = bb.features(x, pool="tokens")
    torch.testing.assert_close(fs.features, fresh, rtol=1e-3, atol=1e-3)  # float16 rounding only
    assert fs.features.dtype == torch.float32
    back = FeatureSet.load(fs.save(tmp_path / "f.pt"))
    assert torch.equal(back.features, fs.features) and back.features.dtype == torch.float32
    full = FeatureSet(fresh, fs.logits, fs.labels)  # not half-exact: stored as float32, unchanged
    assert not torch.equal(fresh, fs.features)
    assert torch.equal(FeatureSet.load(full.save(tmp_path / "g.pt")).features, fresh)
    assert (tmp_path / "f.pt").stat().st_size < 0.6 * (tmp_path / "g.pt").stat().st_size
    huge = torch.tensor([[1e6, 1.0]])
    from mood.core.features import to_half_precision

    assert torch.equal(to_half_precision(huge), huge)  # beyond float16: kept as it is


@pytest.mark.parametrize("name", ["vit_tiny_p7", "cnn_small"])
def test_one_pass_over_every_pool_equals_one_pass_per_pool(name: str) -> None:
    from mood.core.features import extract, extract_pools
    from mood.core.models import NON_VIT_POOLS, POOLS

    bb = create_backbone(name, num_classes=4).eval()
    pools = POOLS if bb.is_vit else NON_VIT_POOLS
    x = torch.randn(6, 1, 28, 28)
    together = extract_pools(bb, x, pools)
    assert list(together) == list(pools)
    for pool in pools:
        alone = extract(bb, x, pool=pool)
        assert torch.equal(together[pool].features, alone.features), pool
        torch.testing.assert_close(together[pool].logits, bb(x))
    with pytest.raises(ValueError, match="unknown pool 'nope'"):
        extract_pools(bb, x, ("mean", "nope"))


def test_a_checkpoint_file_starts_the_backbone_from_its_weights(tmp_path) -> None:
    from mood.core.models import Backbone, ModelConfig

    torch.manual_seed(0)
    source = Backbone(ModelConfig("vit_tiny_p7", num_classes=5))
    # wrapped as training scripts save it: under "model", with DDP's prefix on every key
    torch.save({"model": {f"module.{k}": v for k, v in source.net.state_dict().items()}, "epoch": 3}, tmp_path / "a.pt")
    loaded = Backbone(ModelConfig("vit_tiny_p7", num_classes=10, pretrained=str(tmp_path / "a.pt")))
    fresh = Backbone(ModelConfig("vit_tiny_p7", num_classes=10))
    for k, v in source.net.state_dict().items():
        if not k.startswith("head."):  # a 5-class head does not fit a 10-class model: left new
            assert torch.equal(loaded.net.state_dict()[k], v), k
    x = torch.randn(2, 1, 28, 28)
    assert torch.allclose(loaded.features(x), source.features(x)) and not torch.allclose(fresh.features(x), source.features(x))


def test_a_checkpoint_of_another_size_is_resampled_and_one_that_does_not_fit_is_named(tmp_path) -> None:
    from mood.core.models import Backbone, ModelConfig

    # 3 channels at 32 px (an 8x8 grid of 4 px patches) into 1 channel at 28 px (7x7)
    rgb = Backbone(ModelConfig("vit_tiny_p4", img_size=32, in_chans=3))
    torch.save(rgb.state_dict(), tmp_path / "rgb.pt")  # a mood backbone's own state dict ("net." keys)
    grey = Backbone(ModelConfig("vit_tiny_p4", pretrained=str(tmp_path / "rgb.pt")))
    assert grey.net.pos_embed.shape == (1, 50, 128) and grey.net.patch_embed.proj.weight.shape == (128, 1, 4, 4)
    assert torch.equal(grey.net.blocks[0].attn.qkv.weight, rgb.net.blocks[0].attn.qkv.weight)
    torch.save(Backbone(ModelConfig("cnn_small")).state_dict(), tmp_path / "cnn.pt")
    with pytest.raises(ValueError, match=r"cnn.pt does not fit VisionTransformer: missing \['cls_token'"):
        Backbone(ModelConfig("vit_tiny_p4", pretrained=str(tmp_path / "cnn.pt")))
    import argparse

    torch.save({"args": argparse.Namespace(lr=1e-3), "model": rgb.state_dict()}, tmp_path / "pickled.pt")
    with pytest.raises(ValueError, match="holds more than tensors"):
        Backbone(ModelConfig("vit_tiny_p4", pretrained=str(tmp_path / "pickled.pt")))


def test_pretrained_sources_are_checked_and_keyed_by_content(tmp_path, monkeypatch) -> None:
    from mood.core.models import Backbone, ModelConfig

    with pytest.raises(ValueError, match="neither 'timm' nor an existing checkpoint file"):
        ModelConfig("vit_tiny_p4", pretrained=str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="timm publishes no weights"):
        ModelConfig("vit_tiny_p4", pretrained="timm")
    assert "pretrained" not in ModelConfig("vit_tiny_p4").to_dict()  # the cache keys of random starts stay as they were
    path = tmp_path / "w.pt"
    torch.save(Backbone(ModelConfig("vit_tiny_p4")).state_dict(), path)
    first = ModelConfig("vit_tiny_p4", pretrained=str(path)).to_dict()["pretrained"]
    torch.save(Backbone(ModelConfig("vit_tiny_p4")).state_dict(), path)  # other weights, same name
    assert first.startswith("w.pt@") and ModelConfig("vit_tiny_p4", pretrained=str(path)).to_dict()["pretrained"] != first
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline, nothing cached: the error says how to get the weights
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(RuntimeError, match="fetched from the Hugging Face hub on first use"):
        Backbone(ModelConfig("vit_tiny_patch16_224", img_size=32, in_chans=3, pretrained="timm"))
