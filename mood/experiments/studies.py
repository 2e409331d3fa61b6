"""The ablation studies, declared before any result: question, endpoint, variants and contrasts.

Each ablation chapter (10-14) is one :class:`Study` of :data:`STUDIES`. What it tests is fixed here,
not chosen after seeing the runs: the ``contrasts`` are the only comparisons that carry a verdict,
Holm-adjusted within the study; a paper's claimed direction turns a contrast into ``replicated`` /
``contradicted`` / ``inconclusive`` (:func:`mood.experiments.verdicts.call`). Beside every contrast
stands its power: the smallest true gap the design detects at 80% power, given the measured spread of
the per-seed gap (:func:`mood.core.stats.mde`), so "no difference" reads "no difference larger than X".

A profile may ask fewer questions than the full grid (:attr:`mood.experiments.config.Plan.studies`:
the variants it trains); the contrasts it keeps are those whose two arms it trains, and Holm counts
only those. All studies of a profile run on ``prof.ablation_protocols`` at ``prof.plan.ablation_scale``:
on ``cpu`` the near-distribution split at the main chapters' scale, so the BEiT arm of every study is
chapter 7's MOOD model (trained once, read from the cache) and the endpoint, the mean AUROC over the
held-out classes (58-92 per class), leaves room to move.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from mood.core.cache import Cache
from mood.core.scores import SCORES
from mood.core.stats import mde, pair_label, paired_test
from mood.experiments import tables
from mood.experiments.ablations import SET_AUROC, pair_gaps, run_grid, save_grid, seed_intervals
from mood.experiments.config import Profile
from mood.experiments.resolve import Variant, seeds_of
from mood.experiments.verdicts import call, floor, gate, paired

ENDPOINT = "AUROC"  # the runs' column every study tests: mean AUROC over the protocol's OOD sets


@dataclass(frozen=True)
class Contrast:
    """``a`` minus ``b`` on the endpoint, paired by seed.

    Args:
        claimed: the sign a paper claims for ``a − b`` (+1: ``a`` detects OOD better), or None for a
            question without a claimed direction (then the call is who is better, or too close).
        source: where the claim comes from.
    """

    a: str
    b: str
    claimed: int | None = None
    source: str = ""


@dataclass(frozen=True)
class Study:
    """One ablation chapter's design.

    Args:
        name: the registry name (a profile's :attr:`~mood.experiments.config.Plan.studies` key).
        stem: its result tables' prefix (``10_pretext``: ``_runs``, ``_intervals``, ``_gaps``).
        question: what the chapter asks, in one sentence.
        variants: the full grid (the ``gpu`` profile's); the first is the reference arm.
        contrasts: the declared comparisons.
    """

    name: str
    stem: str
    question: str
    variants: tuple[Variant, ...]
    contrasts: tuple[Contrast, ...]

    def __post_init__(self) -> None:
        names = [v.name for v in self.variants]
        for c in self.contrasts:
            if c.a not in names or c.b not in names:
                raise ValueError(f"study {self.name!r}: contrast {c.a!r} − {c.b!r} names a variant it does not declare")

    def asked(self, prof: Profile) -> Study:
        """The study as ``prof`` asks it: the variants its plan trains, the contrasts between them."""
        keep = prof.plan.studies.get(self.name)
        if keep is None:
            return self
        unknown = set(keep) - {v.name for v in self.variants}
        if unknown:
            raise ValueError(f"profile {prof.name!r} asks study {self.name!r} for variants it does not declare: "
                             f"{sorted(unknown)}; valid: {[v.name for v in self.variants]}")
        variants = tuple(v for v in self.variants if v.name in keep)
        return replace(self, variants=variants,
                       contrasts=tuple(c for c in self.contrasts if c.a in keep and c.b in keep))

    def declaration(self, prof: Profile) -> str:
        """The design in Markdown, printed before the results: question, protocol and scale, endpoint,
        seeds, variants, and the contrasts with their claims and correction."""
        seeds = seeds_of(prof, kind="studies")
        head = [f"**Question.** {self.question}",
                f"**Endpoint.** Mean AUROC over the OOD sets of `{', '.join(prof.ablation_protocols)}` "
                f"({prof.plan.ablation_scale} scale), paired by seed over {len(seeds)} seeds {list(seeds)}.",
                "**Variants.** " + "; ".join(f"`{v.name}`" for v in self.variants) + ".",
                f"**Declared contrasts**, Holm-adjusted over these {len(self.contrasts)}; no other comparison "
                f"carries a verdict:"]
        items = [f"- `{c.a}` − `{c.b}`: " + (f"claimed {'positive' if c.claimed > 0 else 'negative'} ({c.source})"
                                           if c.claimed else "no claimed direction") for c in self.contrasts]
        if prof.plan.ablation_scale == "main":
            head.append("**What the seeds cover.** Each seed fine-tunes one shared pretrained backbone per arm (a "
                        "from-scratch arm's seed is its whole training), so the intervals cover fine-tuning, not "
                        "pretraining: an arm's pretraining is one draw.")
        return "\n\n".join(head[:4]) + "\n\n" + "\n".join(items) + "".join(f"\n\n{h}" for h in head[4:])


def run(study: Study, prof: Profile, seed: int = 0, cache: Cache | None = None, probe: bool = False) -> pd.DataFrame:
    """Every variant of ``study`` (as asked) on the profile's ablation protocols with every seed: one
    row per run (:func:`mood.experiments.ablations.run_grid`), with its run key."""
    return run_grid(list(study.variants), list(prof.ablation_protocols), list(seeds_of(prof, seed, "studies")), prof,
                    cache, scale=prof.plan.ablation_scale, probe=probe)


def contrasts(runs: pd.DataFrame, study: Study, prof: Profile) -> pd.DataFrame:
    """The declared contrasts of ``study`` on ``runs``: per (comparison, protocol) the paired gap, its
    spread over seeds, 95% t-interval, ``p`` and ``p (Holm)`` over the study's contrasts, ``MDE`` (the
    smallest true gap detectable at 80% power, two-sided 5% at the first Holm step, from the measured
    ``gap std``), the models' ``ID acc`` and ``call``: the verdict in words (replicated / contradicted /
    inconclusive on a claim; who is better or too close to call without one; no verdict under the
    accuracy floor)."""
    if not study.contrasts:
        raise ValueError(f"study {study.name!r} as asked has no contrast: ask both arms of one")
    gaps = pair_gaps(runs, [(c.a, c.b) for c in study.contrasts], ENDPOINT)
    intervals = seed_intervals(runs, ENDPOINT)
    by_label = {pair_label(c.a, c.b): c for c in study.contrasts}
    out = []
    for (comparison, proto), r in gaps.iterrows():
        c = by_label[comparison]
        acc = {v: float(intervals.loc[(v, proto), "ID acc"]) for v in (c.a, c.b)}
        detectable = mde(float(r["gap std"]), int(r["seeds"]), tests=len(study.contrasts))
        no_verdict = gate({v: a for v, a in acc.items() if np.isfinite(a)}, floor(prof, proto))
        out.append({"comparison": comparison, "protocol": proto, **r.to_dict(), "MDE": detectable,
                    "ID acc a": acc[c.a], "ID acc b": acc[c.b], "claimed": c.claimed or 0,
                    "call": _call(c, r, detectable, no_verdict)})
    return pd.DataFrame(out).set_index(["comparison", "protocol"])


def _call(c: Contrast, r: pd.Series, detectable: float, no_verdict: str) -> str:
    power = (f"; the design detects gaps of {detectable:.2f} AUROC or more with 80% power"
             if np.isfinite(detectable) and not no_verdict else "")
    if c.claimed:
        verdict = call(r["ci_lo"], r["ci_hi"], c.claimed, r["p (Holm)"], no_verdict)
        reason = verdict.reason + (power if verdict.outcome == "inconclusive" else "")
        return verdict.outcome + (f": {reason}" if reason else "")
    words = paired(r["gap"], r["ci_lo"], r["ci_hi"], p_holm=r["p (Holm)"], no_verdict=no_verdict,
                   says=(f"{c.a} is better", f"{c.b} is better", "too close to call" + power))
    return words.rsplit(" — ", 1)[-1]


@dataclass
class StudyResult:
    """What a study chapter shows: ``runs`` (one row per run, with run keys), ``intervals`` (per
    variant: the endpoint's mean, spread and interval over seeds beside ID accuracy and compute) and
    ``gaps`` (the declared contrasts, :func:`contrasts`)."""

    study: Study
    runs: pd.DataFrame
    intervals: pd.DataFrame
    gaps: pd.DataFrame


def run_chapter(name: str, prof: Profile, results_dir: str, seed: int = 0, probe: bool = False,
                cache: Cache | None = None) -> StudyResult:
    """Study ``name`` as ``prof`` asks it, run and saved under ``results_dir`` as its registered tables
    (``<stem>``, ``<stem>_runs``, ``<stem>_intervals``, ``<stem>_gaps``)."""
    study = get(name, prof)
    for suffix in ("", "_runs", "_intervals", "_gaps"):
        tables.get(study.stem + suffix)  # registered, before anything trains
    runs = run(study, prof, seed, cache, probe)
    save_grid(runs, results_dir, study.stem)
    intervals = seed_intervals(runs, ENDPOINT)
    tables.save(f"{study.stem}_intervals", intervals, results_dir)
    gaps = contrasts(runs, study, prof)
    tables.save(f"{study.stem}_gaps", gaps, results_dir)
    return StudyResult(study, runs, intervals, gaps)


SPREAD_PRETEXTS = ("beit", "classification")  # MOODv2's contrast: reconstruction against recognition pretraining


def score_spread(prof: Profile, seed: int = 0, cache: Cache | None = None) -> pd.DataFrame:
    """MOODv2's claim (Li et al. 2024): reconstruction pretraining narrows the spread of AUROC across
    score functions. For BEiT and classification pretraining (the pretext study's models, read from the
    cache: nothing trains), every score the OOD-metric study asks, per seed: the spread is the largest
    minus the smallest mean AUROC over the scores; the contrast is classification's spread minus
    BEiT's, paired by seed (positive: MIM narrower, the claim). One row per protocol, with the two
    spreads, the paired test, ``MDE``, both pretexts' ID accuracy and the ``call``."""
    detectors = [v.detector for v in get("ood_metric", prof).variants]
    variants = [Variant(f"{pretext}, {d}", pretext=pretext, detector=d) for pretext in SPREAD_PRETEXTS for d in detectors]
    runs = run_grid(variants, list(prof.ablation_protocols), list(seeds_of(prof, seed, "studies")), prof, cache,
                    scale=prof.plan.ablation_scale)
    runs["pretext"] = runs["variant"].str.split(", ").str[0]
    rows = []
    for proto, g in runs.groupby("protocol", sort=False):
        spread = g.groupby(["pretext", "seed"])[ENDPOINT].agg(lambda a: a.max() - a.min()).unstack("pretext")
        test = paired_test((spread["classification"] - spread["beit"]).to_numpy())
        acc = g.groupby("pretext")["ID acc"].mean()
        verdict = call(test["ci_lo"], test["ci_hi"], +1,
                       no_verdict=gate(acc.to_dict(), floor(prof, proto)))
        rows.append({"comparison": pair_label("classification", "beit"), "protocol": proto,
                     "spread a": spread["classification"].mean(), "spread b": spread["beit"].mean(),
                     "gap": test["mean"], "gap std": test["std"], "ci_lo": test["ci_lo"], "ci_hi": test["ci_hi"],
                     "p": test["p"], "MDE": mde(test["std"], test["seeds"]) if test["seeds"] >= 2 else float("nan"),
                     "ID acc a": acc["classification"], "ID acc b": acc["beit"], "scores": ", ".join(detectors),
                     "call": verdict.outcome + (f": {verdict.reason}" if verdict.reason else "")})
    return pd.DataFrame(rows).set_index(["comparison", "protocol"])


def per_set(runs: pd.DataFrame, variants: Study | None = None) -> pd.DataFrame:
    """Where a mean AUROC comes from: per (variant, protocol), the AUROC on each OOD set (mean over
    seeds; the runs' ``"AUROC: <set>"`` columns, :func:`mood.experiments.ablations.run_variant`), and
    ``reads``: what the variant's score reads (``features``, ``logits`` or ``model``, from
    :data:`mood.core.scores.SCORES`, via the ``variants``' detectors; ``"features"`` without them)."""
    sets = [c for c in runs.columns if c.startswith(SET_AUROC)]
    if not sets:
        raise ValueError(f"the runs have no per-set AUROC columns ({SET_AUROC!r}...): they were made before "
                         f"run_variant wrote them; run the study again")
    out = runs.groupby(["variant", "protocol"], sort=False)[sets].mean()
    out.columns = [c[len(SET_AUROC):] for c in sets]
    detector = {v.name: v.detector for v in (variants.variants if variants else ())}
    out.insert(0, "reads", [SCORES[detector.get(v, "mahalanobis")].needs for v, _ in out.index])
    return out.dropna(axis=1, how="all")


def verdict_lines(gaps: pd.DataFrame) -> list[str]:
    """One line per contrast of a :func:`contrasts` table: the gap, its interval, Holm p, MDE and the call."""
    return [f"{proto}: {comparison}: {paired(r['gap'], r['ci_lo'], r['ci_hi'], r['p'], p_holm=r['p (Holm)'], says=None)}"
            f"; MDE {r['MDE']:.2f} — {r['call']}" for (comparison, proto), r in gaps.iterrows()]


MIM_CLAIM = "Li et al. 2023, pretext-task ablation"
STUDIES: dict[str, Study] = {s.name: s for s in (
    Study("pretext", "10_pretext",
          "Does masked-image-modeling pretraining give better OOD features than recognition pretraining "
          "(classification, contrastive) and than no pretraining at the same compute?",
          (Variant("BEiT MIM", pretext="beit"), Variant("SimMIM", pretext="simmim"), Variant("MAE", pretext="mae"),
           Variant("classification", pretext="classification"), Variant("SimCLR", pretext="simclr"),
           Variant("no pretraining (equal compute)", from_scratch=True)),
          (Contrast("BEiT MIM", "classification", +1, MIM_CLAIM),
           Contrast("BEiT MIM", "no pretraining (equal compute)", +1, "Li et al. 2023: pretraining is what MOOD adds"),
           Contrast("classification", "SimCLR", +1, MIM_CLAIM))),
    Study("architecture", "11_architecture",
          "Does the MIM-pretrained ViT detect OOD better than a convolutional network given the same images "
          "and optimiser steps?",
          (Variant("ViT + BEiT MIM", pretext="beit"), Variant("CNN (equal compute)", model="cnn_small", from_scratch=True),
           Variant("ViT + classification", pretext="classification"),
           Variant("ResNet + classification", pretext="classification", model="resnet10_narrow"),
           Variant("ViT (equal compute)", from_scratch=True)),
          (Contrast("ViT + BEiT MIM", "CNN (equal compute)", +1, "Li et al. 2023, architecture ablation"),
           Contrast("ViT + classification", "ResNet + classification", +1, "Li et al. 2023, architecture ablation"),
           Contrast("ViT (equal compute)", "CNN (equal compute)"))),
    Study("fine_tuning", "12_fine_tuning",
          "Does fine-tuning on the ID labels improve the pretrained features' OOD detection, and does "
          "label smoothing change it?",
          (Variant("fine-tuned"), Variant("pretrained only", finetune=False),
           Variant("fine-tuned, label smoothing 0.1", label_smoothing=0.1)),
          (Contrast("fine-tuned", "pretrained only", +1, "Li et al. 2023, fine-tuning ablation"),
           Contrast("fine-tuned", "fine-tuned, label smoothing 0.1"))),
    Study("ood_metric", "13_ood_metric",
          "Is the Mahalanobis distance the best OOD score on MOOD's fine-tuned features?",
          (Variant("mahalanobis", detector="mahalanobis"), Variant("knn", detector="knn"),
           Variant("msp", detector="msp"), Variant("energy", detector="energy"), Variant("odin", detector="odin"),
           Variant("vim", detector="vim")),
          (Contrast("mahalanobis", "knn", +1, "Li et al. 2023, OOD-metric ablation"),
           Contrast("mahalanobis", "msp", +1, "Li et al. 2023, OOD-metric ablation"),
           Contrast("mahalanobis", "energy", +1, "Li et al. 2023, OOD-metric ablation"))),
    Study("masking", "14_masking",
          "Does BEiT's block masking pretrain better OOD features than random masking at the same ratio?",
          (Variant("block, ratio 0.4", pretext="beit", mask_ratio=0.4, mask_kind="block"),
           Variant("random, ratio 0.4", pretext="beit", mask_ratio=0.4, mask_kind="random"),
           Variant("block, ratio 0.2", pretext="beit", mask_ratio=0.2, mask_kind="block"),
           Variant("block, ratio 0.6", pretext="beit", mask_ratio=0.6, mask_kind="block")),
          (Contrast("block, ratio 0.4", "random, ratio 0.4", +1, "Bao et al. 2022, BEiT's blockwise masking"),
           Contrast("block, ratio 0.4", "block, ratio 0.2"), Contrast("block, ratio 0.4", "block, ratio 0.6"))),
)}


def get(name: str, prof: Profile) -> Study:
    """Study ``name`` as profile ``prof`` asks it."""
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; valid: {', '.join(STUDIES)}")
    return STUDIES[name].asked(prof)


__all__ = ["ENDPOINT", "Contrast", "Study", "STUDIES", "StudyResult", "get", "run", "contrasts",
           "run_chapter", "score_spread", "per_set", "verdict_lines"]
