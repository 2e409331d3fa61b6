"""Pretext tasks behind one interface, so an ablation swaps the task with one argument.

A task is an ``nn.Module`` that owns a :class:`~mood.core.models.Backbone` (as ``.backbone``) and its
own heads, and implements ``loss(x, y, rng) -> (loss, metrics)`` for a batch ``x [N, C, H, W]``,
labels ``y [N]`` and a :class:`Rng` (seeded numpy + torch generators for masks and views).

============== ======================================================================
``beit``        BEiT: blockwise-mask ~40% of patches, predict each masked patch's
                discrete visual token (:class:`~mood.core.tokenizer.PatchTokenizer`) with CE.
``simmim``      SimMIM: random-mask 60% of patches, regress their pixels (L1).
``mae``         MAE: drop 75% of patches from the encoder, a small decoder regresses
                their (per-patch normalised) pixels (MSE).
``classification`` supervised CE on the pretraining labels (the "recognition" pretext).
``simclr``      SimCLR: two augmented views, NT-Xent over a projection head.
``none``        no pretraining (random initialisation).
============== ======================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import nn

from mood.core import augment
from mood.core.io import atomic_torch_save
from mood.core.masking import MASK_KINDS, MaskSampler
from mood.core.models import Backbone
from mood.core.tokenizer import PatchTokenizer, patchify

# Each MIM method's published masking (ratio, kind): the task's default, and what a config that names
# it explicitly is folded back to (PretrainConfig), so both name one cached model.
MASK_DEFAULTS: dict[str, tuple[float, str]] = {"beit": (0.4, "block"), "simmim": (0.6, "random"), "mae": (0.75, "random")}


@dataclass
class Rng:
    """Random streams of one training epoch: ``torch_gen`` (on the training device, so that drawing
    masks, views and batch orders never waits on the host) and ``np_rng`` (host-side draws)."""

    np_rng: np.random.Generator
    torch_gen: torch.Generator

    @classmethod
    def seeded(cls, *seed: int, device: str | torch.device = "cpu") -> "Rng":
        s = int(np.random.SeedSequence(list(seed)).generate_state(1)[0])
        return cls(np.random.default_rng(s), torch.Generator(device=device).manual_seed(s))


def loss_floor(loss: torch.Tensor, floor: float | None) -> torch.Tensor:
    """``|loss - b| + b`` (Ishida et al. 2020's flooding; Unleashing Mask's UM loss with an estimated
    ``b``): equal to ``loss`` above the floor ``b``, mirrored below it, so gradient descent lowers
    the loss while it is above ``b`` and raises it once it falls below. ``floor=None`` is ``loss``."""
    return loss if floor is None else (loss - floor).abs() + floor


def _masked_mean(per_patch: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``per_patch [N, L]`` over the hidden patches of ``mask [N, L]`` (a weighted mean rather
    than boolean indexing, whose size would have to travel to the host)."""
    return (per_patch * mask).sum() / mask.sum()


class Classification(nn.Module):
    """Cross-entropy on the backbone's logits, with label smoothing and optional light augmentation.
    Serves as the recognition pretext task, as the fine-tuning objective and, with ``floor``, as
    Unleashing Mask's tuning objective.

    Args:
        backbone: the model; its head must have as many outputs as there are classes.
        label_smoothing: mass spread uniformly over all classes (MOOD fine-tunes with 0.1).
        augment: shift-and-flip each batch (:func:`mood.core.augment.finetune_view`).
        floor: the batch-mean cross-entropy is floored at this value (:func:`loss_floor`).
    """

    def __init__(self, backbone: Backbone, label_smoothing: float = 0.0, augment: bool = True,
                 floor: float | None = None) -> None:
        super().__init__()
        self.backbone, self.label_smoothing, self.augment, self.floor = backbone, label_smoothing, augment, floor

    def loss(self, x: torch.Tensor, y: torch.Tensor, rng: Rng) -> tuple[torch.Tensor, dict[str, float]]:
        if self.augment:
            x = augment.finetune_view(x, rng.torch_gen)
        logits = self.backbone(x)
        ce = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
        metrics = {"acc": (logits.argmax(1) == y).float().mean().detach()}
        if self.floor is not None:
            metrics["ce"] = ce.detach()
        return loss_floor(ce, self.floor), metrics


