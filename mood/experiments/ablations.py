"""Ablations: the MOOD pipeline with one knob changed, over protocols and seeds.

A :class:`Variant` names the knob's setting; :func:`run_grid` runs every (variant, protocol, seed)
at the profile's ablation scale (``Profile.ablation``: smaller than the main chapters, so that all
ablations fit the book's time budget) and returns one row per run; :func:`mean_std` turns that
into the chapters' tables. Runs share the artifact cache with each other and with the main
chapters, so a variant that only changes the score reuses the trained backbone.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pandas as pd

from mood.core.cache import Cache, Trained
from mood.core.data import load_mnist, load_photos, load_textures
from mood.core.images import ImageSet, concat
from mood.core.metrics import results_table
from mood.core.models import training_flops
from mood.core.protocols import Protocol
from mood.core.stats import bounded_interval, holm, pair_label, paired_test, seed_gaps
from mood.experiments import tables
from mood.experiments.config import Profile
from mood.experiments.parallel import Job, prefetch
from mood.experiments.pipeline import (
    extract_protocol,
    extract_protocol_pools,
    finetune,
    id_accuracy,
    pretrain,
    score_protocol,
    training_sample,
)
from mood.experiments.probes import probe_accuracies
from mood.experiments.resolve import Variant, check_scale, resolve


def intermediate_corpus(protocol: Protocol, prof: Profile, seed: int = 0) -> ImageSet:
    """The protocol's training images plus MNIST and texture/photo patches, as one labelled set.

    Only for protocols whose OOD test images are Fashion-MNIST classes (one-class, near-split):
    with the offline OOD sets as test data, pretraining on them would be training on the test
    distribution.
    """
    if not protocol.ood_is_fmnist:
        raise ValueError(f"intermediate pretraining uses MNIST and image patches, which are OOD test sets of "
                         f"{protocol.name}; use it with one-class or near-distribution protocols")
    n = prof.pretrain.max_images or len(protocol.train)
    extra = [load_mnist(n // 2, seed), load_textures(n // 4, seed + 101), load_photos(n // 4, seed + 202)]
    own = protocol.train.sample(n, seed)
    return concat([own, *extra], prof.format, name=f"corpus[{protocol.name}]")


def _train(v: Variant, protocol: Protocol, p: Profile, cache: Cache) -> list[Trained]:
    """Pretrain (+ intermediate) (+ fine-tune) as the variant says; returns every stage, the
    pretrained backbone first and the scored model last."""
    if v.intermediate:
        corpus = intermediate_corpus(protocol, p, p.pretrain.seed)
        pre = pretrain(corpus, replace(p.model, num_classes=int(corpus.labels.max()) + 1), p.pretrain, p.format, cache)
        inter = finetune(pre, corpus, p.finetune, int(corpus.labels.max()) + 1, p.format, cache)
        stages = [pre, inter]
    else:
        stages = [pretrain(protocol.train, p.model, p.pretrain, p.format, cache)]
    if v.finetune:
        stages.append(finetune(stages[-1], protocol.train, p.finetune, protocol.num_classes, p.format, cache))
    return stages


def images_seen(stages: list[Trained]) -> int:
    """Training images the stages processed (steps x batch, from their per-epoch logs; a SimCLR image
    counts once though it is seen in two views)."""
    return int(round(sum(r["img_per_s"] * r["seconds"] for t in stages for r in t.history)))


SET_AUROC = "AUROC: "  # prefix of a run row's per-OOD-set AUROC columns ("AUROC: Coat")


def run_variant(v: Variant, protocol_name: str, prof: Profile, seed: int = 0, cache: Cache | None = None,
                scale: str = "ablation", probe: bool = False) -> dict:
    """One (variant, protocol, seed): a row of mean AUROC / FPR95 over the protocol's OOD sets, ID
    accuracy, training images processed (``images seen``) and time (``train s``, both from the logs),
    the AUROC on each OOD set (``"AUROC: <set>"``) and this call's wall time.

    Args:
        scale: ``"ablation"`` (the profile's ablation scale; ``seed`` seeds every stage) or ``"main"``
            (the main chapters' configuration: the pretrained backbone is theirs, ``seed`` seeds the
            fine-tuning, as in :func:`mood.experiments.pipeline.run_seeds`, so a variant that matches the
            profile reuses their cached models). Main-scale rows are labelled
            ``"<protocol> (main scale)"``.
        probe: also the linear-probe and k-NN accuracy of the pretrained backbone's mean token,
            before any fine-tuning (:mod:`mood.experiments.probes`; not on one-class protocols, which have one label).
    """
    cache = cache or Cache()
    t0 = time.perf_counter()
    # a from-scratch model is all fine-tuning: its seed is its whole training, as for chapter 6's baselines
    seeds = {"seed": seed} if scale == "ablation" or v.from_scratch else {"finetune_seed": seed}
    run = resolve(prof, protocol_name, scale=scale, variant=v, **seeds)
    protocol, p = run.protocol, run.profile
    stages = _train(v, protocol, p, cache)
    trained = stages[-1]
    last = p.finetune if v.finetune else p.pretrain
    feats = extract_protocol(trained, protocol, p.eval, p.format, cache, train=training_sample(protocol.train, last))
    id_s, ood_s = score_protocol(feats, v.detector, trained, protocol, p.eval, p.format)
    table = results_table(id_s.numpy(), {k: s.numpy() for k, s in ood_s.items()}, p.eval.fpr_positive)
    label = protocol_name if scale == "ablation" else f"{protocol_name} (main scale)"
    row = {"variant": v.name, "protocol": label, "seed": seed, "run key": run.key, "AUROC": table.loc["mean", "AUROC"],
           "FPR95": table.loc["mean", "FPR95"], "ID acc": id_accuracy(feats) if v.finetune else np.nan,
           "images seen": images_seen(stages), "train s": sum(t.train_seconds for t in stages)}
    row |= {f"{SET_AUROC}{k}": table.loc[k, "AUROC"] for k in ood_s}  # where a mean's gap comes from
    if probe and protocol.kind != "one-class":  # one label: nothing to probe
        frozen = extract_protocol_pools(stages[0], protocol, p.eval, ("mean",), p.format, cache,
                                        train=training_sample(protocol.train, p.pretrain))["mean"]
        row |= probe_accuracies(frozen.fit, frozen.id)
    return row | {"seconds": time.perf_counter() - t0}


# The variant's knobs that reach its pretraining, and those that reach any training stage; the rest
# (name, detector, pool, normalize) only change how a trained model is scored.
PRETRAIN_KNOBS = ("pretext", "model", "intermediate", "mask_ratio", "mask_kind", "pretrain_epochs", "from_scratch")
TRAIN_KNOBS = PRETRAIN_KNOBS + ("finetune", "label_smoothing")


def training_key(v: Variant, protocol: str, seed: int, scale: str, knobs: tuple[str, ...] = TRAIN_KNOBS) -> tuple:
    """What identifies the models a run trains up to the stages ``knobs`` reach: two runs with the
    same key train the same models (the main scale seeds only the fine-tuning, so its pretraining
    key has no seed)."""
    seeded = scale == "ablation" or knobs != PRETRAIN_KNOBS or v.from_scratch
    return (protocol, seed if seeded else None, *(getattr(v, k) for k in knobs))


def training_waves(runs: list[tuple[Variant, str, int]], scale: str) -> list[list[tuple[Variant, str, int]]]:
    """The runs that train something new, in two waves that never train the same model twice at once:
    first one run per distinct pretraining, then one per distinct remaining training (whose
    pretraining the first wave cached). Runs that only re-score a trained model are left out."""
    first, second, pretrained, trained = [], [], set(), set()
    for v, proto, seed in runs:
        key = training_key(v, proto, seed, scale)
        if key in trained:
            continue
        trained.add(key)
        pre = training_key(v, proto, seed, scale, PRETRAIN_KNOBS)
        (second if pre in pretrained else first).append((v, proto, seed))
        pretrained.add(pre)
    return [w for w in (first, second) if w]


def run_grid(variants: list[Variant], protocols: list[str], seeds: list[int], prof: Profile,
             cache: Cache | None = None, scale: str = "ablation", probe: bool = False) -> pd.DataFrame:
    """Every variant on every protocol with every seed at ``scale`` (:func:`run_variant`): one row per run.

    With ``prof.workers > 1`` the distinct trainings run first in that many processes
    (:func:`mood.experiments.parallel.prefetch`, in :func:`training_waves`), and the rows are then read from the
    cache they filled: on a GPU, several small models train side by side faster than one after another.
    """
    check_scale(scale)  # before any training
    cache = cache or Cache()
    runs = [(v, proto, seed) for v in variants for proto in protocols for seed in seeds]
    for wave in training_waves(runs, scale):
        prefetch([Job(run_variant, (v, proto, prof, seed, cache, scale), name=f"{v.name} / {proto} / seed {seed}")
                  for v, proto, seed in wave], prof.workers)
    return pd.DataFrame([run_variant(v, proto, prof, seed, cache, scale, probe) for v, proto, seed in runs])


def mean_std(runs: pd.DataFrame, value: str = "AUROC", order: list[str] | None = None) -> pd.DataFrame:
    """``"mean ± std"`` of ``value`` over seeds: variants as rows, protocols as columns; where the
    runs carry their models' ``ID acc``, each protocol's column is followed by ``<protocol> ID acc``
    (mean over seeds, % on the ID test images; "—" for a model without a classifier), so no figure
    stands without the accuracy of the model that made it."""
    g = runs.groupby(["variant", "protocol"], sort=False)[value]
    stats = g.agg(["mean", "std", "count"]).reset_index()
    stats["cell"] = [f"{m:.2f} ± {s:.2f}" if c > 1 else f"{m:.2f}"
                     for m, s, c in zip(stats["mean"], stats["std"].fillna(0), stats["count"])]
    table = stats.pivot(index="variant", columns="protocol", values="cell")
    protocols = list(dict.fromkeys(runs["protocol"]))
    columns: list[str] = protocols
    if "ID acc" in runs:
        acc = runs.groupby(["variant", "protocol"], sort=False)["ID acc"].mean().unstack("protocol")
        for proto in protocols:
            table[f"{proto} ID acc"] = acc[proto].map(lambda a: "—" if pd.isna(a) else f"{a:.2f}")
        columns = [c for proto in protocols for c in (proto, f"{proto} ID acc")]
    table.columns.name = None
    return table.loc[order or list(dict.fromkeys(runs["variant"]))][columns]


def family_gap(runs: pd.DataFrame, families: dict[str, str], a: str, b: str,
               value: str = "AUROC") -> pd.DataFrame:
    """Family ``a`` minus family ``b`` per protocol, paired by seed.

    Each run's variant is mapped to a family (``families``: variant -> family); within one seed a
    family scores the mean of its variants, and the gap is taken seed by seed, so a difference that
    every seed agrees on is told apart from seed noise. Returns one row per protocol: the families'
    means, the mean gap, its standard deviation and number of paired seeds, its 95% t-interval, the paired t-test's
    ``p`` and ``call``: ``a`` or ``b`` when the test is significant at 5%, else ``"too close to call"``.
    """
    fam = runs.assign(family=runs["variant"].map(families))
    fam = fam[fam["family"].isin([a, b])]
    per_seed = fam.groupby(["protocol", "seed", "family"])[value].mean().unstack("family").dropna()
    per_seed["gap"] = per_seed[a] - per_seed[b]
    gaps = seed_gaps(per_seed.reset_index(), ["protocol"], "gap")
    table = per_seed.groupby("protocol")[[a, b]].mean().assign(
        gap=gaps["mean"], **{"gap std": gaps["std"], "seeds": gaps["seeds"], "ci_lo": gaps["ci_lo"], "ci_hi": gaps["ci_hi"],
                             "p": gaps["p"]})
    table["call"] = pd.Series(np.where(gaps["significant"], np.where(gaps["mean"] > 0, a, b), "too close to call"),
                              index=gaps.index)
    table.columns.name = None
    return table.reindex(list(dict.fromkeys(fam["protocol"])))


def save_grid(runs: pd.DataFrame, results_dir: str, stem: str, value: str = "AUROC") -> pd.DataFrame:
    """Writes an ablation's runs (``<stem>_runs``) and their :func:`mean_std` table (``<stem>``),
    both registered result tables (:mod:`mood.experiments.tables`), under ``results_dir``; returns the table."""
    tables.get(stem), tables.get(f"{stem}_runs")  # both registered, before either is written
    tables.save(f"{stem}_runs", runs.set_index("variant"), results_dir)
    table = mean_std(runs, value)
    tables.save(stem, table, results_dir)
    return table


PER_RUN_MEANS = ("ID acc", "images seen", "train s", "linear probe acc", "kNN acc")


def training_cost(runs: pd.DataFrame, variants: list[Variant], prof: Profile) -> pd.DataFrame:
    """Per variant (rows in ``variants``' order): its model, the seed-mean ID accuracy, images
    seen and training seconds of ``runs`` (:func:`run_grid`), the model's training FLOPs per image
    (:func:`mood.core.models.training_flops`, in MFLOP) and their product with the images seen
    (``train TFLOP``: an estimate that prices every pretraining and fine-tuning image at one
    classifier step; a pretext head adds a little)."""
    m = prof.model
    rows = []
    for v in variants:
        g = runs[runs["variant"] == v.name]
        if g.empty:
            raise ValueError(f"no runs of variant {v.name!r}; the runs have {sorted(runs['variant'].unique())}")
        name = v.model or m.name
        mflop = training_flops(name, m.img_size, m.in_chans, m.num_classes) / 1e6
        rows.append({"variant": v.name, "model": name, "ID acc": g["ID acc"].mean(),
                     "images seen": g["images seen"].mean(), "MFLOP per image": mflop,
                     "train TFLOP": mflop * g["images seen"].mean() / 1e6, "train s": g["train s"].mean()})
    return pd.DataFrame(rows).set_index("variant")


def seed_intervals(runs: pd.DataFrame, value: str = "AUROC",
                   bounds: tuple[float, float] | None = (0.0, 100.0)) -> pd.DataFrame:
    """Per (variant, protocol): ``value``'s mean, std, seeds and 95% t-interval over seeds
    (:func:`mood.core.stats.paired_test`; clipped to ``bounds``, a percentage's by default:
    :func:`mood.core.stats.bounded_interval`), beside the seed-mean of each of :data:`PER_RUN_MEANS` the runs
    have. Index ``(variant, protocol)``."""
    rows = []
    for (variant, proto), g in runs.groupby(["variant", "protocol"], sort=False):
        t = paired_test(g[value].to_numpy())
        lo, hi = bounded_interval(g[value].to_numpy(), *bounds) if bounds else (t["ci_lo"], t["ci_hi"])
        rows.append({"variant": variant, "protocol": proto, value: t["mean"], "std": t["std"], "seeds": t["seeds"],
                     "ci_lo": lo, "ci_hi": hi,
                     **{c: float(g[c].mean()) for c in PER_RUN_MEANS if c in g}})
    return pd.DataFrame(rows).set_index(["variant", "protocol"])


def pair_gaps(runs: pd.DataFrame, pairs: list[tuple[str, str]], value: str = "AUROC") -> pd.DataFrame:
    """Variant ``a`` minus variant ``b`` for each pair, per protocol, paired by seed (:func:`family_gap`
    with one variant per family). Index ``(comparison, protocol)`` with ``comparison = "a − b"``;
    columns ``a``, ``b`` (their means), ``gap``, ``gap std``, ``ci_lo``, ``ci_hi``, ``p``, ``significant``
    (each test alone at 5%) and ``p (Holm)``: ``p`` adjusted over the pairs of one protocol
    (:func:`mood.core.stats.holm`), below 0.05 for at most 5% chance of any false call in the family."""
    parts = []
    for a, b in pairs:
        g = family_gap(runs, {a: a, b: b}, a, b, value).rename(columns={a: "a", b: "b"})
        g["significant"] = g.pop("call") != "too close to call"
        parts.append(g.assign(comparison=pair_label(a, b)).reset_index(names="protocol"))
    out = pd.concat(parts)
    out["p (Holm)"] = out.groupby("protocol", sort=False)["p"].transform(lambda p: holm(p.to_numpy()))
    return out.set_index(["comparison", "protocol"])


