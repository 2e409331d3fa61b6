"""Backbones from timm, sized for 28-32 px images, behind one small wrapper.

Presets (``MODEL_PRESETS``) are ViTs with 4 px patches (a 7x7 grid at 28 px; ``vit_tiny_p7``: 7 px
patches, a 4x4 grid, ~3x faster on CPU) and ResNets (-18, and -10 at full, half and quarter width)
whose stem keeps the resolution (3x3 conv, stride 1, no max-pool); ``cnn_small`` is a two-block CNN
(:class:`SmallCNN`), the convolutional baseline. Any other timm model name works too
(``Backbone("convnext_atto", ...)``); models without patch tokens support every pretext task but MIM.
:func:`training_flops` prices a model's training step, :func:`nearest_in_flops` picks the model of a
list that costs about what another does (comparisons at equal compute).

The ViT is built with ``global_pool="avg"`` and ``fc_norm=False``: the final LayerNorm is applied to
every token and the head reads the mean of the normalised patch tokens, the default feature here
(MOOD's code puts the norm after the mean and L2-normalises: ``pool="mood"``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, replace
from typing import Callable, Sequence

import timm
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mood.core import zoo
from mood.core.weights import check_pretrained, describe, load_checkpoint, timm_pretrained

MODEL_PRESETS: dict[str, dict] = {
    # name: kwargs of timm's VisionTransformer (or "resnet" for the small-image ResNet)
    "vit_tiny_p4": dict(patch_size=4, embed_dim=128, depth=4, num_heads=4),
    "vit_tiny_p7": dict(patch_size=7, embed_dim=128, depth=4, num_heads=4),  # 16 tokens: ~3x vit_tiny_p4's speed on CPU
    "vit_small_p4": dict(patch_size=4, embed_dim=192, depth=6, num_heads=3),
    "vit_s_p4": dict(patch_size=4, embed_dim=384, depth=12, num_heads=6),  # ViT-S/4: the gpu profile
    "resnet18_small": dict(resnet="resnet18"),
    "resnet10_small": dict(resnet="resnet10t"),  # a lighter ResNet for CPU ablations
    # Training FLOPs per 28 px image (forward + backward, mood.core.models.training_flops): vit_tiny_p7 81 M;
    # resnet10_quarter 117 M (1.4x), resnet10_narrow 364 M (4.5x). Measured here (2-core CPU, batch 256,
    # channels-last): 640, 390 and 190 img/s.
    "resnet10_quarter": dict(resnet="resnet10t", channels=(16, 32, 64, 128)),  # quarter width: nearest ViT-tiny/7
    "resnet10_narrow": dict(resnet="resnet10t", channels=(32, 64, 128, 256)),  # half width
    "cnn_small": dict(cnn=(32, 64)),  # two conv blocks: the small convolutional baseline
    # the same blocks, flattened into a 256-unit dense layer (LeNet-style, ~0.9M weights): enough
    # capacity to memorise 10,000 images, noisy labels included (the Unleashing-Mask regime)
    "cnn_dense": dict(cnn=(32, 64), hidden=256),
}
POOLS = ("mean", "cls", "mood", "blocks", "tokens")
NON_VIT_POOLS = ("mean", "tokens")  # what a model without patch tokens can pool


@dataclass(frozen=True)
class ModelConfig:
    """Which backbone, for which images.

    Args:
        name: a preset of ``MODEL_PRESETS`` or any timm model name.
        img_size: input side in pixels.
        in_chans: input channels.
        num_classes: classes of the head (10 for Fashion-MNIST).
        drop_path: stochastic-depth rate (ViT only).
        pretrained: initial weights (:mod:`mood.core.weights`): None (random), ``"timm"`` (timm's published
            weights for a timm model name; online on first use), ``"zoo:NAME"`` (a zoo entry,
            :mod:`mood.core.zoo`) or a checkpoint file's path.
    """

    name: str = "vit_tiny_p4"
    img_size: int = 28
    in_chans: int = 1
    num_classes: int = 10
    drop_path: float = 0.1
    pretrained: str | None = None

    def __post_init__(self) -> None:
        check_model_name(self.name)
        check_pretrained(self.pretrained, self.name, self.name in MODEL_PRESETS, self.img_size, self.in_chans)

    def to_dict(self) -> dict:
        """The settings as a dict (part of a stage's cache key): a checkpoint file by its content hash;
        without pretrained weights the key is what it was before they were an option."""
        d = asdict(self)
        if self.pretrained is None:
            del d["pretrained"]
        else:
            d["pretrained"] = describe(self.pretrained)
        return d


def check_model_name(name: str) -> str:
    """``name`` if it is a preset or a timm model, else a ``ValueError`` saying where to look."""
    if name not in MODEL_PRESETS and not timm.is_model(name):
        raise ValueError(f"unknown model {name!r}: not a preset ({', '.join(MODEL_PRESETS)}) "
                         f"and not a timm model (timm.list_models() lists those)")
    return name


class SmallCNN(nn.Module):
    """Two conv-BN-ReLU-maxpool blocks, global average pooling and a linear head: the small
    convolutional classifier the baselines train. It offers the timm methods :class:`Backbone` uses.

    Args:
        in_chans: input channels.
        num_classes: head outputs.
        widths: channels of the two blocks.
        hidden: instead of global average pooling, flatten the feature maps into a dense ReLU layer
            of this width (the pooled feature is then that layer's output).
        img_size: input side (the dense layer's input size depends on it).
    """

    def __init__(self, in_chans: int = 1, num_classes: int = 10, widths: tuple[int, int] = (32, 64),
                 hidden: int | None = None, img_size: int = 28) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out in zip((in_chans, *widths[:-1]), widths):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                       nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
        self.body = nn.Sequential(*layers)
        side = img_size // 2 ** len(widths)
        self.dense = (nn.Sequential(nn.Flatten(), nn.Linear(widths[-1] * side * side, hidden), nn.ReLU(inplace=True))
                      if hidden is not None else None)
        self.num_features = hidden if hidden is not None else widths[-1]
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, C, H, W]`` -> feature maps ``[N, D, H/4, W/4]``."""
        return self.body(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature maps -> pooled features ``[N, D]`` (``pre_logits``) or logits ``[N, K]``."""
        x = x.mean((2, 3)) if self.dense is None else self.dense(x)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes)


def _build_net(cfg: ModelConfig) -> nn.Module:
    if cfg.pretrained == "timm":
        try:
            return timm_pretrained(cfg.name, img_size=cfg.img_size, in_chans=cfg.in_chans, num_classes=cfg.num_classes)
        except RuntimeError as err:
            if not isinstance(err.__cause__, TypeError):  # a convolutional model takes no img_size
                raise
            return timm_pretrained(cfg.name, in_chans=cfg.in_chans, num_classes=cfg.num_classes)
    net = _build_random(cfg)
    if cfg.pretrained is not None:
        load_checkpoint(net, zoo.backbone_path(cfg.pretrained) if zoo.is_zoo(cfg.pretrained) else cfg.pretrained)
    return net


def _build_random(cfg: ModelConfig) -> nn.Module:
    preset = MODEL_PRESETS.get(cfg.name)
    if preset is not None and "cnn" in preset:
        return SmallCNN(cfg.in_chans, cfg.num_classes, preset["cnn"], preset.get("hidden"), cfg.img_size)
    if preset is not None and "resnet" not in preset:
        return VisionTransformer(img_size=cfg.img_size, in_chans=cfg.in_chans, num_classes=cfg.num_classes,
                                 global_pool="avg", fc_norm=False, drop_path_rate=cfg.drop_path, **preset)
    if preset is not None:
        extra = {k: v for k, v in preset.items() if k != "resnet"}
        net = timm.create_model(preset["resnet"], in_chans=cfg.in_chans, num_classes=cfg.num_classes, **extra)
        # ImageNet's stem divides 28 px by 4 before the first stage; keep full resolution instead.
        net.conv1 = nn.Conv2d(cfg.in_chans, net.bn1.num_features, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
        return net
    check_model_name(cfg.name)
    try:
        return timm.create_model(cfg.name, img_size=cfg.img_size, in_chans=cfg.in_chans, num_classes=cfg.num_classes)
    except TypeError:  # convolutional models take no img_size
        return timm.create_model(cfg.name, in_chans=cfg.in_chans, num_classes=cfg.num_classes)


class Backbone(nn.Module):
    """A timm model with the three views the pipeline needs: patch tokens (MIM), pooled features
    (scoring) and logits (fine-tuning, logit scores).

    Args:
        cfg: see :class:`ModelConfig`.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.net = _build_net(cfg)
        self.is_vit = isinstance(self.net, VisionTransformer)
        self.embed_dim: int = self.net.num_features
        if not self.is_vit:
            # channels-last convolutions measured 1.2x (SmallCNN) to 1.4x (ResNet) faster on CPU
            self.net.to(memory_format=torch.channels_last)
        if self.is_vit:
            self.patch_size: int = self.net.patch_embed.patch_size[0]
            self.grid: tuple[int, int] = tuple(self.net.patch_embed.grid_size)  # type: ignore[assignment]
            # BEiT's [MASK] embedding: replaces masked patches before the position embedding.
            self.mask_token = nn.Parameter(torch.zeros(1, 1, self.embed_dim))
            nn.init.trunc_normal_(self.mask_token, std=0.02)

    @property
    def num_classes(self) -> int:
        return self.net.num_classes

    def reset_head(self, num_classes: int) -> None:
        """A new, freshly initialised classifier with ``num_classes`` outputs."""
        self.net.reset_classifier(num_classes)
        self.cfg = replace(self.cfg, num_classes=num_classes)

    def _require_vit(self, what: str) -> None:
        if not self.is_vit:
            raise ValueError(f"{what} needs a ViT backbone with patch tokens; {self.cfg.name!r} has none. "
                             f"Use a vit_* preset, or a pretext task without masking (classification, simclr)")

    def tokens(self, x: torch.Tensor, mask: torch.Tensor | None = None, norm: bool = True) -> torch.Tensor:
        """All tokens after the final norm (before it with ``norm=False``).

        Args:
            x: ``[N, C, H, W]`` images.
            mask: optional ``[N, L]`` bool, True where a patch is replaced by the mask token.
        Returns:
            ``[N, P + L, D]``: P prefix tokens (the CLS token) then L patch tokens.
        """
        self._require_vit("tokens()")
        t = self.net.blocks(self._embedded(x, mask))
        return self.net.norm(t) if norm else t

    def _embedded(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The tokens ``[N, P + L, D]`` entering the first block (masked patches replaced)."""
        net = self.net
        t = net.patch_embed(x)  # [N, L, D]
        if mask is not None:
            w = mask.unsqueeze(-1).to(t.dtype)
            t = t * (1 - w) + self.mask_token.to(t.dtype) * w
        return net.norm_pre(net.patch_drop(net._pos_embed(t)))

    def features(self, x: torch.Tensor, pool: str = "mean") -> torch.Tensor:
        """Pooled features ``[N, D]`` of images ``x [N, C, H, W]``:

        - ``"mean"``: mean of the normalised patch tokens (what the head reads);
        - ``"cls"``: the normalised CLS token;
        - ``"mood"``: MOOD's own feature, as its code computes it: a LayerNorm on the mean of the patch
          tokens (here the model's final norm, applied after pooling instead of before), then L2
          normalisation;
        - ``"blocks"``: the mean patch token after every block, concatenated (``[N, depth * D]``; the
          last block's before the final norm): a feature ensemble over depth in the spirit of Lee et
          al. (2018), whose lower blocks keep the low-level statistics that the last one discards;
        - ``"tokens"``: the last block's patch tokens (before the final norm), flattened in patch order
          (``[N, L * D]``): every pooled feature above averages over positions and so discards where
          in the image a pattern sits, which is what a raw-pixel distance measures.

        Non-ViT models pool as timm does (global average) for ``"mean"``; their ``"tokens"`` are the
        last feature map's positions, flattened (``[N, C * H * W]``)."""
        return self.pooled(x, (pool,))[pool]

    def pooled(self, x: torch.Tensor, pools: Sequence[str]) -> dict[str, torch.Tensor]:
        """Every feature of ``pools`` (see :meth:`features`) and the logits of images ``x [N, C, H, W]``
        from one forward pass: ``{pool: [N, D_pool], ..., "logits": [N, num_classes]}``. The logits
        always come from the head's own pooling, whatever the pools."""
        for pool in pools:
            if pool not in POOLS:
                raise ValueError(f"unknown pool {pool!r}; valid: {', '.join(POOLS)}")
            if not self.is_vit and pool not in NON_VIT_POOLS:
                raise ValueError(f"pool={pool!r} needs a ViT; {self.cfg.name!r} has pool='mean' and 'tokens'")
        views: dict[str, Callable[[], torch.Tensor]]
        if self.is_vit:
            p = self.net.num_prefix_tokens
            t, means = self._embedded(x), []
            for block in self.net.blocks:
                t = block(t)
                if "blocks" in pools:  # only when asked: forward() (training) passes no pool
                    means.append(t[:, p:].mean(1))
            normed = self.net.norm(t)
            mean = normed[:, p:].mean(1)
            views = {"cls": lambda: normed[:, 0],
                     "mood": lambda: F.normalize(self.net.norm(t[:, p:].mean(1)), dim=1),
                     "blocks": lambda: torch.cat(means, dim=1),
                     "tokens": lambda: t[:, p:].flatten(1)}
        else:
            fmap = self.net.forward_features(x)
            mean = self.net.forward_head(fmap, pre_logits=True)
            views = {"tokens": lambda: fmap.flatten(1)}
        out = {pool: mean if pool == "mean" else views[pool]() for pool in pools}
        out["logits"] = self.head(mean)
        return out

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, num_classes]`` from pooled features ``[N, D]``."""
        return self.net.get_classifier()(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, num_classes]`` of images ``[N, C, H, W]``."""
        return self.pooled(x, ())["logits"]

    def head_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The linear head's ``W [C, D]`` and ``b [C]`` (ViM needs them)."""
        lin = self.net.get_classifier()
        if not isinstance(lin, nn.Linear):
            raise ValueError(f"{self.cfg.name!r} has no linear head")
        return lin.weight, lin.bias


def timm_create_args(cfg: ModelConfig) -> dict:
    """How plain timm builds this backbone: ``timm.create_model(args["model_name"], **args["kwargs"])``
    (a ViT preset is timm's ``VisionTransformer`` with other sizes; the model name only picks the class
    and its weight-loading rules, the kwargs set every size)."""
    preset = MODEL_PRESETS.get(cfg.name)
    if preset is None:
        return {"model_name": cfg.name, "kwargs": {"img_size": cfg.img_size, "in_chans": cfg.in_chans}}
    if "cnn" in preset or "resnet" in preset:
        raise ValueError(f"model {cfg.name!r} is a mood preset that plain timm does not build; load it with mood's Backbone")
    return {"model_name": "vit_tiny_patch16_224",
            "kwargs": {**preset, "img_size": cfg.img_size, "in_chans": cfg.in_chans, "global_pool": "avg", "fc_norm": False}}


def create_backbone(name: str = "vit_tiny_p4", **kwargs) -> Backbone:
    """``Backbone(ModelConfig(name, **kwargs))``."""
    return Backbone(ModelConfig(name=name, **kwargs))


@functools.lru_cache(maxsize=None)
def training_flops(name: str, img_size: int = 28, in_chans: int = 1, num_classes: int = 10) -> float:
    """FLOPs of one training step per image: forward and backward of the classifier on one
    ``(1, in_chans, img_size, img_size)`` image, counted by ``torch.utils.flop_counter`` (matrix
    products and convolutions; norms and activations are not counted)."""
    net = create_backbone(name, img_size=img_size, in_chans=in_chans, num_classes=num_classes)
    with FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, in_chans, img_size, img_size)).sum().backward()
    return float(counter.get_total_flops())


def resnet_presets() -> tuple[str, ...]:
    """The ResNet presets of ``MODEL_PRESETS``."""
    return tuple(n for n, p in MODEL_PRESETS.items() if "resnet" in p)


def nearest_in_flops(reference: ModelConfig, candidates: Sequence[str]) -> str:
    """The candidate whose :func:`training_flops` is nearest the reference model's (on a log scale:
    2x more and 2x fewer are equally far), for comparisons at equal compute."""
    if not candidates:
        raise ValueError("nearest_in_flops needs at least one candidate model")
    size = (reference.img_size, reference.in_chans, reference.num_classes)
    ref = training_flops(reference.name, *size)
    return min(candidates, key=lambda n: abs(math.log(training_flops(n, *size) / ref)))