class BeitMIM(nn.Module):
    """BEiT-style masked image modeling with a k-means visual tokenizer.

    Args:
        backbone: a ViT backbone.
        tokenizer: a fitted :class:`PatchTokenizer` with the ViT's patch size.
        mask_ratio: fraction of patches masked (BEiT: 0.4).
        mask_kind: ``"block"`` (BEiT) or ``"random"``.
    """

    def __init__(self, backbone: Backbone, tokenizer: PatchTokenizer, mask_ratio: float = MASK_DEFAULTS["beit"][0],
                 mask_kind: str = MASK_DEFAULTS["beit"][1], seed: int = 0) -> None:
        super().__init__()
        backbone._require_vit("BEiT MIM")
        if tokenizer.patch_size != backbone.patch_size:
            raise ValueError(f"tokenizer patch {tokenizer.patch_size} != ViT patch {backbone.patch_size}")
        self.backbone, self.tokenizer = backbone, tokenizer
        self.mask_ratio, self.mask_kind = mask_ratio, mask_kind
        self.masks = MaskSampler(backbone.grid, mask_ratio, mask_kind, seed)
        self.lm_head = nn.Linear(backbone.embed_dim, tokenizer.vocab_size)
        nn.init.trunc_normal_(self.lm_head.weight, std=0.02)
        nn.init.zeros_(self.lm_head.bias)

    def predict(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Token logits ``[N, L, K]`` at every position of ``x [N, C, H, W]`` under ``mask [N, L]``."""
        t = self.backbone.tokens(x, mask)[:, self.backbone.net.num_prefix_tokens:]
        return self.lm_head(t)

    def loss(self, x: torch.Tensor, y: torch.Tensor, rng: Rng) -> tuple[torch.Tensor, dict[str, float]]:
        target = self.tokenizer.encode(x)  # [N, L]
        mask = self.masks.sample(len(x), rng.torch_gen)
        logits = self.predict(x, mask)  # [N, L, K]
        ce = F.cross_entropy(logits.float().flatten(0, 1), target.flatten(), reduction="none").view_as(target)
        hits = (logits.argmax(-1) == target) & mask
        return _masked_mean(ce, mask), {"token_acc": (hits.sum() / mask.sum()).detach()}


class SimMIM(nn.Module):
    """SimMIM: mask patches with the mask token, regress their raw (normalised) pixels with L1.

    Args:
        backbone: a ViT backbone.
        mask_ratio: fraction of patches masked (SimMIM: 0.6).
        mask_kind: ``"random"`` (SimMIM) or ``"block"``.
    """

    def __init__(self, backbone: Backbone, mask_ratio: float = MASK_DEFAULTS["simmim"][0],
                 mask_kind: str = MASK_DEFAULTS["simmim"][1], seed: int = 0) -> None:
        super().__init__()
        backbone._require_vit("SimMIM")
        self.backbone, self.mask_ratio, self.mask_kind = backbone, mask_ratio, mask_kind
        self.masks = MaskSampler(backbone.grid, mask_ratio, mask_kind, seed)
        p, c = backbone.patch_size, backbone.cfg.in_chans
        self.pixel_head = nn.Linear(backbone.embed_dim, c * p * p)

    def predict(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pixel predictions ``[N, L, C*p*p]`` for every patch of ``x`` under ``mask [N, L]``."""
        t = self.backbone.tokens(x, mask)[:, self.backbone.net.num_prefix_tokens:]
        return self.pixel_head(t)

    def loss(self, x: torch.Tensor, y: torch.Tensor, rng: Rng) -> tuple[torch.Tensor, dict[str, float]]:
        mask = self.masks.sample(len(x), rng.torch_gen)
        pred = self.predict(x, mask)
        target = patchify(x, self.backbone.patch_size)
        return _masked_mean((pred.float() - target).abs().mean(-1), mask), {}


class MAE(nn.Module):
    """Masked autoencoder: the encoder sees only the visible patches; a light decoder fills in.

    Args:
        backbone: a ViT backbone (the encoder).
        mask_ratio: fraction of patches removed (MAE: 0.75).
        decoder_dim: width of the decoder.
        decoder_depth: transformer blocks in the decoder.
        norm_pix: regress per-patch normalised pixels (MAE's better variant).
    """

    def __init__(self, backbone: Backbone, mask_ratio: float = MASK_DEFAULTS["mae"][0], decoder_dim: int = 96,
                 decoder_depth: int = 2, norm_pix: bool = True) -> None:
        super().__init__()
        backbone._require_vit("MAE")
        self.backbone, self.mask_ratio, self.norm_pix = backbone, mask_ratio, norm_pix
        self.masks = MaskSampler(backbone.grid, mask_ratio, "random")
        num_patches = backbone.grid[0] * backbone.grid[1]
        p, c = backbone.patch_size, backbone.cfg.in_chans
        self.decoder_embed = nn.Linear(backbone.embed_dim, decoder_dim)
        self.decoder_mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos = nn.Parameter(torch.zeros(1, 1 + num_patches, decoder_dim))
        self.decoder_blocks = nn.Sequential(*[Block(decoder_dim, num_heads=4) for _ in range(decoder_depth)])
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, c * p * p)
        nn.init.trunc_normal_(self.decoder_mask_token, std=0.02)
        nn.init.trunc_normal_(self.decoder_pos, std=0.02)

    def _visible(self, mask: torch.Tensor) -> torch.Tensor:
        """``[N, L_vis]`` positions of the visible patches of ``mask [N, L]`` in row-major order (a sort,
        not boolean indexing, so the count never travels to the host)."""
        order = (~mask).to(torch.uint8).argsort(dim=1, descending=True, stable=True)
        return order[:, :mask.shape[1] - self.masks.num_masked]

    def forward_encoder(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Encodes the visible patches: ``[N, 1 + L_vis, D]`` (CLS first). ``mask [N, L]``, True = removed,
        ``self.masks.num_masked`` in every row."""
        net = self.backbone.net
        t = net.patch_embed(x) + net.pos_embed[:, net.num_prefix_tokens:]
        n, _, d = t.shape
        keep = self._visible(mask)
        visible = t.gather(1, keep[..., None].expand(-1, -1, d))
        cls = (net.cls_token + net.pos_embed[:, :1]).expand(n, -1, -1)
        return net.norm(net.blocks(torch.cat([cls, visible], 1)))

    def forward_decoder(self, latent: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pixel predictions ``[N, L, C*p*p]`` from encoded visible tokens."""
        z = self.decoder_embed(latent)
        n, L = mask.shape
        keep = self._visible(mask)
        full = self.decoder_mask_token.expand(n, L, -1).to(z.dtype)
        full = full.scatter(1, keep[..., None].expand(-1, -1, z.shape[-1]), z[:, 1:])
        z = torch.cat([z[:, :1], full], 1) + self.decoder_pos
        return self.decoder_pred(self.decoder_norm(self.decoder_blocks(z)))[:, 1:]

    def loss(self, x: torch.Tensor, y: torch.Tensor, rng: Rng) -> tuple[torch.Tensor, dict[str, float]]:
        mask = self.masks.sample(len(x), rng.torch_gen)
        pred = self.forward_decoder(self.forward_encoder(x, mask), mask)
        target = patchify(x, self.backbone.patch_size)
        if self.norm_pix:
            mu, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
            target = (target - mu) / (var + 1e-6).sqrt()
        return _masked_mean(((pred.float() - target) ** 2).mean(-1), mask), {}


class SimCLR(nn.Module):
    """SimCLR: NT-Xent between two augmented views of each image.

    Args:
        backbone: any backbone.
        proj_dim: output size of the 2-layer projection head.
        temperature: softmax temperature of NT-Xent.
    """

    def __init__(self, backbone: Backbone, proj_dim: int = 64, temperature: float = 0.2) -> None:
        super().__init__()
        d = backbone.embed_dim
        self.backbone, self.temperature = backbone, temperature
        self.projector = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, proj_dim))

    def loss(self, x: torch.Tensor, y: torch.Tensor, rng: Rng) -> tuple[torch.Tensor, dict[str, float]]:
        views = torch.cat([augment.contrastive_view(x, rng.torch_gen), augment.contrastive_view(x, rng.torch_gen)])
        z = F.normalize(self.projector(self.backbone.features(views)).float(), dim=1)  # [2N, P]
        n = len(x)
        sim = z @ z.T / self.temperature
        sim.fill_diagonal_(float("-inf"))
        positives = torch.cat([torch.arange(n, 2 * n, device=x.device), torch.arange(n, device=x.device)])
        loss = F.cross_entropy(sim, positives)
        return loss, {"pos_acc": (sim.argmax(1) == positives).float().mean().detach()}


