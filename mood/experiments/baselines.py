"""Trivial baselines every OOD number in the book is checked against.

A result below a detector that never learned anything is a bug until shown otherwise. These score
the raw pixels (in the model's input format) of exactly the images a protocol's model is scored on
(:func:`mood.experiments.pipeline.eval_sample`), with the same metrics:

- ``pixel 1-NN``: Euclidean distance to the nearest ID training image;
- ``pixel Gaussian``: Mahalanobis distance under one Gaussian fitted to the ID training pixels.

And baselines at equal compute (:func:`compare_at_equal_compute`): the same ViT without
pretraining, and a small CNN, each trained from scratch for as many optimiser steps as MOOD's
pretraining and fine-tuning together, on the same images, scored the same ways. And few-shot
outlier exposure (:func:`compare_outlier_exposure`), which gets all of MOOD's compute plus a few
labelled OOD images. :func:`versus_baselines` tests MOOD against any of them, paired by seed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from mood.core.cache import Cache
from mood.core.features import FeatureSet
from mood.core.images import ImageFormat, ImageSet, to_tensor
from mood.core.protocols import Protocol
from mood.core.stats import ALPHA, comparison_table, paired_bootstrap, paired_test
from mood.experiments.config import EvalConfig, Profile
from mood.experiments.parallel import Job, prefetch
from mood.experiments.pipeline import (
    MoodRun,
    ProtocolFeatures,
    eval_sample,
    extract_protocol,
    finetune,
    id_accuracy,
    run_mood,
    score,
    score_protocol,
    scores_table,
    training_sample,
)
from mood.experiments.resolve import FromScratch, outlier_exposure_finetune, resolve, train_steps

PIXEL_BASELINES: dict[str, tuple[str, dict]] = {
    # name: (registered score, its hyperparameters)
    "pixel 1-NN": ("knn", {"k": 1, "metric": "l2"}),
    "pixel Gaussian": ("mahalanobis", {}),
}


def pixel_features(protocol: Protocol, cfg: EvalConfig, fmt: ImageFormat = ImageFormat(), seed: int = 0,
                   train: ImageSet | None = None) -> ProtocolFeatures:
    """Raw pixels ``[N, C*S*S]`` as features of the same ID-test and OOD samples
    :func:`mood.experiments.pipeline.extract_protocol` takes, fitted on every image of ``train`` (default
    ``protocol.train``; ``cfg.max_fit`` is ignored: a trivial baseline is compared at its strongest).
    No logits: only feature scores apply."""
    def one(s: ImageSet, limit: int | None) -> FeatureSet:
        s = eval_sample(s, limit, seed)
        x = to_tensor(s, fmt).flatten(1)
        return FeatureSet(x, torch.zeros(len(x), 0), torch.from_numpy(s.labels.copy()))

    return ProtocolFeatures(fit=one(protocol.train if train is None else train, None),
                            id=one(protocol.id_test, cfg.max_test),
                            ood={k: one(v, cfg.n_ood) for k, v in protocol.ood_test.items()})


def pixel_baselines(protocol: Protocol, cfg: EvalConfig, fmt: ImageFormat = ImageFormat(), seed: int = 0,
                    train: ImageSet | None = None, names: tuple[str, ...] = tuple(PIXEL_BASELINES)) -> dict[str, pd.DataFrame]:
    """The results table (:func:`mood.core.metrics.results_table`, same groups) of each pixel baseline in ``names``."""
    unknown = sorted(set(names) - set(PIXEL_BASELINES))
    if unknown:
        raise ValueError(f"unknown pixel baseline(s) {unknown}; valid: {', '.join(PIXEL_BASELINES)}")
    feats = pixel_features(protocol, cfg, fmt, seed, train)
    out = {}
    for name in names:
        detector, params = PIXEL_BASELINES[name]
        out[name] = scores_table(score(feats, detector, **params), protocol, cfg)
    return out


EQUAL_COMPUTE_SCORES: tuple[str, ...] = ("mahalanobis", "knn", "msp", "energy")


@dataclass
class Comparison:
    """Several models, each scored several ways, once per seed, all on the same test images: what
    :func:`compare_at_equal_compute` and :func:`compare_outlier_exposure` measured, and what
    :func:`versus_baselines` tests.

    Attributes:
        table: one row per (model, score, seed): AUROC per OOD set and its group means, the ``ID acc``
            (%) of the model that made it, its training seconds ``train s`` (from the logs, every stage
            behind the model) and, at equal compute, its optimiser ``steps``.
        scores: ``(model, score, seed) -> (ID test scores [N], {OOD set: scores [M]})``, every model
            scored on the same images (what a paired test on the test set needs).
        groups: OOD set -> its group (the protocol's), for group means such as ``mean (far)``.
    """

    table: pd.DataFrame
    scores: dict[tuple[str, str, int], tuple[np.ndarray, dict[str, np.ndarray]]]
    groups: dict[str, str]

    def sets_of(self, metric: str) -> list[str]:
        """The OOD sets behind column ``metric``: one set, a group mean ``mean (G)``, or ``mean`` (all)."""
        if metric in self.groups:
            return [metric]
        if metric == "mean":
            return list(self.groups)
        sets = [k for k, g in self.groups.items() if metric == f"mean ({g})"]
        if not sets:
            raise ValueError(f"unknown metric {metric!r}: an OOD set ({', '.join(self.groups)}), 'mean', or "
                             f"a group mean ({', '.join(sorted({f'mean ({g})' for g in self.groups.values()}))})")
        return sets

    def mean_table(self, labels: dict[tuple[str, str], str] | None = None) -> pd.DataFrame:
        """The mean over seeds of every (model, score): one column each (named by ``labels``, default
        ``"model, score"``), one row per AUROC column of :attr:`table` (OOD sets, group means) and a
        last row ``ID acc`` (%)."""
        aurocs = list(self.groups) + [c for c in self.table.columns if c == "mean" or c.startswith("mean (")]
        means = self.table.groupby(["model", "score"], sort=False)[aurocs + ["ID acc"]].mean()
        labels = labels or {}
        means.index = [labels.get(key, ", ".join(key)) for key in means.index]
        return means.T


def compare_at_equal_compute(protocol: str, prof: Profile, cache: Cache | None = None,
                             scratch_models: tuple[str, ...] = ("cnn_small",),
                             scores: tuple[str, ...] = EQUAL_COMPUTE_SCORES,
                             seeds: tuple[int, ...] | None = None) -> Comparison:
    """MOOD (the profile's pretraining + fine-tuning) against the same backbone trained from scratch
    and each of ``scratch_models``, at equal optimiser steps (:class:`~mood.experiments.resolve.FromScratch`),
    on ``protocol``, once per seed (default: ``prof.seeds``). MOOD's seeds fine-tune one shared pretrained
    backbone (``finetune_seed``); a baseline's seed is its whole training (``seed``)."""
    base = resolve(prof, protocol)
    proto, n = base.protocol, len(base.protocol.train)
    kinds = {mood_name(base.profile): None, f"{base.profile.model.name} from scratch": FromScratch()}
    kinds |= {f"{m} from scratch": FromScratch(m) for m in scratch_models}
    seeds = base.profile.seeds if seeds is None else seeds
    runs = {(name, seed): resolve(prof, proto, finetune_seed=seed) if b is None else resolve(prof, proto, baseline=b, seed=seed)
            for seed in seeds for name, b in kinds.items()}
    first = (mood_name(base.profile), seeds[0])
    done = {first: run_mood(runs[first], cache=cache)}  # MOOD's pretraining, once, before the runs that share it
    prefetch([Job(run_mood, (r,), {"cache": cache}, name=f"{name}, seed {seed}") for (name, seed), r in runs.items()
              if (name, seed) != first], base.profile.workers)
    rows, kept = [], {}
    for seed in seeds:
        for name in kinds:
            q = runs[(name, seed)].profile
            run: MoodRun = done.get((name, seed)) or run_mood(runs[(name, seed)], cache=cache)
            model = run.finetuned or run.pretrained
            steps = (train_steps(n, q.pretrain) if q.pretrain.pretext != "none" else 0) + train_steps(n, q.finetune)
            for det in scores:
                id_s, ood_s = score_protocol(run.features, det, model, proto, q.eval, q.format)
                kept[(name, det, seed)] = (id_s.numpy(), {k: v.numpy() for k, v in ood_s.items()})
                table = scores_table(kept[(name, det, seed)], proto, q.eval)
                rows.append({"model": name, "score": det, "seed": seed,
                             "run key": replace(runs[(name, seed)], detector=det).key, "ID acc": id_accuracy(run.features),
                             "steps": steps, "train s": run.timings["pretrain_s"] + run.timings["finetune_s"],
                             **table["AUROC"].to_dict()})
    return Comparison(pd.DataFrame(rows), kept, dict(proto.ood_groups))


OE_SCORES: tuple[str, ...] = ("outlier_class", "mahalanobis")
MOOD_NO_OOD = "MOOD (no OOD data)"


def compare_outlier_exposure(prof: Profile, shots: tuple[int, ...], oe_epochs: float, cache: Cache | None = None,
                             seeds: tuple[int, ...] | None = None) -> Comparison:
    """MOOD, which sees no OOD image, against outlier exposure (OE; Fort et al. 2021) given ``k``
    images of each OOD source, for each ``k`` in ``shots``, once per fine-tuning seed (default
    ``prof.seeds``).

    Per seed, MOOD is the profile's pretraining and fine-tuning (:func:`mood.experiments.pipeline.run_mood` on
    ``few-shot:1``: the multi-class training set, scored on the test halves of the OOD sets, the
    same for every ``k``), scored by Mahalanobis. Each OE model starts from that seed's fine-tuned
    MOOD model and trains ``oe_epochs`` more at a quarter of the learning rate with an 11-way head
    (the ten ID classes and an "outlier" class of the exposure images); it is scored by the
    outlier-class probability and by Mahalanobis on its features. The exposure images are the same
    for every seed (the protocol's split), so the spread over seeds is training noise.

    Returns:
        A :class:`Comparison` with models ``MOOD (no OOD data)`` and ``OE k-shot``; ``train s`` of
        an OE model includes the MOOD training it starts from.
    """
    if not shots or min(shots) < 1:
        raise ValueError(f"compare_outlier_exposure: shots must be positive image counts, got {shots}")
    if oe_epochs <= 0:
        raise ValueError(f"compare_outlier_exposure: oe_epochs must be > 0, got {oe_epochs}")
    seeds = prof.seeds if seeds is None else seeds
    cache = cache or Cache()
    rows, kept, groups = [], {}, {}

    def add(model: str, det: str, seed: int, scores: tuple[torch.Tensor, dict[str, torch.Tensor]], proto: Protocol,
            cfg: EvalConfig, feats: ProtocolFeatures, train_s: float, key: str) -> None:
        id_s, ood_s = scores
        kept[(model, det, seed)] = (id_s.numpy(), {k: v.numpy() for k, v in ood_s.items()})
        rows.append({"model": model, "score": det, "seed": seed, "run key": key, "ID acc": id_accuracy(feats), "train s": train_s,
                     **scores_table(kept[(model, det, seed)], proto, cfg)["AUROC"].to_dict()})

    for seed in seeds:
        run = run_mood("few-shot:1", prof, cache, detector="mahalanobis", finetune_seed=seed)
        groups = dict(run.protocol.ood_groups)
        mood_s = run.timings["pretrain_s"] + run.timings["finetune_s"]
        add(MOOD_NO_OOD, "mahalanobis", seed, run.scores, run.protocol, run.profile.eval, run.features, mood_s, run.key)
        for k in shots:
            shot = resolve(prof, f"few-shot:{k}", finetune_seed=seed)
            proto, q = shot.protocol, shot.profile
            cfg = outlier_exposure_finetune(q.finetune, oe_epochs)
            oe = finetune(run.finetuned, proto.train, cfg, proto.num_classes + 1, q.format, cache, exposure=proto.ood_train)
            feats = extract_protocol(oe, proto, q.eval, q.format, cache, train=training_sample(proto.train, cfg))
            for det in OE_SCORES:
                add(f"OE {k}-shot", det, seed, score_protocol(feats, det, oe, proto, q.eval, q.format), proto, q.eval,
                    feats, mood_s + oe.train_seconds,
                    replace(shot, detector=det).key_with(stage="outlier exposure", epochs=oe_epochs))
    return Comparison(pd.DataFrame(rows), kept, groups)


def mood_name(prof: Profile) -> str:
    """MOOD's row label in :func:`compare_at_equal_compute`."""
    return f"MOOD ({prof.model.name}, {prof.pretrain.pretext} + fine-tune)"


def versus_baselines(equal: Comparison, reference: str, reference_score: str, metric: str,
                     alpha: float = ALPHA) -> pd.DataFrame:
    """``reference`` with ``reference_score`` minus every other (model, score) of ``equal`` on the
    AUROC column ``metric``, each with a paired test at ``alpha`` (the ``test`` column says which):

    - with 2 or more seeds in common: :func:`mood.core.stats.paired_test` on the per-seed differences
      (covers training seeds and test images);
    - with one: :func:`mood.core.stats.paired_bootstrap` on that seed's test images (covers the test-set
      sample only, not training seeds).

    Returns:
        One row per baseline (model, score): its mean ``ID acc`` and ``metric``, the difference's
        ``mean``, ``std``, ``seeds``, interval ``ci_lo``/``ci_hi``, ``p``, ``significant``, ``test``.
    """
    t = equal.table
    sets = equal.sets_of(metric)  # a wrong metric fails here, with the valid names
    ref = t[(t["model"] == reference) & (t["score"] == reference_score)].set_index("seed")[metric]
    if ref.empty:
        raise ValueError(f"versus_baselines: no rows for {reference!r} with score {reference_score!r}; models: "
                         f"{sorted(t['model'].unique())}, scores: {sorted(t['score'].unique())}")
    rows = {}
    for (model, det), g in t[t["model"] != reference].groupby(["model", "score"], sort=False):
        g = g.set_index("seed")
        common = list(ref.index.intersection(g.index))
        if len(common) >= 2:
            test = {**paired_test((ref.loc[common] - g.loc[common, metric]).to_numpy(), alpha), "test": "paired t over seeds"}
        elif common:
            s = common[0]

            def pick(key: tuple[str, str, int]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
                id_s, ood_s = equal.scores[key]
                return id_s, {k: ood_s[k] for k in sets}

            test = {**paired_bootstrap(pick((reference, reference_score, s)), pick((model, det, s)), alpha=alpha),
                    "test": f"paired bootstrap of test images, seed {s}"}
        else:
            raise ValueError(f"versus_baselines: {model!r} shares no seed with {reference!r}")
        rows[(model, det)] = {"ID acc": g["ID acc"].mean(), metric: g[metric].mean(), **test}
    return comparison_table(rows)
