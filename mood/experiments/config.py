"""One config dataclass per stage, and :class:`Profile`, which holds one of each (the named profiles
that fill them are :mod:`mood.experiments.profiles`).

=========  =======================================================================================
``smoke``   CI: every stage runs for seconds on a few hundred images. Numbers are meaningless.
``cpu``     the default: sized on a 2-core CPU (a 128-wide, 4-deep ViT with 7 px patches trains at
            ~1,600 img/s) so that its models pass the accuracy floor; see the profile's comment.
``gpu``     paper-like scale on one GPU: ViT-S/4, all 60k training images, long schedules.
=========  =======================================================================================

``MOOD_PROFILE`` picks the default profile (``cpu`` when unset).
"""

from __future__ import annotations

import ast
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping, Sequence

from mood.core.engine import TrainConfig
from mood.core.images import ImageFormat
from mood.core.masking import MASK_KINDS
from mood.core.models import POOLS, ModelConfig
from mood.core.pretext import MASK_DEFAULTS, get_pretext
from mood.core.scores import get_score
from mood.core.typecheck import check_changes


@dataclass(frozen=True)
class PretrainConfig(TrainConfig):
    """Pretraining: a pretext task on the protocol's training images.

    Args:
        pretext: one of :data:`mood.core.pretext.PRETEXTS`.
        mask_ratio: fraction of patches masked (None = the method's published value; that value named
            explicitly is stored as None, so both name one cached model).
        mask_kind: ``"block"`` or ``"random"`` (None = the method's own; likewise folded).
        vocab_size: codes of the BEiT tokenizer.
        tokenizer_iters: k-means iterations of the tokenizer.
    """

    pretext: str = "beit"
    mask_ratio: float | None = None
    mask_kind: str | None = None
    vocab_size: int = 256
    tokenizer_iters: int = 20
    lr: float = 1.5e-3
    warmup_epochs: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        get_pretext(self.pretext)  # an unknown name fails here, listing the valid ones
        if self.mask_kind is not None and self.mask_kind not in MASK_KINDS:
            raise ValueError(f"unknown mask kind {self.mask_kind!r}; valid: {', '.join(MASK_KINDS)} or None")
        if self.mask_ratio is not None and not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must lie in (0, 1) or be None, got {self.mask_ratio}")
        ratio, kind = MASK_DEFAULTS.get(self.pretext, (None, None))
        if self.mask_ratio == ratio:
            object.__setattr__(self, "mask_ratio", None)  # frozen: folded once, at construction
        if self.mask_kind == kind:
            object.__setattr__(self, "mask_kind", None)
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2, got {self.vocab_size}")


@dataclass(frozen=True)
class FinetuneConfig(TrainConfig):
    """Fine-tuning on ID labels (MOOD: label smoothing 0.1, layer-wise lr decay).

    Args:
        label_smoothing: cross-entropy label smoothing.
        augment: random shift and flip.
    """

    label_smoothing: float = 0.1
    augment: bool = True
    layer_decay: float | None = 0.75
    lr: float = 1e-3
    warmup_epochs: float = 0.5


@dataclass(frozen=True)
class EvalConfig:
    """Feature extraction and scoring.

    Args:
        pool: a pool of :data:`mood.core.models.POOLS`: ``"mean"`` of the normalised patch tokens (what the
            head reads), ``"cls"``, ``"mood"`` (MOOD's own feature), ``"blocks"`` (every block's mean
            token) or ``"tokens"`` (the last block's patch tokens, flattened: keeps their positions).
        detector: the feature detector of the main tables (any name of :data:`mood.core.scores.SCORES`).
        normalize: L2-normalise features before Mahalanobis.
        max_fit: ID training images whose features fit the detector (None = all).
        max_test: ID test images scored (None = all).
        n_ood: images per OOD set at most.
        fpr_positive: FPR95 convention, ``"id"`` (MOOD) or ``"ood"`` (OpenOOD v1.5).
        batch_size: images per forward pass.
    """

    pool: str = "mean"
    detector: str = "mahalanobis"
    normalize: bool = False
    max_fit: int | None = None
    max_test: int | None = None
    n_ood: int | None = 2000
    fpr_positive: str = "id"
    batch_size: int = 512

    def __post_init__(self) -> None:
        get_score(self.detector)
        if self.pool not in POOLS:
            raise ValueError(f"unknown pool {self.pool!r}; valid: {', '.join(POOLS)}")
        if self.fpr_positive not in ("id", "ood"):
            raise ValueError(f"fpr_positive must be 'id' or 'ood', got {self.fpr_positive!r}")
        for name in ("max_fit", "max_test", "n_ood"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"EvalConfig.{name} must be >= 1 or None (all), got {value}")