@dataclass(frozen=True)
class PretextSpec:
    """One pretext task of the registry :data:`PRETEXTS`.

    Attributes:
        name: the name used everywhere (``PretrainConfig.pretext``, the CLI's ``--pretext``, studies).
        summary: one line for help texts.
        build: ``(backbone, tokenizer=, mask=, label_smoothing=, seed=) -> task module`` (``mask``: the
            ``mask_ratio`` / ``mask_kind`` a config set, the rest left to the task's default); None for
            ``"none"`` (random initialisation).
        mask: the published masking ``(ratio, kind)`` of a masked-image-modeling task; None: it masks nothing.
        mask_kinds: the mask kinds it can honour.
        mask_note: why it cannot honour the others, for the error that says so.
        needs_tokenizer: the task predicts discrete visual tokens (BEiT): :func:`make_task` fits one first.
    """

    name: str
    summary: str
    build: Callable[..., nn.Module] | None
    mask: tuple[float, str] | None = None
    mask_kinds: tuple[str, ...] = MASK_KINDS
    mask_note: str = ""
    needs_tokenizer: bool = False


def _beit(backbone: Backbone, *, tokenizer: PatchTokenizer | None, mask: dict, label_smoothing: float,
          seed: int) -> nn.Module:
    if tokenizer is None:
        raise ValueError("beit needs a fitted PatchTokenizer (tokenizer=...); make_task fits one")
    return BeitMIM(backbone, tokenizer, seed=seed, **mask)


