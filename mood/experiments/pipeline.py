"""The MOOD pipeline as four calls: ``pretrain`` -> ``finetune`` -> ``extract_protocol`` -> ``score``.

Every trained backbone and every feature set is cached under ``MOOD_ARTIFACTS`` (default
``./artifacts``) in a folder named by a hash of everything that determines it (model, stage
configs, data, image format, seed, and the folder of the stage it starts from), so chapters share
a pretrained backbone instead of training it again. A stage interrupted half-way resumes from its
last epoch. ``run_mood`` chains the four for one protocol.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from mood.core.cache import Cache, Trained, fingerprint, is_finished, load_trained, save_trained
from mood.core.distributed import barrier, is_main
from mood.core.engine import TrainConfig, fit, resolve_device
from mood.core.features import FeatureSet, extract_pools
from mood.core.images import ImageFormat, ImageSet, sample_tensors, to_tensor
from mood.core.metrics import results_table
from mood.core.models import Backbone, ModelConfig
from mood.core.pretext import Classification, make_task
from mood.core.protocols import Protocol
from mood.core.scores import ScoreSpec, get_score
from mood.experiments.config import EvalConfig, FinetuneConfig, PretrainConfig, Profile
from mood.experiments.parallel import Job, prefetch
from mood.experiments.resolve import Run, resolve


def pretrain(data: ImageSet, model: ModelConfig, cfg: PretrainConfig, fmt: ImageFormat = ImageFormat(),
             cache: Cache | None = None) -> Trained:
    """Pretrains a new backbone with ``cfg.pretext`` on ``data`` (only the protocol's training images
    should ever be passed here). Cached; resumes when interrupted. ``extras`` holds the pretext
    ``task`` (with its heads, e.g. BEiT's token predictor) and, for BEiT, its ``tokenizer``."""
    cache = cache or Cache()
    spec = {"stage": "pretrain", "model": model.to_dict(), "pretrain": cfg.to_dict(), "data": fingerprint(data),
            "format": asdict(fmt)}
    run_dir = cache.dir("pretrain", spec)
    torch.manual_seed(cfg.seed)
    backbone = Backbone(copy.deepcopy(model))
    finished = is_finished(run_dir)
    t0 = time.perf_counter()
    x = y = None
    if not finished and cfg.pretext != "none":
        x, y = sample_tensors(data, fmt, cfg.max_images, cfg.seed)
    task = make_task(cfg, backbone, x, run_dir)
    extras = {k: v for k, v in (("task", task), ("tokenizer", getattr(task, "tokenizer", None))) if v is not None}
    if finished:
        done = load_trained(backbone, run_dir, **extras)
        if task is not None and (run_dir / "last.pt").exists():  # the heads live only in the checkpoint
            task.load_state_dict(torch.load(run_dir / "last.pt", map_location="cpu", weights_only=False)["model"])
            task.eval()
        return done
    history = [] if task is None else fit(task, x, y, cfg, run_dir=run_dir, desc=f"pretrain[{cfg.pretext}]")
    return save_trained(backbone, run_dir, history, time.perf_counter() - t0, **extras)


def finetune(start: Trained, data: ImageSet, cfg: FinetuneConfig, num_classes: int,
             fmt: ImageFormat = ImageFormat(), cache: Cache | None = None,
             exposure: dict[str, ImageSet] | None = None) -> Trained:
    """Fine-tunes a copy of ``start.backbone`` with a fresh ``num_classes`` head on ``data``'s labels
    (cross-entropy with ``cfg.label_smoothing``). Cached; resumes when interrupted.

    One-class fine-tuning passes the normal class only, all labels equal, with the full 10-way head
    (as the official MOOD code does). Without label smoothing that objective is solved by pushing one
    logit to infinity, which the network can do by scaling its features without limit: the loss
    keeps pulling the backbone away from its pretrained features for no gain in separation. With
    smoothing the optimum is a finite logit gap (softmax target 0.91 vs 0.01), so training settles
    and mostly adapts the features to the normal class instead of inflating them.

    Args:
        exposure: outlier-exposure images by OOD source (few-shot protocol). They are labelled
            ``num_classes - 1``, an extra "outlier" class, and repeated until they are as many as an
            average ID class, so that a handful of images still weighs in every epoch.
    """
    cache = cache or Cache()
    spec = {"stage": "finetune", "start": start.run_id, "finetune": cfg.to_dict(), "data": fingerprint(data),
            "num_classes": num_classes, "format": asdict(fmt)}
    if exposure:
        spec["exposure"] = {k: fingerprint(v) for k, v in exposure.items()}
    run_dir = cache.dir("finetune", spec)
    backbone = copy.deepcopy(start.backbone)
    torch.manual_seed(cfg.seed)
    backbone.reset_head(num_classes)
    if is_finished(run_dir):
        return load_trained(backbone, run_dir)
    t0 = time.perf_counter()
    x, y = sample_tensors(data, fmt, cfg.max_images, cfg.seed)
    if exposure:
        oe = torch.cat([to_tensor(s, fmt) for s in exposure.values()])
        reps = max(1, round(len(x) / (num_classes - 1) / len(oe)))
        x = torch.cat([x, oe.repeat(reps, 1, 1, 1)])
        y = torch.cat([y, torch.full((len(oe) * reps,), num_classes - 1, dtype=torch.long)])
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"finetune: labels must lie in 0..{num_classes - 1}, got {int(y.min())}..{int(y.max())}")
    task = Classification(backbone, label_smoothing=cfg.label_smoothing, augment=cfg.augment)
    history = fit(task, x, y, cfg, run_dir=run_dir, desc="finetune")
    return save_trained(backbone, run_dir, history, time.perf_counter() - t0)


