""""What we found": each chapter's findings in words computed from that chapter's own result tables,
so the prose follows the numbers of the run that built the page, welcome or not.

:data:`FINDINGS` maps a chapter (its notebook's stem) to a function of the results folder that
returns the findings as Markdown bullets; :func:`say` renders them, and says which table is missing
when a chapter's tables are not there. The calls on the papers' claims come from
:mod:`mood.book.claims` and the studies' declared contrasts; nothing here decides a verdict.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from mood.core.data import FMNIST_CLASSES
from mood.core.protocols import NEAR_KNOWN
from mood.core.stats import paired_test
from mood.experiments import tables
from mood.experiments.unleash import SELECT_SCORE
from mood.experiments.unleash_study import COMPARISONS, PRIMARY
from mood.experiments.verdicts import paired

NO_TWIN = "Sandal"  # the one held-out class of the near split without a look-alike among the known classes


class Missing(Exception):
    """A table the findings need is not in the results folder."""


def _t(res: Path, name: str) -> pd.DataFrame:
    if not tables.exists(name, res):
        raise Missing(name)
    return tables.load(name, res)


def _sets(t: pd.DataFrame) -> pd.DataFrame:
    """The per-OOD-set rows of a results table (its group means dropped)."""
    return t.loc[[i for i in t.index if not str(i).startswith("mean")]]


def _mde(value: float) -> str:
    return "—" if not np.isfinite(value) else f"{value:.2f}"


def _ch01(res: Path) -> list[str]:
    p = _t(res, "01_protocols")
    return [f"`{name}`: {int(r['train']):,} training images, {int(r['id_test']):,} ID test images; OOD test sets "
            f"{r['ood_test']}." for name, r in p.iterrows()]


def _ch02(res: Path) -> list[str]:
    h = _t(res, "02_pretrain_history")
    acc = [c for c in h.columns if "acc" in c][0]
    return [f"Over {len(h)} epochs the masked-token loss fell from {h['loss'].iloc[0]:.2f} to {h['loss'].iloc[-1]:.2f} "
            f"and the exact-token accuracy at hidden patches went from {100 * h[acc].iloc[0]:.1f}% to "
            f"{100 * h[acc].iloc[-1]:.1f}%."]


def _ch03(res: Path) -> list[str]:
    h, ls = _t(res, "03_finetune_history"), _t(res, "03_label_smoothing")
    order = ls["AUROC"].sort_values(ascending=False)
    out = [f"Multi-class fine-tuning ended at {100 * h['acc'].iloc[-1]:.1f}% training accuracy after {len(h)} epochs."]
    out.append("One class (" + ", ".join(f"{k} {v:.2f}" for k, v in order.items()) + f" AUROC): {order.index[0]} is the best "
               "of the three" + (", so on this class fine-tuning did not improve on the pretrained features"
                                 if order.index[0] == "pretrained only" else "") + ".")
    smooth = [i for i in ls.index if "smoothing 0.1" in i]
    plain = [i for i in ls.index if "no label smoothing" in i]
    if smooth and plain:
        s, p = ls.loc[smooth[0]], ls.loc[plain[0]]
        d = s["AUROC"] - p["AUROC"]
        out.append(f"Smoothing kept the top-logit gap at {s['mean top-logit gap']:.1f} against {p['mean top-logit gap']:.1f} "
                   f"without it; its AUROC differs from no smoothing's by {d:+.2f} (one class, one seed: a description, "
                   "not a test).")
    return out


def _ch04(res: Path) -> list[str]:
    v = _t(res, "04_mahalanobis_variants")
    mean = v.loc["mean"]
    best = mean.idxmax()
    return ["Mean AUROC: " + ", ".join(f"`{k}` {x:.2f}" for k, x in mean.items()) + f"; `{best}` leads by "
            f"{mean.max() - mean.drop(best).max():.2f} on these test sets (one model, no test: read it as a description)."]


def _ch05(res: Path) -> list[str]:
    t = _t(res, "05_one_class")
    per = _sets(t)
    margin = per["AUROC"] - per["pixel 1-NN AUROC"]
    top = margin.idxmax() if margin.mean() >= 0 else margin.idxmin()
    out = [f"MOOD beats raw-pixel 1-NN on {int((margin > 0).sum())} of {len(margin)} classes; the mean margin is "
           f"{margin.mean():+.2f} AUROC, and `{top}` alone moves it by {margin[top] / len(margin):+.2f} "
           f"(its own margin {margin[top]:+.2f}); the results page tests the margin over the classes."]
    if "untrained AUROC" in t:
        gain = t.loc["mean", "AUROC"] - t.loc["mean", "untrained AUROC"]
        out.append(f"The same network never trained scores {t.loc['mean', 'untrained AUROC']:.2f} mean AUROC; "
                   + (f"pretraining adds {gain:.2f}." if gain >= 0 else f"the pretrained one is {-gain:.2f} lower."))
    worst = per["AUROC"].idxmin()
    out.append(f"Hardest class: `{worst}` ({per.loc[worst, 'AUROC']:.2f}); easiest: `{per['AUROC'].idxmax()}` "
               f"({per['AUROC'].max():.2f}).")
    return out


def _ch06(res: Path) -> list[str]:
    s, v = _t(res, "06_multi_class_summary"), _t(res, "06_multi_class_vs_pixels")
    out = [f"Over {int(s['seeds'].max())} fine-tuning seeds: ID accuracy {s.loc['ID acc', 'mean']:.2f}% "
           f"(std {s.loc['ID acc', 'std']:.2f} over seeds), far-OOD mean AUROC {s.loc['mean (far)', 'mean']:.2f} "
           f"(std {s.loc['mean (far)', 'std']:.2f}), MNIST {s.loc['mnist', 'mean']:.2f}."]
    sets = _sets(v)
    mood = sets.columns[0]
    for pixel in sets.columns[1:]:
        ahead = [f"{k} ({sets.loc[k, pixel]:.2f} vs {sets.loc[k, mood]:.2f})" for k in sets.index
                 if sets.loc[k, pixel] > sets.loc[k, mood] and k not in ("gaussian", "uniform")]
        out.append(f"`{pixel}`, which learned nothing, is ahead of MOOD's first seed on " + ", ".join(ahead)
                   + " (one seed, no test)." if ahead else f"`{pixel}` trails MOOD's first seed on every far-OOD set.")
    if tables.exists("06_versus_baselines", res):
        d = _t(res, "06_versus_baselines")
        behind = d[d["mean"] < 0]
        out.append("At equal compute, " + ("baselines ahead of MOOD in the mean: " + ", ".join(
            f"{b} + {r['score']} ({r['mean']:+.2f})" for b, r in behind.iterrows()) if len(behind)
            else "every baseline trails MOOD in the mean") + " (the results page gives the test).")
    return out


def _ch07(res: Path) -> list[str]:
    t = _t(res, "07_near_distribution_seeds")
    held = [c for c in t.columns if c in FMNIST_CLASSES]
    means = t[held].mean().sort_values()
    out = [f"Over {len(t)} seeds (ID accuracy {t['ID acc'].mean():.2f}% on the {len(NEAR_KNOWN)} known classes), the "
           "held-out classes rank " + " < ".join(f"{k} {v:.1f}" for k, v in means.items()) + f" (mean {t['mean'].mean():.2f})."]
    if NO_TWIN in means and len(held) > 1:
        parts, side = [], {"harder": [], "easier": [], "not told apart": []}
        for k in [c for c in means.index if c != NO_TWIN]:
            test = paired_test((t[k] - t[NO_TWIN]).to_numpy())
            parts.append(f"{k} {paired(test['mean'], test['ci_lo'], test['ci_hi'], says=None)}")
            # an undefined interval (one seed) tells nothing apart
            side["harder" if test["ci_hi"] < 0 else "easier" if test["ci_lo"] > 0 else "not told apart"].append(k)
        verdict = (f"it holds for {' and '.join(side['harder'])}" if side["harder"] else "it holds for none of them") + (
            f"; {' and '.join(side['easier'])} scored above {NO_TWIN}, against it" if side["easier"] else "") + (
            f"; {' and '.join(side['not told apart'])} cannot be told apart from {NO_TWIN}" if side["not told apart"] else "")
        out.append(f"The look-alike hypothesis says a held-out class with a twin among the known classes is harder "
                   f"than {NO_TWIN}, which has none. Each class minus {NO_TWIN}, paired by seed: " + "; ".join(parts)
                   + f". By these intervals {verdict} (descriptive: not a declared contrast).")
    return out


def _ch08(res: Path) -> list[str]:
    f = _t(res, "08_few_shot")
    oe = [c for c in f.columns if c.startswith("OE") and "outlier prob" in c]
    if not oe:
        return ["No outlier-exposure variant ran."]
    shots = max(oe, key=lambda c: int(c.split()[1].split("-")[0]))
    mood = "MOOD (no OOD data)"
    sets = _sets(f.drop(index=[i for i in f.index if i == "ID acc"]))
    far = [k for k in sets.index if k not in ("gaussian", "uniform")]
    oe_wins = [k for k in far if sets.loc[k, shots] > sets.loc[k, mood]]
    out = [f"`{shots}` is ahead of MOOD in the mean over seeds on " + (", ".join(
        f"{k} ({sets.loc[k, shots]:.2f} vs {sets.loc[k, mood]:.2f})" for k in oe_wins) or "no far-OOD set") + "."]
    if "digits" in sets.index:
        d_oe, d_mood = sets.loc["digits", shots], sets.loc["digits", mood]
        out.append(f"On `digits`, the source it was never shown, it scores {d_oe:.2f} against MOOD's {d_mood:.2f}"
                   + (": exposure did not carry over to an unseen source" if d_oe < d_mood else "")
                   + (", and MOOD's lead in the mean over all sets comes from there." if d_oe < d_mood and oe_wins
                      and "mean" in f.index and f.loc["mean", mood] > f.loc["mean", shots] else "."))
    return out


def _study(stem: str) -> Callable[[Path], list[str]]:
    def read(res: Path) -> list[str]:
        g = _t(res, f"{stem}_gaps")
        out = []
        for (comparison, proto), r in g.iterrows():
            acc = (f"ID accuracy {r['ID acc a']:.1f}% vs {r['ID acc b']:.1f}%" if np.isfinite(r["ID acc b"])
                   else f"ID accuracy {r['ID acc a']:.1f}% (the other has no classifier)")
            out.append(f"`{comparison}` on {proto}: {paired(r['gap'], r['ci_lo'], r['ci_hi'], says=None)}, "
                       f"MDE {_mde(r['MDE'])}; {acc} — **{r['call']}**.")
        return out
    return read


def _ch13(res: Path) -> list[str]:
    out = _study("13_ood_metric")(res)
    runs = _t(res, "13_ood_metric_runs").reset_index()
    means = runs.groupby("variant")["AUROC"].mean().sort_values()
    out.append("Mean AUROC per score: " + ", ".join(f"{k} {v:.1f}" for k, v in means.items()) + ".")
    if tables.exists("13_ood_metric_sets", res):
        out += _where_logits_lose(_t(res, "13_ood_metric_sets"))
    if tables.exists("13_score_spread", res):
        s = _t(res, "13_score_spread").iloc[0]
        out.append(f"MOODv2's claim: the spread across scores is {s['spread a']:.1f} AUROC for classification "
                   f"pretraining and {s['spread b']:.1f} for BEiT; classification minus BEiT "
                   f"{paired(s['gap'], s['ci_lo'], s['ci_hi'], says=None)} — **{s['call']}**.")
    return out


def _where_logits_lose(sets: pd.DataFrame) -> list[str]:
    """Per protocol: the best feature score minus the best logit score on each OOD set, and where the
    gap is largest and smallest."""
    out = []
    for proto, g in sets.groupby(level="protocol", sort=False):
        auroc = g.droplevel("protocol").drop(columns="reads").dropna(axis=1, how="all")
        kinds = g.droplevel("protocol")["reads"]
        if not {"features", "logits"} <= set(kinds):
            continue
        gap = (auroc[kinds == "features"].max() - auroc[kinds == "logits"].max()).sort_values()
        out.append(f"On {proto}, best feature score minus best logit score per OOD set: "
                   + ", ".join(f"{k} {v:+.1f}" for k, v in gap.items())
                   + f" AUROC points: the logit scores lose most on {gap.index[-1]} and "
                   + ("least" if gap.iloc[0] >= 0 else "win") + f" on {gap.index[0]}.")
    return out


def _ch15(res: Path) -> list[str]:
    calls = pd.concat([_t(res, f"{stem}_gaps")["call"] for stem in
                       ("10_pretext", "11_architecture", "12_fine_tuning", "13_ood_metric", "14_masking")])
    kinds = calls.str.split(":").str[0].value_counts()
    return [f"{len(calls)} declared contrasts: " + ", ".join(f"{n} {k}" for k, n in kinds.items()) + "."]


def _ch16(res: Path) -> list[str]:
    f, e = _t(res, "16_unleash_floors"), _t(res, "16_unleash_effect").reset_index()
    out = []
    for cond in f.index.unique():
        g = f.loc[[cond]]
        line = (f"{cond}: b = {g['floor b'].mean():.3f} against a final training loss of "
                f"{g['last-epoch train CE'].mean():.4f}")
        if "UM loss / b" in g:
            held_cols = [c for c in g.columns if c.startswith("UM held b")]
            held = g[held_cols[0]] if held_cols else None
            line += (f"; UM ended at {g['UM loss / b'].mean():.2f} b" + (f" and held it (±10%) in {int(held.sum())} of "
                                                                       f"{len(held)} seeds" if held is not None else ""))
        if "b from mislabelled images" in g and g["b from mislabelled images"].mean() > 0:
            line += (f"; {100 * g['b from mislabelled images'].mean():.0f}% of b comes from the mislabelled "
                     f"{100 * g['mislabelled share'].mean():.0f}% of the images")
        chance = np.log(len(FMNIST_CLASSES))
        if (g["floor b"] > chance).any():
            line += (f"; in {int((g['floor b'] > chance).sum())} of {len(g)} seeds b is above ln {len(FMNIST_CLASSES)} = "
                     f"{chance:.2f}, the loss of a uniform guess: that floor asks the model to fit its training "
                     "labels worse than chance, and UM un-trains it")
        out.append(line + ".")
    runs = _t(res, "16_unleash_runs").reset_index()
    acc = runs[runs["score"] == "energy"].groupby(["condition", "method"])["ID acc"].agg(["mean", "std"])
    for comparison in PRIMARY:
        method, against, _ = COMPARISONS[comparison]
        for _, r in e[(e["comparison"] == comparison) & (e["score"] == SELECT_SCORE)].iterrows():
            holm_p = r.get("p (Holm)", np.nan)
            a, b = acc.loc[(r["condition"], method)], acc.loc[(r["condition"], against)]
            out.append(f"{comparison}, {r['condition']} ({int(r['seeds'])} seeds): "
                       f"{paired(r['Δ'], r['ci_lo'], r['ci_hi'], unit='Energy AUROC', says=None)}"
                       + (f", Holm p = {holm_p:.3f}" if np.isfinite(holm_p) else "")
                       + f"; ID accuracy {a['mean']:.1f}% ± {a['std']:.1f} against {b['mean']:.1f}% ± {b['std']:.1f}.")
    return out


FINDINGS: dict[str, Callable[[Path], list[str]]] = {
    "01_ood_problem": _ch01, "02_masked_image_modeling": _ch02, "03_fine_tuning": _ch03, "04_mahalanobis": _ch04,
    "05_one_class": _ch05, "06_multi_class": _ch06, "07_near_distribution": _ch07,
    "08_few_shot_outlier_exposure": _ch08, "10_ablation_pretext": _study("10_pretext"),
    "11_ablation_architecture": _study("11_architecture"), "12_ablation_fine_tuning": _study("12_fine_tuning"),
    "13_ablation_ood_metric": _ch13, "14_ablation_masking": _study("14_masking"), "15_ablation_results": _ch15,
    "16_unleashing_mask": _ch16,
}


def say(chapter: str, results_dir: str | os.PathLike) -> str:
    """The findings of ``chapter`` (its notebook's stem) from ``results_dir``, as Markdown bullets."""
    if chapter not in FINDINGS:
        raise ValueError(f"no findings for chapter {chapter!r}; chapters with findings: {', '.join(FINDINGS)}")
    try:
        lines = FINDINGS[chapter](Path(results_dir))
    except Missing as table:
        return f"*No findings: `{table}` is missing from `{results_dir}` (run the chapter first).*"
    except KeyError as column:  # tables written before these findings were read this way (an older run)
        return f"*No findings: the tables in `{results_dir}` lack {column} (written by an older run).*"
    return "\n".join(f"- {line}" for line in lines)