PRETEXTS: dict[str, PretextSpec] = {s.name: s for s in (
    PretextSpec("beit", "blockwise-masked patches predict their visual tokens (Bao et al. 2022)", _beit,
                MASK_DEFAULTS["beit"], needs_tokenizer=True),
    PretextSpec("simmim", "randomly masked patches regress their pixels (Xie et al. 2022)",
                lambda backbone, *, mask, seed, **_: SimMIM(backbone, seed=seed, **mask), MASK_DEFAULTS["simmim"]),
    PretextSpec("mae", "the encoder sees 25% of the patches; a decoder regresses the rest (He et al. 2022)",
                lambda backbone, *, mask, **_: MAE(backbone, **{k: v for k, v in mask.items() if k != "mask_kind"}),
                MASK_DEFAULTS["mae"], mask_kinds=("random",),
                mask_note="MAE removes a uniformly random subset of patches from the encoder's input"),
    PretextSpec("classification", "supervised cross-entropy on the pretraining labels",
                lambda backbone, *, label_smoothing, **_: Classification(backbone, label_smoothing=label_smoothing)),
    PretextSpec("simclr", "two augmented views, NT-Xent over a projection head (Chen et al. 2020)",
                lambda backbone, **_: SimCLR(backbone)),
    PretextSpec("none", "no pretraining (random initialisation)", None),
)}
MIM_PRETEXTS: tuple[str, ...] = tuple(name for name, s in PRETEXTS.items() if s.mask is not None)


