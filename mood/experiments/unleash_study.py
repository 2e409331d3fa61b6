"""The Unleashing Mask study (chapter 16): every backbone, label-noise condition and seed of
:func:`mood.experiments.unleash.run_unleash`, its tables (the per-epoch curve, the methods' AUROC /
FPR95 with ID accuracy, the stages) and its declared paired tests with Holm over the primary family."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from mood.core.cache import Cache
from mood.core.stats import holm, seed_gaps
from mood.experiments import papers, tables
from mood.experiments.config import Profile
from mood.experiments.resolve import base_profile, resolve
from mood.experiments.unleash import (
    KEYS,
    METHOD_LABELS,
    SELECT_SCORE,
    UM_ON_VAL,
    condition_label,
    run_unleash,
)
from mood.experiments.verdicts import paired

HOLD_EPOCHS, HOLD_TOLERANCE = 2, 0.10  # UM "holds its floor": training CE within ±10% of b over its last 2 epochs


def best_epoch(curve: pd.DataFrame, score: str = "energy") -> pd.Series:
    """The row of the epoch with the highest mean test AUROC of ``score``: an oracle (picked on the
    test OOD sets) that shows what the intermediate stage holds, not a usable method."""
    return curve.loc[curve[f"{score} AUROC"].idxmax()]


def summarize(runs: pd.DataFrame, metrics: tuple[str, ...] = ("AUROC", "FPR95", "ID acc")) -> pd.DataFrame:
    """``mean ± std`` over seeds of each metric, rows (condition, model, method), columns (score, metric)."""
    g = runs.groupby([*KEYS, "method", "score"], sort=False)[list(metrics)]
    mean, std, n = g.mean(), g.std().fillna(0.0), g.size()
    cells = mean.copy().astype(object)
    for col in metrics:
        cells[col] = [f"{m:.2f} ± {s:.2f}" if k > 1 else f"{m:.2f}" for m, s, k in zip(mean[col], std[col], n)]
    wide = cells.unstack("score")
    wide.columns = wide.columns.swaplevel(0, 1)
    scores = list(dict.fromkeys(runs["score"]))
    return wide[[(s, m) for s in scores for m in metrics]]


def effect(runs: pd.DataFrame, method: str = "+UM", against: str = METHOD_LABELS["baseline"],
           metric: str = "AUROC") -> pd.DataFrame:
    """Per condition, model and score: the change ``Δ`` of ``metric`` from ``against`` to ``method``:
    mean, std, 95% t-interval (``ci_lo``, ``ci_hi``) and paired t-test (``p``, ``significant`` at
    5%) of the same-seed differences (:func:`mood.core.stats.paired_test`; no test with a single seed).
    The columns do not depend on ``metric``, so tables of several metrics concatenate."""
    key = [*KEYS, "score", "seed"]
    base = runs[runs["method"] == against].set_index(key)[metric]
    other = runs[runs["method"] == method].set_index(key)[metric]
    if base.empty or other.empty:
        raise ValueError(f"effect: no rows for {method!r} or {against!r}; methods present: "
                         f"{sorted(runs['method'].unique())}")
    diff = (other - base).dropna().rename("delta").reset_index()
    out = seed_gaps(diff, [*KEYS, "score"], "delta").rename(columns={"mean": "Δ"})
    out["std"] = out["std"].fillna(0.0)
    return out


def beside_mood(runs: pd.DataFrame, mood_seeds: pd.DataFrame, score: str = SELECT_SCORE) -> pd.DataFrame:
    """MOOD's multi-class detector beside Unleashing Mask's, each as it would be deployed: per
    condition and backbone of ``runs``, the method whose mean validation AUROC of ``score`` is highest
    (chosen without test data); MOOD's row from ``mood_seeds`` (chapter 6's per-seed table: its
    ``mean`` AUROC over the same OOD sets and ``ID acc``). Rows: detectors; columns ``AUROC``,
    ``FPR95`` (NaN for MOOD: its per-seed table has none), ``ID acc`` (means over seeds), ``seeds``."""
    g = (runs[runs["score"] == score].groupby([*KEYS, "method"], sort=False)
         .agg(**{"val AUROC": ("val AUROC", "mean"), "AUROC": ("AUROC", "mean"), "FPR95": ("FPR95", "mean"),
                 "ID acc": ("ID acc", "mean"), "seeds": ("seed", "nunique")}))
    if g.empty:
        raise ValueError(f"beside_mood: no {score!r} rows in the runs; scores present: {sorted(runs['score'].unique())}")
    chosen = g.loc[g.groupby(level=KEYS, sort=False)["val AUROC"].idxmax()]
    rows = {"MOOD (chapter 6): Mahalanobis, MIM-pretrained and fine-tuned ViT":
            {"AUROC": mood_seeds["mean"].mean(), "FPR95": np.nan, "ID acc": mood_seeds["ID acc"].mean(),
             "seeds": len(mood_seeds)}}
    for (cond, model, method), r in chosen.iterrows():
        rows[f"{cond}: {method} ({model}, {score})"] = r.drop("val AUROC").to_dict()
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("detector")


# --------------------------------------------------------------------------------------------
# Every backbone, condition and seed: the tables and the verdict of the chapter and the CLI

def stage_table(curve: pd.DataFrame, scores: tuple[str, ...], select: str = SELECT_SCORE) -> pd.DataFrame:
    """Per (condition, model, seed, score) of a study's ``curve``: the best epoch on the test OOD sets
    (oracle) and its AUROC, the epoch picked on the validation OOD set (when the curve has it) and
    its test AUROC, the last epoch and its AUROC; ``gap`` = oracle best - last and ``val gap`` =
    validation-picked - last (AUROC points). The validation pick is one epoch for every score, the
    one ``select``'s validation AUROC prefers (the ``epoch chosen on val OOD`` of the method tables);
    without ``select`` in the curve, each score's own."""
    rows = []
    for (cond, model, seed), c in curve.groupby([*KEYS, "seed"], sort=False):
        last = c.iloc[-1]
        for name in scores:
            best = best_epoch(c, name)
            row = {"condition": cond, "model": model, "seed": seed, "score": name, "best epoch": int(best["epoch"]),
                   "best AUROC": best[f"{name} AUROC"], "last epoch": int(last["epoch"]),
                   "last AUROC": last[f"{name} AUROC"]}
            chooser = select if f"{select} val AUROC" in c else name
            if f"{chooser} val AUROC" in c:
                picked = c.loc[c[f"{chooser} val AUROC"].idxmax()]
                row |= {"val epoch": int(picked["epoch"]), "val-picked AUROC": picked[f"{name} AUROC"]}
            rows.append(row)
    out = pd.DataFrame(rows)
    out["gap"] = out["best AUROC"] - out["last AUROC"]
    if "val-picked AUROC" in out:
        out["val gap"] = out["val-picked AUROC"] - out["last AUROC"]
    return out