@dataclass(frozen=True)
class UnleashConfig:
    """Unleashing Mask (Zhu et al. 2023): an ID classifier trained from scratch with every epoch kept,
    then tuned with the loss floor ``|CE - b| + b``, in a regime where it memorises its training set.

    Args:
        train: the from-scratch training (plain cross-entropy, no label smoothing); ``max_images``
            training images, drawn per seed.
        tune: the extra epochs of UM, UMAP and the plain-CE control, starting from the final model.
        models: backbones studied (presets of :data:`mood.core.models.MODEL_PRESETS` or timm names).
        seeds: seeds of the whole study (training, masks, label noise, evaluation samples).
        noise: the conditions: symmetric label-noise rates of the training (and ID validation)
            labels; 0 is the clean condition.
        augment: random shift and flip while training and tuning (off: the model must memorise).
        floor: the loss floor ``b``; None estimates it with :func:`mood.core.masks.estimate_floor`.
        floor_scales: UM is also run at these multiples of ``b`` (the sweep beside the estimate).
        estimate_keep: fraction of each layer's weights kept when estimating ``b`` (official: 0.965).
        estimate_images: training images whose mean CE estimates ``b`` (None = all used for training).
        umap_keep: fraction of each layer's weights UMAP's learned mask keeps (official: 0.8).
        umap_init: UMAP's initial scores, ``"magnitude"`` (start from magnitude pruning) or
            ``"random"`` (edge-popup's random scores, as the official code).
        umap_lr: peak learning rate of UMAP's mask scores.
        eval_id: ID test images scored at every epoch and in the tables (None = all).
        eval_ood: images per test OOD set scored (None = all).
        eval_fit: ID training images that fit Mahalanobis (None = all used for training).
        val_id: held-out ID training images (never trained on; labels noised like the training
            labels): early stopping on their loss, and the ID side of the validation AUROC.
        val_ood: validation OOD images: held-out ID training images with their 7x7 tiles shuffled
            (:func:`mood.core.images.shuffle_patches`), none of the test OOD sets. The epoch and ``b`` are
            chosen on them.
        curve_scores: scores of the per-epoch curve (ODIN needs a backward pass per image and epoch).
        table_scores: scores of the final tables.
    """

    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=12, lr=1e-3, warmup_epochs=1.0))
    tune: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=3, lr=2e-4, warmup_epochs=0.0))
    models: tuple[str, ...] = ("resnet10_narrow", "vit_tiny_p4")
    seeds: tuple[int, ...] = (0,)
    noise: tuple[float, ...] = (0.0,)
    augment: bool = True
    floor: float | None = None
    floor_scales: tuple[float, ...] = (0.5, 2.0)
    estimate_keep: float = 0.965
    estimate_images: int | None = None
    umap_keep: float = 0.8
    umap_init: str = "magnitude"
    umap_lr: float = 1e-3
    eval_id: int | None = 1000
    eval_ood: int | None = 300
    eval_fit: int | None = 2000
    val_id: int = 1000
    val_ood: int = 1000
    curve_scores: tuple[str, ...] = ("msp", "energy", "odin")
    table_scores: tuple[str, ...] = ("msp", "odin", "energy", "mahalanobis")

    def __post_init__(self) -> None:
        for rate in self.noise:
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"UnleashConfig.noise: rates must lie in [0, 1), got {rate}")
        if not self.noise:
            raise ValueError("UnleashConfig.noise: give at least one condition (0.0 = clean labels)")
        if self.floor is not None and not (math.isfinite(self.floor) and self.floor >= 0):
            raise ValueError(f"UnleashConfig.floor: the loss floor b must be a finite number >= 0 (or None to estimate "
                             f"it), got {self.floor!r}")
        if any(s <= 0 for s in self.floor_scales):
            raise ValueError(f"UnleashConfig.floor_scales must be > 0, got {self.floor_scales}")
        if self.val_id < 1 or self.val_ood < 1:
            raise ValueError(f"UnleashConfig.val_id and val_ood must be >= 1, got {self.val_id}, {self.val_ood}")
        for name in (*self.curve_scores, *self.table_scores):
            get_score(name)
        if not set(self.curve_scores) & set(self.table_scores):
            raise ValueError(f"UnleashConfig: curve_scores {self.curve_scores} and table_scores {self.table_scores} share "
                             f"no score; the epoch and b are picked on one score that both compute (energy by default)")