def get_pretext(name: str) -> PretextSpec:
    """The registry entry of pretext ``name``; a ``ValueError`` listing every valid name otherwise."""
    if name not in PRETEXTS:
        raise ValueError(f"unknown pretext task {name!r}; valid: {', '.join(PRETEXTS)}")
    return PRETEXTS[name]


def build_pretext(name: str, backbone: Backbone, *, tokenizer: PatchTokenizer | None = None,
                  mask_ratio: float | None = None, mask_kind: str | None = None,
                  label_smoothing: float = 0.0, seed: int = 0) -> nn.Module | None:
    """The task module for pretext ``name`` (``None`` for ``"none"``). ``mask_ratio``/``mask_kind``
    default to each method's published value; a setting a task cannot honour is an error, never
    ignored (it would train the same model under a new cache key). ``seed`` seeds the bank of block
    masks (:class:`mood.core.masking.MaskSampler`)."""
    spec = get_pretext(name)
    if spec.mask is None and (mask_ratio is not None or mask_kind is not None):
        raise ValueError(f"{name} masks nothing: mask_ratio/mask_kind apply to {', '.join(MIM_PRETEXTS)} only")
    if mask_kind is not None and mask_kind not in spec.mask_kinds:
        others = [n for n, s in PRETEXTS.items() if s.mask is not None and mask_kind in s.mask_kinds]
        raise ValueError(f"{spec.mask_note or name}; mask_kind={mask_kind!r} is not supported "
                         f"(use {' or '.join(others)} for {mask_kind} masking)")
    mask = {k: v for k, v in (("mask_ratio", mask_ratio), ("mask_kind", mask_kind)) if v is not None}
    if spec.build is None:
        return None
    return spec.build(backbone, tokenizer=tokenizer, mask=mask, label_smoothing=label_smoothing, seed=seed)


TOKENIZER_FILE = "tokenizer.pt"


def make_task(cfg, backbone: Backbone, x: torch.Tensor | None, state_dir: Path) -> nn.Module | None:
    """The pretext task of a pretraining config ``cfg`` (a :class:`mood.experiments.config.PretrainConfig`), with
    what it needs set up first: BEiT's tokenizer is loaded from ``state_dir`` or, the first time,
    fitted on the pretraining images ``x [N, C, H, W]`` (and saved there), like BEiT's dVAE fitted
    once before pretraining and frozen.

    Raises:
        ValueError: BEiT's tokenizer is neither saved nor fittable (``x`` is None).
    """
    tokenizer = None
    if get_pretext(cfg.pretext).needs_tokenizer:
        backbone._require_vit("BEiT MIM")
        tokenizer = PatchTokenizer(backbone.patch_size, backbone.cfg.in_chans, cfg.vocab_size)
        path = Path(state_dir) / TOKENIZER_FILE
        if path.exists():
            tokenizer.load_state_dict(torch.load(path, weights_only=True))
        elif x is None:
            raise ValueError(f"BEiT's tokenizer is not saved in {state_dir} and no images were given to fit it")
        else:
            tokenizer.fit(x, iters=cfg.tokenizer_iters, seed=cfg.seed)
            atomic_torch_save(tokenizer.state_dict(), path)
    return build_pretext(cfg.pretext, backbone, tokenizer=tokenizer, mask_ratio=cfg.mask_ratio, mask_kind=cfg.mask_kind,
                         seed=cfg.seed)