@dataclass
class ProtocolFeatures:
    """Features of everything a protocol scores: ``fit`` (ID train), ``id`` (ID test), ``ood`` by set."""

    fit: FeatureSet
    id: FeatureSet
    ood: dict[str, FeatureSet]
    seconds: float = 0.0


@dataclass
class ScoreInputs:
    """The images behind :class:`ProtocolFeatures`' ``id`` and ``ood`` features, for scores that
    re-run the model (ODIN): ``id_x [N, C, H, W]`` and ``ood_x`` by set, in the model's format."""

    id_x: torch.Tensor
    ood_x: dict[str, torch.Tensor] = field(default_factory=dict)


def eval_sample(s: ImageSet, limit: int | None, seed: int = 0) -> ImageSet:
    """The images of ``s`` a protocol scores: a stratified sample of ``limit`` when ``s`` is larger."""
    return s.sample(limit, seed) if limit is not None and limit < len(s) else s


def protocol_inputs(protocol: Protocol, cfg: EvalConfig, fmt: ImageFormat = ImageFormat(), seed: int = 0) -> ScoreInputs:
    """The ID-test and OOD images :func:`extract_protocol` scores (same samples), as model inputs."""
    return ScoreInputs(to_tensor(eval_sample(protocol.id_test, cfg.max_test, seed), fmt),
                       {k: to_tensor(eval_sample(v, cfg.n_ood, seed), fmt) for k, v in protocol.ood_test.items()})


def training_sample(data: ImageSet, cfg: TrainConfig) -> ImageSet:
    """The images a training stage with ``cfg`` trains on (:func:`mood.core.images.sample_tensors` draws the same)."""
    return data.sample(cfg.max_images, cfg.seed) if cfg.max_images is not None else data


def extract_protocol(trained: Trained, protocol: Protocol, cfg: EvalConfig, fmt: ImageFormat = ImageFormat(),
                     cache: Cache | None = None, seed: int = 0, train: ImageSet | None = None) -> ProtocolFeatures:
    """Features of the ID training images that fit the detector (at most ``cfg.max_fit`` of ``train``),
    the ID test images (``cfg.max_test``) and each OOD set (``cfg.n_ood``), cached next to the backbone.

    Args:
        seed: draws the ID-test and OOD samples (keep it fixed across training seeds, so that seeds
            differ only in training and comparisons between them are paired on the same images).
        train: the images the model was trained on (:func:`training_sample`; default: all of
            ``protocol.train``). The fit set is drawn from them, so every training seed fits its
            detector on its own training images, not on images only some seeds have seen.
    """
    return extract_protocol_pools(trained, protocol, cfg, (cfg.pool,), fmt, cache, seed, train)[cfg.pool]