COMPARISONS: dict[str, tuple[str, str, str]] = {
    # name: (method, against, metric)
    "val-OOD epoch vs last": ("epoch chosen on val OOD", METHOD_LABELS["baseline"], "AUROC"),
    "early stopping vs last": ("early stopping (ID val loss)", METHOD_LABELS["baseline"], "AUROC"),
    "UM vs last": (METHOD_LABELS["um"], METHOD_LABELS["baseline"], "AUROC"),
    "UM (b on val OOD) vs last": (UM_ON_VAL, METHOD_LABELS["baseline"], "AUROC"),
    "UM vs CE control": (METHOD_LABELS["um"], METHOD_LABELS["ce"], "AUROC"),
    "UMAP vs last": (METHOD_LABELS["umap"], METHOD_LABELS["baseline"], "AUROC"),
    "UM vs last, FPR95": (METHOD_LABELS["um"], METHOD_LABELS["baseline"], "FPR95"),
}


# The chapter's declared tests: the paper's two claims (an intermediate stage beats the last; UM beats
# the last) and UM against the control, on Energy AUROC (SELECT_SCORE), per condition and backbone.
# Holm runs over this family; every other row of the effects table is secondary: described, not called.
PRIMARY = ("val-OOD epoch vs last", "UM vs last", "UM vs CE control")


def study_effects(runs: pd.DataFrame) -> pd.DataFrame:
    """The paired (same-seed) comparisons of :data:`COMPARISONS` that the runs hold, stacked under a
    ``comparison`` level (AUROC points; FPR95 points where the name says so), with ``family``
    (``primary``: a :data:`PRIMARY` comparison of :data:`SELECT_SCORE`; else ``secondary``) and
    ``p (Holm)`` over the primary family (NaN for secondary rows)."""
    methods = set(runs["method"])
    out = pd.concat({name: effect(runs, m, a, metric) for name, (m, a, metric) in COMPARISONS.items()
                     if m in methods and a in methods}, names=["comparison"])
    primary = (out.index.get_level_values("comparison").isin(PRIMARY)
               & (out.index.get_level_values("score") == SELECT_SCORE))
    out["family"] = np.where(primary, "primary", "secondary")
    out["p (Holm)"] = np.nan
    out.loc[primary, "p (Holm)"] = holm(out.loc[primary, "p"].to_numpy())
    return out


