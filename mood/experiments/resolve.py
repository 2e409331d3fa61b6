"""One resolver: everything that decides a run's configuration, in one documented order.

    run = resolve("cpu", "multi-class", finetune_seed=1)
    run.profile.finetune.layer_decay, run.key

Every caller (the command line, the chapters, the pipeline, the baselines, the ablations, Unleashing
Mask, the benchmarks and the tests) takes its configuration from :func:`resolve`; the stages read the
resolved :class:`Run` and change nothing in it (every config dataclass is frozen), so what is printed
is what trains and what keys the cache. The order, each step seeing the result of the one before:

1. the profile: a name (``MOOD_PROFILE``, else ``cpu``, when none is given) or a :class:`Profile`;
2. the base seed (a command's ``--seed``, a chapter's ``seed``: every stage), then the caller's changes:
   model fields (``model=``: another backbone, pretrained weights), ``img_size`` and stage settings
   (``changes=``, e.g. the command line's ``--set``). Stage changes also win over the profile's
   one-class and ablation overrides: what a caller asks for holds whatever the protocol;
3. the protocol, built from its name (its OOD sets sized by the profile's ``eval.n_ood``);
4. the protocol kind's overrides (one-class: ``profile.one_class``);
5. the scale: ``"ablation"`` applies ``profile.ablation``, which wins over step 4;
6. the variant's knobs (an ablation's pretext, model, label smoothing, masking, epochs, score, feature);
7. the baseline (:class:`FromScratch`): no pretraining, fine-tuning from a random init as many
   optimiser steps as pretraining and fine-tuning together; a non-ViT backbone scores its own feature;
8. the run's seeds: ``seed`` seeds every stage (and Unleashing Mask's training), then ``finetune_seed``
   the fine-tuning alone (the seeds of one shared pretrained backbone);
9. what the protocol's data dictate: the image format (resized to ``img_size`` when set) and the
   model's head, input size and channels;
10. the rules that follow from all of the above, once: no layer-wise lr decay when fine-tuning starts
    from a random init (pretext ``none`` without published weights), and a score read from the linear
    head (ViM) scores the head's input, the mean token.

Steps 1 and 2 alone make a chapter's or a command's base profile (:func:`base_profile`), from which
it resolves each run.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass, replace
from typing import Any, Mapping

from mood.core import cache
from mood.core.engine import TrainConfig
from mood.core.models import NON_VIT_POOLS, Backbone
from mood.core.protocols import Protocol, make_protocol, parse_protocol
from mood.core.scores import get_score
from mood.core.typecheck import override
from mood.experiments.config import FinetuneConfig, Profile, StageOverrides, UnleashConfig
from mood.experiments.profiles import get_profile

SCALES = ("main", "ablation")
HEAD_POOL = "mean"  # what a backbone's linear head reads


@dataclass(frozen=True)
class Variant:
    """One setting of an ablation; ``None`` keeps the profile's value.

    Args:
        name: row label in the tables.
        pretext: pretext task (:data:`mood.core.pretext.PRETEXTS`).
        model: backbone preset or timm name.
        finetune: fine-tune on the ID labels after pretraining.
        label_smoothing: fine-tuning label smoothing.
        intermediate: pretrain on a broader offline corpus and fine-tune on its labels before the ID
            fine-tuning (MOOD's intermediate fine-tuning on ImageNet-21k, scaled down).
        mask_ratio: masked fraction of patches (MIM pretext tasks).
        mask_kind: ``"block"`` or ``"random"``.
        pretrain_epochs: pretraining length.
        detector: OOD score (any name of :data:`mood.core.scores.SCORES`).
        pool: a pool of :data:`mood.core.models.POOLS` (None: the profile's; ViM's, the mean token its head reads).
        normalize: L2-normalise features before Mahalanobis.
        from_scratch: no pretraining; fine-tune a random init as many optimiser steps as the profile's
            pretraining and fine-tuning together (:class:`FromScratch` with this variant's ``model``), so
            the variant is the equal-compute baseline of chapters 6-7, trained and cached once.
    """

    name: str
    pretext: str | None = None
    model: str | None = None
    finetune: bool = True
    label_smoothing: float | None = None
    intermediate: bool = False
    mask_ratio: float | None = None
    mask_kind: str | None = None
    pretrain_epochs: int | None = None
    detector: str = "mahalanobis"
    pool: str | None = None
    normalize: bool = False
    from_scratch: bool = False

    def __post_init__(self) -> None:
        get_score(self.detector)
        if self.from_scratch and (self.pretext not in (None, "none") or self.intermediate or not self.finetune):
            raise ValueError(f"variant {self.name!r}: from_scratch trains no pretext and fine-tunes; drop pretext, "
                             f"intermediate and finetune=False")


@dataclass(frozen=True)
class FromScratch:
    """The equal-compute baseline: no pretraining; fine-tuning from a random initialisation as many
    optimiser steps long as the profile's pretraining and fine-tuning together (same batch size as the
    fine-tuning).

    Args:
        model: another backbone (e.g. ``cnn_small``); None keeps the profile's.
    """

    model: str | None = None


@dataclass(frozen=True)
class Run:
    """One run's configuration, fully resolved (:func:`resolve`).

    Attributes:
        protocol: the data: ID training and test sets, OOD test sets.
        profile: every stage's configuration, as the stages will read it.
        detector: the OOD score of the run's tables.
        scale: ``"main"`` or ``"ablation"``.
        finetuned: False scores the pretrained backbone (an ablation's ``finetune=False``).
    """

    protocol: Protocol
    profile: Profile
    detector: str
    scale: str = "main"
    finetuned: bool = True

    @property
    def key(self) -> str:
        """A hash of the resolved training and scoring configuration and of the training code's version
        (:data:`mood.core.cache.CACHE_VERSION`): equal keys, equal models and scores (every results
        table's ``run key``; :func:`mood.experiments.tables.key_conflicts` checks the rule)."""
        p = self.profile
        spec = {"protocol": self.protocol.name, "model": p.model.to_dict(), "pretrain": p.pretrain.to_dict(),
                "finetune": p.finetune.to_dict() if self.finetuned else None, "eval": asdict(p.eval),
                "format": asdict(p.format), "detector": self.detector}
        if cache.CACHE_VERSION > 2:  # keys made at version 2 stay as they were: its training is today's (the canary)
            spec["cache version"] = cache.CACHE_VERSION
        return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:12]

    def key_with(self, **stage: Any) -> str:
        """The key of a model made from this run by a further stage (e.g. outlier exposure), ``stage``
        naming it: equal keys, equal stages."""
        return hashlib.sha256(json.dumps({"run": self.key, **stage}, sort_keys=True, default=str).encode()).hexdigest()[:12]

    def describe(self) -> str:
        """One line: what trains and how it is scored (a chapter or command prints it once)."""
        p = self.profile
        size = p.model.img_size
        return (f"{self.protocol.name} at {p.name} ({self.scale} scale): {p.model.name} on {size}x{size}x{p.model.in_chans}, "
                f"pretext {p.pretrain.pretext} {p.pretrain.epochs} ep, fine-tuning {p.finetune.epochs} ep "
                f"(smoothing {p.finetune.label_smoothing}, layer decay {p.finetune.layer_decay}), "
                f"seeds {p.pretrain.seed}/{p.finetune.seed}, score {self.detector} on pool {p.eval.pool!r}; key {self.key}")


def check_scale(scale: str) -> None:
    """A ``ValueError`` naming the valid scales unless ``scale`` is one of :data:`SCALES`."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; valid: {', '.join(SCALES)}")


def _seeded(prof: Profile, seed: int | None, finetune_seed: int | None) -> Profile:
    """Step 8: ``seed`` for every stage and Unleashing Mask's training, then ``finetune_seed`` for the fine-tuning."""
    if seed is not None:
        u = prof.unleash
        prof = replace(prof, pretrain=replace(prof.pretrain, seed=seed), finetune=replace(prof.finetune, seed=seed),
                       unleash=replace(u, train=replace(u.train, seed=seed), tune=replace(u.tune, seed=seed)))
    if finetune_seed is not None:
        prof = replace(prof, finetune=replace(prof.finetune, seed=finetune_seed))
    return prof


def base_profile(profile: str | Profile | None = None, *, changes: StageOverrides | None = None,
                 model: Mapping[str, Any] | None = None, img_size: int | None = None,
                 seed: int | None = None) -> Profile:
    """Steps 1 and 2 of :func:`resolve`: the profile a chapter or a command starts from, with its base
    ``seed`` (every stage) and the caller's changes, which win over it. Every change is checked
    (field names and types) before anything is loaded or trained."""
    prof = get_profile(profile) if profile is None or isinstance(profile, str) else profile
    prof = _seeded(prof, seed, None)
    if model:
        prof = replace(prof, model=override(prof.model, **model))
    if img_size is not None:
        prof = replace(prof, img_size=img_size)
    if changes is not None:
        prof = replace(changes.apply(prof), one_class=prof.one_class.then(changes), ablation=prof.ablation.then(changes))
    return prof


def train_steps(n_images: int, cfg: TrainConfig) -> int:
    """Optimiser steps of a stage with ``cfg`` on ``n_images`` training images."""
    n = n_images if cfg.max_images is None else min(n_images, cfg.max_images)
    return max(1, n // cfg.batch_size) * cfg.epochs


def _variant(prof: Profile, v: Variant) -> Profile:
    """Step 6."""
    pre = {k: val for k, val in (("pretext", v.pretext), ("mask_ratio", v.mask_ratio), ("mask_kind", v.mask_kind),
                                 ("epochs", v.pretrain_epochs)) if val is not None}
    fine = {"label_smoothing": v.label_smoothing} if v.label_smoothing is not None else {}
    return replace(prof, pretrain=override(prof.pretrain, **pre), finetune=override(prof.finetune, **fine),
                   model=replace(prof.model, name=v.model) if v.model is not None else prof.model,
                   eval=override(prof.eval, pool=v.pool or prof.eval.pool, normalize=v.normalize))


def _from_scratch(prof: Profile, n_images: int, b: FromScratch) -> Profile:
    """Step 7."""
    total = train_steps(n_images, prof.pretrain) + train_steps(n_images, prof.finetune)
    per_epoch = train_steps(n_images, replace(prof.finetune, epochs=1))
    prof = replace(prof, pretrain=replace(prof.pretrain, pretext="none"),
                   finetune=replace(prof.finetune, epochs=max(1, round(total / per_epoch))))
    if b.model is not None:
        prof = replace(prof, model=replace(prof.model, name=b.model))
        if prof.eval.pool not in NON_VIT_POOLS and not Backbone(copy.deepcopy(prof.model)).is_vit:
            prof = replace(prof, eval=replace(prof.eval, pool="mean"))  # the ViT's token pools do not exist here
    return prof


def scoring_pool(detector: str, pool: str) -> str:
    """The feature ``detector`` scores: ``pool``, except for a score built from the linear head (ViM),
    which lives in the head's input space, the mean token (:data:`HEAD_POOL`)."""
    return HEAD_POOL if get_score(detector).needs_head else pool


def resolve(profile: str | Profile | None = None, protocol: str | Protocol = "multi-class", *,
            changes: StageOverrides | None = None, model: Mapping[str, Any] | None = None,
            img_size: int | None = None, scale: str = "main", variant: Variant | None = None,
            baseline: FromScratch | None = None, seed: int | None = None, finetune_seed: int | None = None,
            detector: str | None = None, **protocol_kwargs: Any) -> Run:
    """The configuration of one run, resolved in the module's documented order.

    Args:
        profile: a profile name or a (base) :class:`Profile`.
        protocol: a protocol name (:func:`mood.core.protocols.make_protocol`) or object.
        changes: stage settings that win over every override (step 2).
        model: fields of :class:`~mood.core.models.ModelConfig` to change (step 2).
        img_size: resize every image to this side (step 2).
        scale: ``"main"`` or ``"ablation"`` (step 5).
        variant: an ablation's knobs (step 6); its detector is the run's unless ``detector`` is given;
            a ``from_scratch`` variant is the baseline ``FromScratch(variant.model)``.
        baseline: train from scratch at equal compute (step 7).
        seed: seeds every stage; ``finetune_seed``: the fine-tuning alone, after ``seed`` (step 8).
        detector: the OOD score (default: the variant's, else the profile's ``eval.detector``).
        protocol_kwargs: passed to :func:`~mood.core.protocols.make_protocol` with a protocol name.

    Raises:
        ValueError: a wrong name or value anywhere, before any data is loaded or model trained.
    """
    check_scale(scale)
    prof = base_profile(profile, changes=changes, model=model, img_size=img_size)
    det = detector or (variant.detector if variant is not None else prof.eval.detector)
    get_score(det)
    if isinstance(protocol, str):
        spec, _ = parse_protocol(protocol)
        if spec.ood_sets:
            protocol_kwargs.setdefault("n_ood", prof.eval.n_ood)
        protocol = make_protocol(protocol, **protocol_kwargs)
    if protocol.kind == "one-class":
        prof = prof.one_class.apply(prof)
    if scale == "ablation":
        prof = prof.ablation.apply(prof)
    if variant is not None:
        prof = _variant(prof, variant)
        if variant.from_scratch:
            baseline = baseline or FromScratch(variant.model)
    if baseline is not None:
        prof = _from_scratch(prof, len(protocol.train), baseline)
    prof = _seeded(prof, seed, finetune_seed)
    fmt = protocol.format or prof.format  # CIFAR's 32 px RGB for its protocols
    fmt = replace(fmt, size=prof.img_size) if prof.img_size else fmt
    prof = replace(prof, format=fmt, model=replace(prof.model, num_classes=protocol.num_classes, img_size=fmt.size,
                                                   in_chans=fmt.channels))
    if prof.pretrain.pretext == "none" and prof.model.pretrained is None:
        # A random init has no pretrained lower layers for layer-wise lr decay to keep: it would only
        # slow them, handicapping every from-scratch model against the pretrained ones.
        prof = replace(prof, finetune=replace(prof.finetune, layer_decay=None))
    prof = replace(prof, eval=replace(prof.eval, pool=scoring_pool(det, prof.eval.pool)))
    return Run(protocol, prof, det, scale, finetuned=variant.finetune if variant is not None else True)


SEED_KINDS = ("headline", "studies", "unleash")


def seeds_of(prof: Profile, seed: int = 0, kind: str = "headline") -> tuple[int, ...]:
    """The seeds a chapter runs, as offsets from its base ``seed``: ``"headline"`` the profile's
    fine-tuning seeds (chapters 6-8), ``"studies"`` an ablation study's (the fine-tuning seeds at the
    main scale, where they fine-tune the main chapters' backbones; ``ablation_seeds`` at the ablation
    scale), ``"unleash"`` Unleashing Mask's (``unleash.seeds``)."""
    if kind not in SEED_KINDS:
        raise ValueError(f"seeds_of: unknown kind {kind!r}; valid: {', '.join(SEED_KINDS)}")
    offsets = {"headline": prof.seeds, "unleash": prof.unleash.seeds,
               "studies": prof.seeds if prof.plan.ablation_scale == "main" else prof.ablation_seeds}[kind]
    return tuple(seed + s for s in offsets)


def outlier_exposure_finetune(cfg: FinetuneConfig, epochs: float) -> FinetuneConfig:
    """The fine-tuning of outlier exposure (chapter 8), going on from a fine-tuned MOOD model with its
    few OOD images as an extra class: ``epochs`` more at a quarter of the learning rate, warming up
    for at most a fifth of an epoch."""
    return override(cfg, epochs=epochs, lr=cfg.lr / 4, warmup_epochs=min(0.2, epochs / 2))


def unleash_tune(cfg: UnleashConfig, method: str) -> TrainConfig:
    """The tuning stage of Unleashing Mask's ``method``: ``cfg.tune``, except that UMAP's mask scores
    train with AdamW at ``cfg.umap_lr`` whatever the weights' optimiser (their gradients are the
    weights' times the loss gradient, too small and uneven for one SGD learning rate)."""
    return replace(cfg.tune, lr=cfg.umap_lr, optimizer="adamw") if method == "umap" else cfg.tune


__all__ = ["SEED_KINDS", "seeds_of", "outlier_exposure_finetune", "unleash_tune",
           "SCALES", "check_scale", "Variant", "FromScratch", "Run", "base_profile", "resolve", "scoring_pool", "train_steps"]
