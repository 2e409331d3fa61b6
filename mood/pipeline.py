"""The MOOD pipeline as four calls: ``pretrain`` -> ``finetune`` -> ``extract_protocol`` -> ``score``.

Every trained backbone and every feature set is cached under ``MOOD_ARTIFACTS`` (default
``./artifacts``) in a folder named by a hash of everything that determines it (model, stage
configs, data, image format, seed, and the folder of the stage it starts from), so chapters share
a pretrained backbone instead of training it again. A stage interrupted half-way resumes from its
last epoch. ``run_mood`` chains the four for one protocol.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mood.config import EvalConfig, FinetuneConfig, PretrainConfig, Profile, get_profile
from mood.data import ImageFormat, ImageSet, to_tensor
from mood.engine import atomic_torch_save, fit
from mood.features import FeatureSet, extract
from mood.metrics import atomic_write_text, results_table
from mood.models import Backbone, ModelConfig
from mood.pretext import Classification, build_pretext
from mood.protocols import Protocol, make_protocol
from mood.scores import LOGIT_SCORES, ViM, make_detector
from mood.tokenizer import PatchTokenizer

CACHE_VERSION = 1


class Cache:
    """Folders keyed by configuration: ``root/stage/<hash>/`` with the configuration in ``spec.json``."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root if root is not None else os.environ.get("MOOD_ARTIFACTS", "artifacts"))

    @staticmethod
    def key(spec: dict) -> str:
        blob = json.dumps({"version": CACHE_VERSION, **spec}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def dir(self, stage: str, spec: dict) -> Path:
        d = self.root / stage / self.key(spec)
        d.mkdir(parents=True, exist_ok=True)
        if not (d / "spec.json").exists():
            atomic_write_text(d / "spec.json", json.dumps(spec, indent=1, sort_keys=True, default=str))
        return d


def fingerprint(s: ImageSet) -> dict:
    """What identifies an image set's content for caching: origin and the exact ids."""
    return {"name": s.name, "origin": s.origin, "n": len(s),
            "ids": hashlib.sha1(np.ascontiguousarray(s.ids).tobytes()).hexdigest()[:16]}


@dataclass
class Trained:
    """A backbone after a stage.

    Attributes:
        backbone: the model, in eval mode on the CPU.
        history: per-epoch records of :func:`mood.engine.fit` (empty for ``pretext="none"``).
        run_dir: the cache folder (checkpoint, log, spec).
        seconds: wall time spent training in this call (0 when loaded from the cache).
        extras: stage-specific objects (the BEiT tokenizer).
    """

    backbone: Backbone
    history: list[dict]
    run_dir: Path
    seconds: float = 0.0
    extras: dict = field(default_factory=dict)

    @property
    def train_seconds(self) -> float:
        """Wall time its training took, from the per-epoch log, whether it ran now or was cached."""
        return float(sum(h.get("seconds", 0.0) for h in self.history))


def run_id(trained: Trained) -> str:
    """``stage/hash`` of a trained backbone: what later stages key their cache on."""
    return f"{trained.run_dir.parent.name}/{trained.run_dir.name}"


def _tensors(s: ImageSet, fmt: ImageFormat, max_images: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    s = s.sample(max_images, seed) if max_images is not None else s
    return to_tensor(s, fmt), torch.from_numpy(s.labels.copy()).long()


def _finish(backbone: Backbone, run_dir: Path, history: list[dict], seconds: float, **extras) -> Trained:
    atomic_torch_save({"backbone": backbone.state_dict(), "history": history}, run_dir / "backbone.pt")
    return Trained(backbone.cpu().eval(), history, run_dir, seconds, extras)


def _load_finished(backbone: Backbone, run_dir: Path, **extras) -> Trained:
    state = torch.load(run_dir / "backbone.pt", map_location="cpu", weights_only=False)
    backbone.load_state_dict(state["backbone"])
    return Trained(backbone.eval(), state["history"], run_dir, 0.0, extras)


def pretrain(data: ImageSet, model: ModelConfig, cfg: PretrainConfig, fmt: ImageFormat = ImageFormat(),
             cache: Cache | None = None) -> Trained:
    """Pretrains a new backbone with ``cfg.pretext`` on ``data`` (only the protocol's training images
    should ever be passed here). Cached; resumes when interrupted. ``extras`` holds the pretext
    ``task`` (with its heads, e.g. BEiT's token predictor) and the BEiT ``tokenizer``."""
    cache = cache or Cache()
    spec = {"stage": "pretrain", "model": model.to_dict(), "pretrain": cfg.to_dict(), "data": fingerprint(data),
            "format": asdict(fmt)}
    run_dir = cache.dir("pretrain", spec)
    torch.manual_seed(cfg.seed)
    backbone = Backbone(copy.deepcopy(model))
    tokenizer = None
    if cfg.pretext == "beit":
        tokenizer = PatchTokenizer(backbone.patch_size if backbone.is_vit else 4, fmt.channels, cfg.vocab_size)
    tok_file = run_dir / "tokenizer.pt"
    if tokenizer is not None and tok_file.exists():
        tokenizer.load_state_dict(torch.load(tok_file, weights_only=True))
    finished = (run_dir / "backbone.pt").exists()
    t0 = time.perf_counter()
    x = y = None
    if not finished and cfg.pretext != "none":
        x, y = _tensors(data, fmt, cfg.max_images, cfg.seed)
        if tokenizer is not None and not tok_file.exists():
            tokenizer.fit(x, iters=cfg.tokenizer_iters, seed=cfg.seed)
            atomic_torch_save(tokenizer.state_dict(), tok_file)
    task = build_pretext(cfg.pretext, backbone, tokenizer=tokenizer, mask_ratio=cfg.mask_ratio, mask_kind=cfg.mask_kind)
    extras = {k: v for k, v in (("task", task), ("tokenizer", tokenizer)) if v is not None}
    if finished:
        done = _load_finished(backbone, run_dir, **extras)
        if task is not None and (run_dir / "last.pt").exists():  # the heads live only in the checkpoint
            task.load_state_dict(torch.load(run_dir / "last.pt", map_location="cpu", weights_only=False)["model"])
            task.eval()
        return done
    history = [] if task is None else fit(task, x, y, cfg, run_dir=run_dir, desc=f"pretrain[{cfg.pretext}]")
    return _finish(backbone, run_dir, history, time.perf_counter() - t0, **extras)


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
    spec = {"stage": "finetune", "start": run_id(start), "finetune": cfg.to_dict(), "data": fingerprint(data),
            "num_classes": num_classes, "format": asdict(fmt)}
    if exposure:
        spec["exposure"] = {k: fingerprint(v) for k, v in exposure.items()}
    run_dir = cache.dir("finetune", spec)
    backbone = copy.deepcopy(start.backbone)
    torch.manual_seed(cfg.seed)
    backbone.reset_head(num_classes)
    if (run_dir / "backbone.pt").exists():
        return _load_finished(backbone, run_dir)
    t0 = time.perf_counter()
    x, y = _tensors(data, fmt, cfg.max_images, cfg.seed)
    if exposure:
        oe = torch.cat([to_tensor(s, fmt) for s in exposure.values()])
        reps = max(1, round(len(x) / (num_classes - 1) / len(oe)))
        x = torch.cat([x, oe.repeat(reps, 1, 1, 1)])
        y = torch.cat([y, torch.full((len(oe) * reps,), num_classes - 1, dtype=torch.long)])
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"finetune: labels must lie in 0..{num_classes - 1}, got {int(y.min())}..{int(y.max())}")
    task = Classification(backbone, label_smoothing=cfg.label_smoothing, augment=cfg.augment)
    history = fit(task, x, y, cfg, run_dir=run_dir, desc="finetune")
    return _finish(backbone, run_dir, history, time.perf_counter() - t0)


@dataclass
class ProtocolFeatures:
    """Features of everything a protocol scores: ``fit`` (ID train), ``id`` (ID test), ``ood`` by set."""

    fit: FeatureSet
    id: FeatureSet
    ood: dict[str, FeatureSet]
    seconds: float = 0.0


def extract_protocol(trained: Trained, protocol: Protocol, cfg: EvalConfig, fmt: ImageFormat = ImageFormat(),
                     cache: Cache | None = None, seed: int = 0) -> ProtocolFeatures:
    """Features of the protocol's ID train (at most ``cfg.max_fit``), ID test (``cfg.max_test``) and
    OOD sets (``cfg.n_ood`` each), cached next to the backbone."""
    cache = cache or Cache()
    t0 = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"

    def one(s: ImageSet, limit: int | None, what: str) -> FeatureSet:
        s = s.sample(limit, seed) if limit is not None and limit < len(s) else s
        spec = {"stage": "features", "backbone": run_id(trained), "data": fingerprint(s), "pool": cfg.pool,
                "format": asdict(fmt)}
        path = cache.dir("features", spec) / "features.pt"
        if path.exists():
            return FeatureSet.load(path)
        fs = extract(trained.backbone, to_tensor(s, fmt), torch.from_numpy(s.labels.copy()), pool=cfg.pool,
                     batch_size=cfg.batch_size, device=device, desc=f"features[{what}]")
        fs.save(path)
        return fs

    out = ProtocolFeatures(fit=one(protocol.train, cfg.max_fit, "train"), id=one(protocol.id_test, cfg.max_test, "id"),
                           ood={k: one(v, cfg.n_ood, k) for k, v in protocol.ood_test.items()})
    trained.backbone.cpu()
    out.seconds = time.perf_counter() - t0
    return out


def score(feats: ProtocolFeatures, detector: str = "mahalanobis", backbone: Backbone | None = None,
          normalize: bool = False, **kwargs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """OOD scores (higher = more OOD) of the ID test and each OOD set with ``detector``: a feature
    detector fitted on ``feats.fit`` or a logit score (``msp``, ``energy``, ...). ViM needs ``backbone``."""
    if detector in LOGIT_SCORES:
        fn = LOGIT_SCORES[detector]
        return fn(feats.id.logits, **kwargs), {k: fn(v.logits, **kwargs) for k, v in feats.ood.items()}
    if detector == "vim":
        if backbone is None:
            raise ValueError("score(detector='vim') needs backbone= for its head weights")
        w, b = backbone.head_weights()
        det = ViM(w, b, **kwargs)
    else:
        det = make_detector(detector, **({"normalize": normalize} if detector.startswith("mahalanobis") else {}), **kwargs)
    det.fit(feats.fit.features, feats.fit.labels)
    return det.score(feats.id.features), {k: det.score(v.features) for k, v in feats.ood.items()}


def id_accuracy(feats: ProtocolFeatures) -> float:
    """Top-1 accuracy (%) of the head on the ID test images."""
    return 100.0 * float((feats.id.logits.argmax(1) == feats.id.labels).float().mean())


@dataclass
class MoodRun:
    """What :func:`run_mood` produced."""

    protocol: Protocol
    profile: Profile
    pretrained: Trained
    finetuned: Trained | None
    features: ProtocolFeatures
    table: pd.DataFrame
    timings: dict[str, float]


def setup(protocol: str | Protocol, profile: str | Profile | None = None, **protocol_kwargs) -> tuple[Protocol, Profile]:
    """The protocol object and the profile adapted to it (one-class overrides; the model's head,
    size and channels set from the protocol and the image format). Every chapter starts here, so
    they all key the cache the same way and share trained backbones."""
    prof = get_profile(profile) if profile is None or isinstance(profile, str) else copy.deepcopy(profile)
    if isinstance(protocol, str):
        if protocol.startswith(("multi-class", "few-shot")):
            protocol_kwargs.setdefault("n_ood", prof.eval.n_ood)
        protocol = make_protocol(protocol, **protocol_kwargs)
    prof = prof.for_protocol(protocol.name)
    prof.model.num_classes = protocol.num_classes
    prof.model.img_size, prof.model.in_chans = prof.format.size, prof.format.channels
    return protocol, prof


def run_mood(protocol: str | Protocol, profile: str | Profile | None = None, cache: Cache | None = None,
             finetune_stage: bool = True, detector: str | None = None, **protocol_kwargs) -> MoodRun:
    """MIM pretraining -> fine-tuning -> features -> Mahalanobis (by default) for one protocol.

    Args:
        protocol: a protocol name (see :func:`mood.protocols.make_protocol`) or object.
        profile: a profile name or object (default: ``MOOD_PROFILE`` or ``cpu``).
        finetune_stage: False scores the pretrained features directly.
        detector: overrides ``profile.eval.detector``.
    Returns:
        The trained stages, features, the results table (percent) and wall times in seconds
        (training: from the stages' logs, also when loaded from the cache; features, score: this call).
    """
    protocol, prof = setup(protocol, profile, **protocol_kwargs)
    cache = cache or Cache()
    t0 = time.perf_counter()
    pre = pretrain(protocol.train, prof.model, prof.pretrain, prof.format, cache)
    t1 = time.perf_counter()
    fine = finetune(pre, protocol.train, prof.finetune, protocol.num_classes, prof.format, cache) if finetune_stage else None
    t2 = time.perf_counter()
    feats = extract_protocol(fine or pre, protocol, prof.eval, prof.format, cache)
    t3 = time.perf_counter()
    det = detector or prof.eval.detector
    id_s, ood_s = score(feats, det, backbone=(fine or pre).backbone, normalize=prof.eval.normalize)
    table = results_table(id_s.numpy(), {k: v.numpy() for k, v in ood_s.items()}, prof.eval.fpr_positive)
    t4 = time.perf_counter()
    # Training times come from the stages' logs, so a chapter that loads a backbone another chapter
    # trained still reports what training it cost; features and scoring are timed in this call.
    timings = {"pretrain_s": pre.train_seconds if pre.history else t1 - t0,
               "finetune_s": (fine.train_seconds if fine.history else t2 - t1) if fine is not None else 0.0,
               "features_s": t3 - t2, "score_s": t4 - t3}
    return MoodRun(protocol, prof, pre, fine, feats, table, timings)
