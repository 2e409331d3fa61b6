"""One config dataclass per stage, and the named profiles that fill them.

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
import copy
import math
import os
import types
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Mapping, Sequence

from mood.core.data import ImageFormat
from mood.core.engine import TrainConfig
from mood.core.masking import MASK_KINDS
from mood.core.models import POOLS, ModelConfig
from mood.core.pretext import MASK_DEFAULTS, PRETEXTS
from mood.core.scores import get_score


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
        if self.pretext not in PRETEXTS:
            raise ValueError(f"unknown pretext task {self.pretext!r}; valid: {', '.join(PRETEXTS)}")
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
        floor: the loss floor ``b``; None estimates it with :func:`mood.experiments.unleash.estimate_floor`.
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
            (:func:`mood.core.data.shuffle_patches`), none of the test OOD sets. The epoch and ``b`` are
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


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the type annotation ``hint`` (ints pass for floats, bools for neither)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is tuple:
        return isinstance(value, tuple)
    return isinstance(value, origin or hint)


def check_changes(cls: type, changes: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """``changes`` if every key is a field of dataclass ``cls`` and every value fits the field's
    type; otherwise a ``ValueError`` naming the wrong key or value and the valid fields."""
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in fields(cls)]
    label = f"{where}: " if where else ""
    bad = sorted(set(changes) - set(valid))
    if bad:
        raise ValueError(f"{label}{cls.__name__} has no field(s) {bad}; valid: {', '.join(valid)}")
    for key, value in changes.items():
        if not _matches(value, hints[key]):
            hint = hints[key]
            name = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
            raise ValueError(f"{label}{cls.__name__}.{key} must be {name}, got {value!r} ({type(value).__name__})")
    return dict(changes)


def override(cfg, **changes):
    """``dataclasses.replace`` with every change checked (:func:`check_changes`) first."""
    return replace(cfg, **check_changes(type(cfg), changes))


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


# The cpu book's plan (smoke runs the same, in seconds): every ablation study on the near-distribution
# split at the main chapters' scale, so each study's BEiT arm is chapter 7's model and its endpoint (mean
# AUROC over four held-out classes, 58-92 each in the record at 83e06c7) leaves room to move; the
# equal-compute baselines are the studies' from-scratch arms (chapters 10-11, three seeds, paired with
# MOOD's), not a one-seed copy in chapters 6-7; chapter 8 asks the paper's claim (10-shot). The questions
# left to the gpu profile: SimMIM, MAE, SimCLR, the ResNet, label smoothing, the masking ratio sweep.
CPU_PLAN = Plan(
    ablation_scale="main",
    studies={"pretext": ("BEiT MIM", "classification", "no pretraining (equal compute)"),
             "architecture": ("ViT + BEiT MIM", "CNN (equal compute)"),
             "fine_tuning": ("fine-tuned", "pretrained only"),
             "ood_metric": ("mahalanobis", "knn", "msp", "energy"),
             "masking": ("block, ratio 0.4", "random, ratio 0.4")},
    equal_compute=False,
    oe_shots=(10,))


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        model=ModelConfig("vit_tiny_p7", drop_path=0.0),  # the cpu model: the same code paths, feature widths
        pretrain=PretrainConfig(epochs=1, batch_size=64, max_images=384, vocab_size=32, tokenizer_iters=5,
                                warmup_epochs=0.5),
        finetune=FinetuneConfig(epochs=1, batch_size=64, max_images=384),
        eval=EvalConfig(max_fit=300, max_test=200, n_ood=100),
        one_class=StageOverrides(pretrain={"max_images": 256}, finetune={"max_images": 256}, eval={"max_test": 300}),
        ablation=StageOverrides(pretrain={"epochs": 1, "max_images": 192}, finetune={"epochs": 1, "max_images": 192},
                                eval={"max_fit": 192, "max_test": 150, "n_ood": 60}),
        ablation_seeds=(0,),
        ablation_protocols=("near-split",),
        plan=CPU_PLAN,
        unleash=UnleashConfig(train=TrainConfig(epochs=2, batch_size=64, max_images=192, lr=0.05, optimizer="sgd",
                                                weight_decay=5e-4, warmup_epochs=0.0, grad_clip=None),
                              tune=TrainConfig(epochs=1, batch_size=64, lr=0.05, optimizer="sgd", weight_decay=5e-4,
                                               warmup_epochs=0.0, grad_clip=None),
                              models=("cnn_dense",), noise=(0.0, 0.2), augment=False,
                              eval_id=64, eval_ood=24, eval_fit=64, estimate_images=64, val_id=64, val_ood=64,
                              curve_scores=("msp", "energy")),
    ),
    # cpu: sized on the 2-core CPU so that the models pass the accuracy floor. Measured here (fp32, batch 256):
    # vit_tiny_p7 (dim 128, depth 4, 16 tokens) trains at ~1,600 img/s, 38 s per epoch of 60,000 images
    # (vit_tiny_p4 at ~620 img/s), and the small CNN as fast. BEiT 8 epochs + fine-tuning 15 epochs
    # reached 89.3% ID accuracy; 8 + 8 reached 87.9% (label smoothing 0.1) and 87.8% (none). Label
    # smoothing 0.1 (MOOD's recipe) cut the fine-tuned pooled feature's MNIST AUROC from 96.9 to 87.9 at
    # equal accuracy, so fine-tuning here does without it (on the tokens feature below the two were
    # equal in the run of record at 2ba63ea: 98.91 vs 98.92; chapter 3 measures it each run).
    # The main feature is the last block's patch tokens, flattened (pool "tokens", 16 x 128 = 2,048
    # dims): on the cached run of record (d9db6c3) it gave one-class 93.2 mean AUROC from the
    # pretrained backbones against 84.8 for MOOD's pooled feature, 91.6 for every block's mean token
    # and 92.3 for raw-pixel 1-NN (pooling discards where a pattern sits, which is what separates one
    # garment from another), and multi-class MNIST 98.9 against 97.5 for MOOD's feature. Chapters 5 and 6
    # show every feature side by side. 20,000 training images fit its Mahalanobis (10 per dimension).
    "cpu": Profile(
        name="cpu",
        accuracy_floor=84.5,  # logistic regression on raw pixels, all 60,000 training images
        # benchmarks/accuracy_floors.py (standardised pixels, 500 lbfgs iterations): multi-class 83.58%,
        # the near-distribution split's six known classes (36,000 images) 92.68%
        floors={"near-split": 92.7},
        model=ModelConfig("vit_tiny_p7"),
        pretrain=PretrainConfig(epochs=4, batch_size=256, max_images=None, warmup_epochs=1.0),
        finetune=FinetuneConfig(epochs=6, batch_size=256, max_images=None, lr=2e-3, warmup_epochs=1.0,
                                label_smoothing=0.0),
        eval=EvalConfig(pool="tokens", max_fit=20_000, max_test=None, n_ood=2000),
        seeds=(0, 1, 2),
        baseline_seeds=1,
        # workers=1: side by side measured no faster here (benchmarks/side_by_side.py: 0.93x with process
        # start-up; the run of record at 2ba63ea used workers=2: ~1,680 img/s together vs ~1,550 for one run)
        workers=1,
        # One-class: all 6,000 images of the class; the fine-tuning keeps label smoothing, which one
        # label needs (mood.experiments.pipeline.finetune); every other class's test image is OOD.
        one_class=StageOverrides(pretrain={"epochs": 10, "batch_size": 128},
                                 finetune={"epochs": 2, "batch_size": 128, "label_smoothing": 0.1, "warmup_epochs": 0.5},
                                 eval={"n_ood": None}),
        # The ablation scale (used where a plan says ablation_scale="ablation"; the cpu plan runs its
        # studies at the main scale): every variant pretrains (5 epochs)
        # and fine-tunes (20 epochs, batch 128) on the same 20,000 training images, every seed anew, scored
        # on the main chapters' feature. Measured here (seed 0, 20,000 images; logistic regression on
        # their pixels: 81.6%): at 14 fine-tuning epochs BEiT reached 84.4%, classification pretraining
        # 83.5% and no pretraining 84.1%, under the 84.5% floor; at 20 epochs classification 84.9% and
        # no pretraining 85.2% (~4.2 min a fine-tuning). One protocol: each protocol pretrains on its own
        # training set.
        ablation=StageOverrides(pretrain={"epochs": 5, "batch_size": 256, "max_images": 20_000},
                                finetune={"epochs": 20, "batch_size": 128, "max_images": 20_000}),
        ablation_seeds=(0, 1, 2),
        ablation_protocols=("near-split",),
        plan=CPU_PLAN,
        # Unleashing Mask in the regime its mechanism needs: a CNN with a dense layer memorises 5,000
        # images (no augmentation, SGD with momentum and a cosine schedule, as the official code
        # trains), with clean labels and with 20% symmetric label noise. Measured on 10,000 images,
        # 20% noise, seed 0: training accuracy 99.3% after 30 epochs while the ID test accuracy fell from
        # 87.4% (epoch 6) to 80.1% and Energy AUROC from 95.1 (epoch 2) to 62.9. Chapter 16's 20-minute share
        # is spent by choosing the sample, not by training less: at 5,000 images and 30 epochs the chapter took
        # 1,769 s (record b614601); 20 epochs did not memorise the noisy labels (training accuracy 88.3% at
        # 4,000 images, seed 0), so the 30 epochs stay and the training sample is 3,000 images; the scored
        # samples are halved (an AUROC on 1,000 ID and 300 OOD images varies ~1 point, the seeds ~3-5).
        # Measured cold at commit 4250652 on a machine ~15% slower than the record's: 1,119 s (training 663 s);
        # clean-label training still memorises (final loss 0.005), noisy-label too (0.053), UM holds b in 6 of 6.
        unleash=UnleashConfig(train=TrainConfig(epochs=30, batch_size=128, max_images=3000, lr=0.05, optimizer="sgd",
                                                weight_decay=5e-4, warmup_epochs=0.0, min_lr=0.0, grad_clip=None),
                              # UM's tuning at the training's learning rate: at 0.005 for 2 epochs the loss of
                              # the memorised model stayed at 0.004 against b = 0.16 (its gradient is tiny
                              # there); at 0.05 it climbed to b in the first epoch and held it (last two of
                              # 5 epochs: 0.162, 0.167; seed 0, clean). The floor sweep (0.5b, 2b) is the
                              # gpu profile's.
                              tune=TrainConfig(epochs=5, batch_size=128, lr=0.05, optimizer="sgd", weight_decay=5e-4,
                                               warmup_epochs=0.0, min_lr=0.0, grad_clip=None),
                              models=("cnn_dense",), seeds=(0, 1, 2), noise=(0.0, 0.2), augment=False, floor_scales=(),
                              eval_id=1000, eval_ood=300, eval_fit=2000, val_id=500, val_ood=500,
                              table_scores=("msp", "odin", "energy"),
                              curve_scores=("msp", "energy")),
    ),
    # gpu: measured on one H200 (benchmarks/results/gpu_probe.json, seed 0, no compile, batch 512): BEiT
    # pretraining 60 epochs in 239 s (~15,000 img/s), fine-tuning 20 epochs in 96 s, ID accuracy 93.4%,
    # MNIST AUROC 98.1 on MOOD's feature. Over three fine-tuning seeds (benchmarks/results/gpu_multi_class_*):
    # ID accuracy 93.41 +- 0.06, but MOOD's feature gave MNIST 98.1 / 93.5 / 97.7 (mean AUROC 98.2); on
    # seed 0's backbone the mean token (the head's input) gave MNIST 99.45 and mean AUROC 99.76 (blocks
    # 99.02 / 99.79), so the main feature is the mean token. That choice was made on seed 0's test sets:
    # seeds 1-2 and chapter 6's feature table are where it is tested.
    # One-class keeps the positions at this scale too: chapter 5 at this profile on one H200 (results/gpu/05_*,
    # commit 7758512, pool "mean") gave mean AUROC 88.95 on the mean token, 83.46 on MOOD's, 91.36 on every
    # block's, 92.72 on the last block's tokens (raw-pixel 1-NN 92.26): the order the cpu profile measured.
    # benchmarks/results/train_speed_h200.csv: batch 2048 with compiled blocks runs 2.7x faster than
    # batch 512 eager; the chapters' budget of 10 minutes each needs it for the ablations (chapter 10 at
    # this scale: ~54 runs of ~1 minute at batch 512). Measured on the multi-class pipeline
    # (benchmarks/results/gpu_b2048_*, three seeds, lrs scaled by sqrt(4), blocks compiled): pretraining
    # 154 s, fine-tuning 33 s, ID accuracy 92.35 +- 0.04 against 93.41 +- 0.06 here, mean AUROC on the mean
    # token 99.79 +- 0.03; compiled runs side by side were slower than one after the other. Not adopted
    # until one-class and the ablation scale (a few steps an epoch at batch 2048) are measured.
    "gpu": Profile(
        name="gpu",
        accuracy_floor=84.5,
        floors={"near-split": 92.7},
        model=ModelConfig("vit_s_p4"),
        pretrain=PretrainConfig(epochs=60, batch_size=512, max_images=None, lr=1.5e-3, warmup_epochs=5),
        # No label smoothing in multi-class fine-tuning, as on cpu (chapter 3 measures both).
        finetune=FinetuneConfig(epochs=20, batch_size=512, max_images=None, lr=5e-4, warmup_epochs=2,
                                label_smoothing=0.0),
        eval=EvalConfig(pool="mean", max_fit=None, max_test=None, n_ood=None),
        one_class=StageOverrides(pretrain={"epochs": 80}, finetune={"epochs": 10, "label_smoothing": 0.1},
                                 eval={"n_ood": None, "pool": "tokens"}),
        ablation=StageOverrides(pretrain={"epochs": 30, "max_images": 20_000}, finetune={"epochs": 10, "max_images": 20_000},
                                eval={"max_fit": 20_000, "n_ood": 2000}),
        ablation_seeds=(0, 1, 2),
        # The ablations train 6 runs side by side (mood.experiments.ablations.run_grid), one protocol as on cpu.
        # Measured on one H200 (commit 47dc7ff, chapter 10, not finished in the session's 15 device
        # minutes): 6 runs together train at ~3,000-3,900 img/s each (SimCLR's two views ~1,750) against
        # 13,300 for one run alone, ~1.45x in all; a BEiT run (30 + 10 epochs on 20,000 images) took
        # 254 s, SimCLR's pretraining ~440 s. Chapter 10's 18 runs: ~13 minutes of training, over the
        # 10-minute budget; at 10 fine-tuning epochs SimMIM reached 77% training accuracy, no pretraining 70%.
        ablation_protocols=("near-split",),
        workers=6,
        seeds=(0, 1, 2),
        baseline_seeds=3,
        # not run yet (no GPU was lent so far): the cpu regime on 50,000 images and a ResNet beside the CNN
        unleash=UnleashConfig(train=TrainConfig(epochs=60, batch_size=128, max_images=None, lr=0.05, optimizer="sgd",
                                                weight_decay=5e-4, warmup_epochs=0.0, min_lr=0.0, grad_clip=None),
                              tune=TrainConfig(epochs=5, batch_size=128, lr=0.05, optimizer="sgd", weight_decay=5e-4,
                                               warmup_epochs=0.0, min_lr=0.0, grad_clip=None),
                              models=("cnn_dense", "resnet10_narrow"), seeds=(0, 1, 2), noise=(0.0, 0.2), augment=False,
                              eval_id=None, eval_ood=2000, eval_fit=20_000, val_id=5000, val_ood=5000),
    ),
}


# cifar: MOOD's own benchmarks (protocols cifar10, cifar100-near, cifar10-one-class:K) from scratch on one
# GPU, online (torchvision downloads the data into MOOD_DATA_DIR). Not run here (no internet): sized from the
# gpu profile's H200 figures (ViT-S/4 at ~13,000 img/s on 49 tokens; CIFAR's 64 tokens cost ~1.3x), ~8 min of
# pretraining and ~4 min of fine-tuning a seed. A ViT-S trained from scratch on 50,000 images is far from
# MOOD's BEiT-B pretrained on ImageNet-22k; the README gives the command that starts from such weights.
PROFILES["cifar"] = replace(
    PROFILES["gpu"], name="cifar",
    pretrain=PretrainConfig(epochs=100, batch_size=512, max_images=None, lr=1.5e-3, warmup_epochs=10),
    finetune=FinetuneConfig(epochs=50, batch_size=512, max_images=None, lr=5e-4, warmup_epochs=5, label_smoothing=0.0),
    eval=EvalConfig(pool="mood", max_fit=None, max_test=None, n_ood=None),
    one_class=StageOverrides(pretrain={"epochs": 200}, finetune={"epochs": 10, "label_smoothing": 0.1},
                             eval={"n_ood": None}),
    ablation_protocols=("cifar10",),
    # no floor measured here: logistic regression on CIFAR-10's pixels is commonly reported near 40%
    accuracy_floor=None)


def get_profile(name: str | None = None) -> Profile:
    """A copy of profile ``name`` (default: ``MOOD_PROFILE`` or ``"cpu"``)."""
    name = name or os.environ.get("MOOD_PROFILE", "cpu")
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; valid: {', '.join(PROFILES)} (set MOOD_PROFILE or --profile)")
    return copy.deepcopy(PROFILES[name])