def extract_protocol_pools(trained: Trained, protocol: Protocol, cfg: EvalConfig, pools: tuple[str, ...],
                           fmt: ImageFormat = ImageFormat(), cache: Cache | None = None, seed: int = 0,
                           train: ImageSet | None = None) -> dict[str, ProtocolFeatures]:
    """:func:`extract_protocol` for several pools (``cfg.pool`` ignored): ``{pool: ProtocolFeatures}``.
    Each pool is cached on its own; the ones missing from the cache come from one forward pass per
    image set (:func:`mood.core.features.extract_pools`)."""
    cache = cache or Cache()
    pools = tuple(dict.fromkeys(pools))
    t0 = time.perf_counter()
    device = resolve_device()

    def one(s: ImageSet, limit: int | None, what: str) -> dict[str, FeatureSet]:
        s = eval_sample(s, limit, seed)
        paths = {pool: cache.dir("features", {"stage": "features", "backbone": trained.run_id, "data": fingerprint(s),
                                              "pool": pool, "format": asdict(fmt)}) / "features.pt" for pool in pools}
        out = {pool: FeatureSet.load(path) for pool, path in paths.items() if path.exists()}
        missing = [pool for pool in pools if pool not in out]
        if missing:
            fresh = extract_pools(trained.backbone, to_tensor(s, fmt), missing, torch.from_numpy(s.labels.copy()),
                                  batch_size=cfg.batch_size, device=device, desc=f"features[{what}]")
            if is_main():  # one writer in a distributed run; the others wait until it is on disk
                for pool, fs in fresh.items():
                    fs.save(paths[pool])
            barrier()
            out.update(fresh)
        return out

    fit = one(protocol.train if train is None else train, cfg.max_fit, "train")
    ident = one(protocol.id_test, cfg.max_test, "id")
    ood = {k: one(v, cfg.n_ood, k) for k, v in protocol.ood_test.items()}
    trained.backbone.cpu()
    seconds = time.perf_counter() - t0
    out = {pool: ProtocolFeatures(fit=fit[pool], id=ident[pool], ood={k: v[pool] for k, v in ood.items()}) for pool in pools}
    for f in out.values():
        f.seconds = seconds
    return out


def check_score(name: str, params: dict[str, Any] | None = None) -> ScoreSpec:
    """The registry entry of score ``name`` with ``params`` checked: call before any training."""
    spec = get_score(name)
    spec.check_params(params or {})
    return spec