@dataclass
class UnleashStudy:
    """:func:`run_unleash` over backbones, label-noise conditions and seeds, with the tables derived from it.

    Attributes:
        curve: per (condition, model, seed, epoch) rows of :func:`stage_curve`.
        runs: per (condition, model, seed, method, score) rows of :class:`UnleashRun` tables.
        floors: per (condition, model, seed): the floor ``b``, the last epoch's training CE and
            training accuracy, the epochs picked, and what the per-image losses show.
        timings: per (condition, model, seed): wall time of each step (s).
        curve_scores: the scores of the per-epoch curve.
        climb: per (condition, model, seed, epoch) of UM's tuning at the estimated ``b``: training CE and ``ce / b``.
        losses: per-image training losses of the final models (columns ``condition``, ``model``,
            ``seed``, ``id``, ``loss``, ``masked loss``, ``mislabelled``); not saved (large), summarised in ``floors``.
    """

    curve: pd.DataFrame
    runs: pd.DataFrame
    floors: pd.DataFrame
    timings: pd.DataFrame
    curve_scores: tuple[str, ...]
    climb: pd.DataFrame
    losses: pd.DataFrame | None = None

    @cached_property
    def stages(self) -> pd.DataFrame:
        """:func:`stage_table` of the curve."""
        return stage_table(self.curve, self.curve_scores)

    @cached_property
    def effects(self) -> pd.DataFrame:
        """:func:`study_effects` of the runs."""
        return study_effects(self.runs)

    @property
    def groups(self) -> list[tuple[str, str]]:
        """The (condition, model) pairs, in run order."""
        return list(dict.fromkeys(zip(self.floors["condition"], self.floors["model"])))

    def stage_gap(self) -> pd.DataFrame:
        """Epochs and gaps (oracle best - last, validation-picked - last) per condition, model and
        score: mean and std over seeds."""
        cols = [c for c in ("best epoch", "gap", "val epoch", "val gap") if c in self.stages]
        return self.stages.groupby([*KEYS, "score"], sort=False)[cols].agg(["mean", "std"])

    def save(self, results_dir: str | Path, stem: str = "16_unleash") -> None:
        """Writes every table (CSV and JSON) under ``results_dir`` as ``<stem>_<table>``, and the
        summary (:func:`summarize`) as ``<stem>``: chapter 16's result tables (``16_unleash*``,
        :mod:`mood.experiments.tables`), under the file stem ``stem``."""
        for part, df in (("_curve", self.curve.set_index("condition")), ("_runs", self.runs.set_index("condition")),
                         ("_floors", self.floors.set_index("condition")),
                         ("_stages", self.stages.set_index("condition")), ("_climb", self.climb.set_index("condition")),
                         ("", summarize(self.runs)),
                         ("_effect", self.effects.round(4))):
            tables.save(f"16_unleash{part}", df, results_dir, stem=f"{stem}{part}")

    def verdict(self) -> str:
        """Per condition and backbone, in prose: where training got (train accuracy), the epoch picked
        on validation data and the oracle against the last, early stopping, UM's and UMAP's paired
        change in Energy AUROC, the control, and where the floor ``b`` lies against the final loss."""
        lines = []
        eff = self.effects
        for cond, model in self.groups:
            f = self.floors[(self.floors["condition"] == cond) & (self.floors["model"] == model)].mean(numeric_only=True)
            g = self.stages[(self.stages["condition"] == cond) & (self.stages["model"] == model)
                            & (self.stages["score"] == "energy")]
            head = f"{model}, {cond}: final train accuracy {f['last-epoch train acc']:.1f}%"
            if len(g):
                head += (f"; oracle best Energy epoch {g['best epoch'].mean():.1f} of {int(g['last epoch'].iloc[0])}, "
                         f"{g['gap'].mean():.2f} AUROC above the last")
            lines.append(head + ".")

            def said(name: str, what: str) -> None:
                key = (name, cond, model, "energy")
                if key in eff.index:
                    e = eff.loc[key]
                    if e["family"] == "primary":
                        words = paired(e["Δ"], e["ci_lo"], e["ci_hi"], e["p"], unit="Energy AUROC",
                                       p_holm=e["p (Holm)"], test="paired t-test")
                    else:
                        words = paired(e["Δ"], e["ci_lo"], e["ci_hi"], e["p"], unit="Energy AUROC",
                                       test="paired t-test", says=None) + " (secondary: described, not called)"
                    lines.append(f"  {what}: {words}.")

            said("val-OOD epoch vs last", "epoch picked on the validation OOD set minus the last epoch")
            said("early stopping vs last", "early stopping on ID validation loss minus the last epoch")
            said("UM vs last", "UM at the estimated b minus the last epoch")
            said("UM (b on val OOD) vs last", "UM with b picked on the validation OOD set minus the last epoch")
            said("UM vs CE control", "UM minus the plain-CE control")
            said("UMAP vs last", "UMAP minus the last epoch")
            side = ("above the final loss, so UM trains the loss back up to it"
                    if f["floor b"] > f["last-epoch train CE"] else "below the final loss, so UM goes on lowering it to b")
            lines.append(f"  UM floor b {f['floor b']:.3f} vs last-epoch train CE {f['last-epoch train CE']:.3f}: {side}.")
            if "UM loss / b" in f:
                held = self.floors.loc[(self.floors["condition"] == cond) & (self.floors["model"] == model),
                                       f"UM held b ±{HOLD_TOLERANCE:.0%}"]
                lines.append(f"  UM's final training CE {f['UM final train CE']:.3f} = {f['UM loss / b']:.2f} b; "
                             f"held within ±{HOLD_TOLERANCE:.0%} of b over its last {HOLD_EPOCHS} epochs in "
                             f"{int(held.sum())} of {len(held)} seeds.")
        lines.append(f"Paper: {papers.UM_ENERGY.words('Energy + UM')}.")
        return "\n".join(lines)