STAGES = ("pretrain", "finetune", "eval", "unleash")  # the stages a StageOverrides changes, as its fields are named


@dataclass(frozen=True)
class StageOverrides:
    """Changes to the stage configurations for one kind of run (the one-class protocols, the
    ablation scale), checked against the configs' fields and types when the profile is defined.

    Args:
        pretrain: fields of :class:`PretrainConfig` to change.
        finetune: fields of :class:`FinetuneConfig` to change.
        eval: fields of :class:`EvalConfig` to change.
        unleash: fields of :class:`UnleashConfig` to change (e.g. ``floor``).
    """

    pretrain: Mapping[str, Any] = field(default_factory=dict)
    finetune: Mapping[str, Any] = field(default_factory=dict)
    eval: Mapping[str, Any] = field(default_factory=dict)
    unleash: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for stage, cls in (("pretrain", PretrainConfig), ("finetune", FinetuneConfig), ("eval", EvalConfig),
                           ("unleash", UnleashConfig)):
            check_changes(cls, getattr(self, stage), where=f"StageOverrides.{stage}")

    @classmethod
    def parse(cls, settings: Sequence[str]) -> "StageOverrides":
        """Overrides from command-line settings ``stage.field=value`` (e.g. ``pretrain.batch_size=2048``,
        ``finetune.compile=true``); a value is a Python literal (``true``/``false``/``none`` spelled
        either way) or else a string, and is checked against the field's type."""
        stages: dict[str, dict[str, Any]] = {stage: {} for stage in STAGES}
        for text in settings:
            key, sep, raw = text.partition("=")
            stage, dot, name = key.strip().partition(".")
            if not sep or not dot or stage not in stages or not name:
                raise ValueError(f"setting {text!r}: write stage.field=value with stage one of "
                                 f"{', '.join(stages)}, e.g. pretrain.batch_size=2048")
            raw = raw.strip()
            literal = {"true": "True", "false": "False", "none": "None"}.get(raw.lower(), raw)
            try:
                value = ast.literal_eval(literal)
            except (ValueError, SyntaxError):
                value = raw
            stages[stage][name] = value
        return cls(**stages)

    def then(self, later: "StageOverrides") -> "StageOverrides":
        """These changes followed by ``later``'s: a field both set takes ``later``'s value."""
        return StageOverrides(**{stage: {**getattr(self, stage), **getattr(later, stage)} for stage in STAGES})

    def settings(self) -> set[str]:
        """The fields these changes set, as ``stage.field``."""
        return {f"{stage}.{name}" for stage in STAGES for name in getattr(self, stage)}

    def apply(self, prof: "Profile") -> "Profile":
        """A copy of ``prof`` with these changes made."""
        return replace(prof, pretrain=replace(prof.pretrain, **self.pretrain),
                       finetune=replace(prof.finetune, **self.finetune), eval=replace(prof.eval, **self.eval),
                       unleash=replace(prof.unleash, **self.unleash))


@dataclass(frozen=True)
class Plan:
    """Which questions a profile's book asks, and on what: the compute plan (the book's appendix on
    running gives each chapter's measured cost). A profile may ask fewer questions than the full grid;
    it may not answer them less honestly.

    Args:
        ablation_scale: ``"main"`` (the studies fine-tune the main chapters' pretrained backbones with
            their fine-tuning seeds, so a study's reference arm is a main chapter's model, trained once)
            or ``"ablation"`` (every study run trains anew at ``Profile.ablation``, every stage seeded).
        studies: per ablation study (:data:`mood.experiments.studies.STUDIES`), the variants this
            profile trains; a study not named asks its full grid.
        equal_compute: chapters 6 and 7 train their equal-compute baselines (a ViT from scratch and
            a small CNN) themselves; False: the studies' equal-compute arms (chapters 10-11) answer it.
        oe_shots: chapter 8's outlier-exposure shots per OOD source.
    """

    ablation_scale: str = "ablation"
    studies: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    equal_compute: bool = True
    oe_shots: tuple[int, ...] = (1, 5, 10)

    def __post_init__(self) -> None:
        if self.ablation_scale not in ("main", "ablation"):
            raise ValueError(f"Plan.ablation_scale: 'main' or 'ablation', got {self.ablation_scale!r}")
        if not self.oe_shots or not all(isinstance(k, int) and k >= 1 for k in self.oe_shots):
            raise ValueError(f"Plan.oe_shots: positive integers, at least one, got {self.oe_shots!r}")