def score(feats: ProtocolFeatures, detector: str = "mahalanobis", backbone: Backbone | None = None,
          inputs: ScoreInputs | None = None, **params: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """OOD scores (higher = more OOD) ``[N]`` of the ID test set and of each OOD set with any score
    of :data:`mood.core.scores.SCORES`, dispatched on what it needs: a feature detector is fitted on
    ``feats.fit``; a logit score reads the logits; a model score (ODIN) re-runs ``backbone`` on
    ``inputs`` (:func:`protocol_inputs`). ViM also needs ``backbone`` for its head. ``params`` are
    the score's hyperparameters (checked)."""
    spec = check_score(detector, params)
    if spec.needs == "logits":
        fn = spec.build
        return fn(feats.id.logits, **params), {k: fn(v.logits, **params) for k, v in feats.ood.items()}
    if spec.needs == "model":
        if backbone is None or inputs is None:
            raise ValueError(f"score {detector!r} re-runs the model: pass backbone= and inputs= "
                             f"(mood.experiments.pipeline.protocol_inputs)")
        fn = spec.build
        return fn(backbone, inputs.id_x, **params), {k: fn(backbone, x, **params) for k, x in inputs.ood_x.items()}
    if spec.needs_head:
        if backbone is None:
            raise ValueError(f"score {detector!r} needs backbone= for its head weights")
        w, b = backbone.head_weights()
        det = spec.build(w, b, **params)
    else:
        det = spec.build(**params)
    # Fit and score on the GPU when there is one, as features are extracted: the float64 covariance
    # work of wide features (a ViT-S/4's 18,816 token dimensions) then takes a second, not many.
    dev = resolve_device()
    det.fit(feats.fit.features.to(dev), feats.fit.labels.to(dev))
    return (det.score(feats.id.features.to(dev)).cpu(),
            {k: det.score(v.features.to(dev)).cpu() for k, v in feats.ood.items()})


def score_protocol(feats: ProtocolFeatures, detector: str, model: Trained, protocol: Protocol, cfg: EvalConfig,
                   fmt: ImageFormat = ImageFormat()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """:func:`score` of a protocol's features as the profile asks: ``cfg.normalize`` where the score
    takes it (Mahalanobis), and the same images re-fed to the model where the score re-runs it (ODIN)."""
    spec = get_score(detector)
    params = {"normalize": cfg.normalize} if "normalize" in spec.params else {}
    inputs = protocol_inputs(protocol, cfg, fmt) if spec.needs == "model" else None
    return score(feats, detector, backbone=model.backbone, inputs=inputs, **params)


def scores_table(scores: tuple[Any, dict[str, Any]], protocol: Protocol, cfg: EvalConfig) -> pd.DataFrame:
    """:func:`mood.core.metrics.results_table` of OOD scores ``(ID [N], {set: [M]})`` (tensors or arrays)
    with ``cfg``'s FPR95 convention and ``protocol``'s OOD groups (``mean (far)``, ...)."""
    id_s, ood_s = scores
    return results_table(np.asarray(id_s), {k: np.asarray(v) for k, v in ood_s.items()}, cfg.fpr_positive,
                         groups=protocol.ood_groups)


def id_accuracy(feats: ProtocolFeatures) -> float:
    """Top-1 accuracy (%) of the head on the ID test images."""
    return 100.0 * float((feats.id.logits.argmax(1) == feats.id.labels).float().mean())


@dataclass
class MoodRun:
    """What :func:`run_mood` produced; ``scores`` are the OOD scores ``[N]`` of the ID test set and of
    each OOD set behind ``table``."""

    protocol: Protocol
    profile: Profile
    pretrained: Trained
    finetuned: Trained | None
    features: ProtocolFeatures
    table: pd.DataFrame
    timings: dict[str, float]
    scores: tuple[torch.Tensor, dict[str, torch.Tensor]]
    key: str = ""


def run_mood(run: Run | str | Protocol, profile: str | Profile | None = None, cache: Cache | None = None,
             finetune_stage: bool = True, **resolve_kwargs: Any) -> MoodRun:
    """MIM pretraining -> fine-tuning -> features -> Mahalanobis (by default) for one protocol.

    Args:
        run: a resolved :class:`~mood.experiments.resolve.Run`, or a protocol name or object to
            resolve with ``profile`` and ``resolve_kwargs`` (:func:`~mood.experiments.resolve.resolve`:
            ``detector``, ``finetune_seed``, ``variant``, ...).
        profile: a profile name or object (default: ``MOOD_PROFILE`` or ``cpu``).
        finetune_stage: False scores the pretrained features directly.
    Returns:
        The trained stages, features, the results table (percent) and wall times in seconds
        (training: from the stages' logs, also when loaded from the cache; features, score: this call).
    """
    if not isinstance(run, Run):
        run = resolve(profile, run, **resolve_kwargs)
    elif profile is not None or resolve_kwargs:
        raise ValueError("run_mood: a resolved Run carries its profile and settings; pass them to resolve() instead")
    protocol, prof, det = run.protocol, run.profile, run.detector
    cache = cache or Cache()
    t0 = time.perf_counter()
    pre = pretrain(protocol.train, prof.model, prof.pretrain, prof.format, cache)
    t1 = time.perf_counter()
    fine = finetune(pre, protocol.train, prof.finetune, protocol.num_classes, prof.format, cache) if finetune_stage else None
    t2 = time.perf_counter()
    model = fine or pre
    trained_on = training_sample(protocol.train, prof.finetune if fine is not None else prof.pretrain)
    feats = extract_protocol(model, protocol, prof.eval, prof.format, cache, train=trained_on)
    t3 = time.perf_counter()
    id_s, ood_s = score_protocol(feats, det, model, protocol, prof.eval, prof.format)
    table = scores_table((id_s, ood_s), protocol, prof.eval)
    t4 = time.perf_counter()
    # Training times come from the stages' logs, so a chapter that loads a backbone another chapter
    # trained still reports what training it cost; features and scoring are timed in this call.
    timings = {"pretrain_s": pre.train_seconds if pre.history else t1 - t0,
               "finetune_s": (fine.train_seconds if fine.history else t2 - t1) if fine is not None else 0.0,
               "features_s": t3 - t2, "score_s": t4 - t3}
    key = run.key if fine is not None else replace(run, finetuned=False).key
    return MoodRun(protocol, prof, pre, fine, feats, table, timings, (id_s, ood_s), key)


def run_seeds(protocol: str | Protocol, profile: Profile, seeds: tuple[int, ...] | None = None,
              cache: Cache | None = None, **kwargs: Any) -> dict[int, MoodRun]:
    """:func:`run_mood` once per fine-tuning seed (default: ``profile.seeds``), every seed fine-tuning
    the same pretrained backbone (``finetune_seed`` of :func:`~mood.experiments.resolve.resolve`)."""
    seeds = profile.seeds if seeds is None else seeds
    if not seeds:
        raise ValueError("run_seeds: give at least one seed")
    first = run_mood(protocol, profile, cache, finetune_seed=seeds[0], **kwargs)  # pretrains, once
    prefetch([Job(run_mood, (protocol, profile, cache), {**kwargs, "finetune_seed": s}, f"seed {s}") for s in seeds[1:]],
             profile.workers)
    return {seeds[0]: first} | {s: run_mood(protocol, profile, cache, finetune_seed=s, **kwargs) for s in seeds[1:]}


def seed_table(runs: dict[int, MoodRun]) -> pd.DataFrame:
    """One row per seed (index ``seed``): its ``run key``, ``ID acc`` (%) and the AUROC of every OOD set
    and group mean of the run's table; :func:`mood.core.stats.seed_summary` turns it into mean ± std and intervals."""
    out = pd.DataFrame.from_dict({s: {"run key": r.key, "ID acc": id_accuracy(r.features), **r.table["AUROC"].to_dict()}
                                  for s, r in runs.items()}, orient="index")
    out.index.name = "seed"
    return out