def run_study(profile: str | Profile | None = None, models: list[str] | None = None, seeds: list[int] | None = None,
              protocol: str = "multi-class", cache: Cache | None = None,
              noise: tuple[float, ...] | None = None) -> UnleashStudy:
    """:func:`run_unleash` for every backbone (default: the profile's), label-noise condition
    (default: the profile's) and seed (default: the profile's), collected into an :class:`UnleashStudy`."""
    prof = resolve(profile, protocol).profile
    cfg = prof.unleash
    models = list(models or cfg.models)
    seeds = list(cfg.seeds if seeds is None else seeds)
    conditions = tuple(cfg.noise if noise is None else noise)
    replace(cfg, noise=conditions)  # bad rates fail here, before any training
    for m in models:
        base_profile(profile, model={"name": m})  # a wrong name fails here, before any training
    curves, tables, floors, timings, losses, climbs = [], [], [], [], [], []
    for rate in conditions:
        for model in models:
            for seed in seeds:
                run = run_unleash(model, profile, seed=seed, protocol=protocol, cache=cache, noise=rate)
                keys = {"condition": condition_label(rate), "model": model, "seed": seed}
                curves.append(run.curve.assign(model=model, seed=seed))
                tables.append(run.table)
                wrong = run.losses["mislabelled"].to_numpy()
                loss, masked = run.losses["loss"].to_numpy(), run.losses["masked loss"].to_numpy()
                last = run.climb["ce / b"].to_numpy()[-HOLD_EPOCHS:]
                floors.append({**keys, "floor b": run.floor, "last-epoch train CE": run.final_loss,
                               "UM final train CE": float(run.climb["ce"].iloc[-1]),
                               "UM loss / b": float(run.climb["ce / b"].iloc[-1]),
                               f"UM held b ±{HOLD_TOLERANCE:.0%}": bool((abs(last - 1) <= HOLD_TOLERANCE).all()),
                               "b from mislabelled images": float(masked[wrong].sum() / masked.sum()) if wrong.any() else 0.0,
                               "last-epoch train acc": run.curve["train acc"].iloc[-1],
                               "early-stopping epoch": run.epochs["early stopping"],
                               "val-OOD epoch": run.epochs["val OOD"],
                               "share of images above b": float((loss > run.floor).mean()),
                               "mislabelled share": float(wrong.mean()),
                               "mean loss, mislabelled": float(loss[wrong].mean()) if wrong.any() else np.nan,
                               "mean loss, clean": float(loss[~wrong].mean()),
                               "masked loss, mislabelled": float(masked[wrong].mean()) if wrong.any() else np.nan,
                               "masked loss, clean": float(masked[~wrong].mean())})
                timings.append({**keys, **{k: round(v, 1) for k, v in run.timings.items()}})
                losses.append(run.losses.assign(**keys))
                climbs.append(run.climb.assign(model=model, seed=seed))
    curve, runs = pd.concat(curves, ignore_index=True), pd.concat(tables, ignore_index=True)
    return UnleashStudy(curve, runs, pd.DataFrame(floors), pd.DataFrame(timings), tuple(cfg.curve_scores),
                        pd.concat(climbs, ignore_index=True), pd.concat(losses, ignore_index=True))


__all__ = ["best_epoch", "summarize", "effect", "beside_mood", "stage_table", "COMPARISONS", "PRIMARY",
           "study_effects", "UnleashStudy", "run_study"]