@dataclass(frozen=True)
class Profile:
    """Every stage's configuration for one scale of run.

    Attributes:
        one_class: overrides for one-class protocols, whose training set is one class (6,000
            images) and which run ten times.
        ablation: overrides for the ablation chapters (their scale).
        ablation_seeds: seeds of every ablation run.
        ablation_protocols: the protocols the ablation chapters train on (each needs its own
            pretraining: a protocol's ID training set is what it pretrains on).
        seeds: fine-tuning seeds of the headline figures (chapters 6-8), each fine-tuning the one
            shared pretrained backbone (``finetune_seed`` of :func:`mood.experiments.resolve.resolve`): their spread
            covers fine-tuning
            and baseline training, not pretraining.
        baseline_seeds: how many of ``seeds`` (the first) the equal-compute baselines train with: 1
            compares on the test images (paired bootstrap), >= 2 over seeds (paired t-test).
        accuracy_floor: the ID test accuracy (%) a model needs before its OOD numbers carry a
            verdict on a paper's claim (:mod:`mood.experiments.verdicts`); None: no verdict at this profile.
        workers: processes that train independent runs side by side (:mod:`mood.experiments.parallel`); 1 trains
            one run at a time with every core.
        img_size: resize every image to this side (e.g. 224 for a model pretrained at that size);
            None: the protocol's own (28 px Fashion-MNIST, 32 px CIFAR).
        plan: which questions the book asks at this profile (:class:`Plan`).
        floors: the accuracy floor of a protocol whose label space is not the ten classes (name ->
            %; :func:`mood.experiments.verdicts.floor`), measured like ``accuracy_floor``
            (``benchmarks/accuracy_floors.py``); unused where ``accuracy_floor`` is None.
    """

    name: str
    model: ModelConfig
    pretrain: PretrainConfig
    finetune: FinetuneConfig
    eval: EvalConfig
    format: ImageFormat = field(default_factory=ImageFormat)
    one_class: StageOverrides = field(default_factory=StageOverrides)
    ablation: StageOverrides = field(default_factory=StageOverrides)
    ablation_seeds: tuple[int, ...] = (0,)
    ablation_protocols: tuple[str, ...] = ("one-class:0", "multi-class", "near-split")
    seeds: tuple[int, ...] = (0,)
    baseline_seeds: int = 1
    unleash: UnleashConfig = field(default_factory=UnleashConfig)
    accuracy_floor: float | None = None
    workers: int = 1
    img_size: int | None = None
    plan: Plan = field(default_factory=Plan)
    floors: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("seeds", "ablation_seeds"):
            seeds = getattr(self, name)
            if not seeds or len(set(seeds)) != len(seeds) or not all(isinstance(s, int) for s in seeds):
                raise ValueError(f"profile {self.name!r}: {name} must be distinct integers, at least one, got {seeds!r}")
        if not self.ablation_protocols or not all(isinstance(p, str) for p in self.ablation_protocols):
            raise ValueError(f"profile {self.name!r}: ablation_protocols must name at least one protocol, "
                             f"got {self.ablation_protocols!r}")
        if self.img_size is not None and (not isinstance(self.img_size, int) or self.img_size < 8):
            raise ValueError(f"profile {self.name!r}: img_size must be an integer >= 8 or None, got {self.img_size!r}")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"profile {self.name!r}: workers must be an integer >= 1, got {self.workers!r}")
        if not 1 <= self.baseline_seeds <= len(self.seeds):
            raise ValueError(f"profile {self.name!r}: baseline_seeds must lie in 1..{len(self.seeds)} (len(seeds)), "
                             f"got {self.baseline_seeds}")

    def to_dict(self) -> dict:
        return asdict(self)
