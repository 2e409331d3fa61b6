"""The summary chapter's table: each of MOOD's claims, what the paper reports, what this book
measured, and a verdict, read from the result files the earlier chapters wrote.

A verdict is given only where the setting could have replicated the claim: the model that made the
numbers passes its profile's accuracy floor (:mod:`mood.validity`), and the detector beats the
trivial raw-pixel baseline where one was run. Otherwise the cell says why there is none.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from mood.artifacts import load_table
from mood.metrics import per_set

SOHN_2021 = 94.6  # best published no-external-data one-class Fashion-MNIST mean AUROC (Sohn et al. 2021)
CHAPTER_FILES = ("05_one_class", "06_multi_class", "06_validity", "07_near_distribution", "07_validity", "08_few_shot")


def _gated(result: object, validity: pd.Series) -> object:
    if bool(validity["ok"]):
        return result
    if pd.isna(validity["floor"]):
        return f"no verdict (profile {validity.name} exercises the code only)"
    return f"no verdict (ID accuracy {validity['id_accuracy']:.1f}% < floor {validity['floor']:.1f}%)"


def claims_table(results_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per claim of Li et al. (2023): ``paper``, ``measured here``, ``replicated``.

    Raises:
        FileNotFoundError: naming the chapters whose tables are missing from ``results_dir``.
    """
    res = Path(results_dir)
    missing = [n for n in CHAPTER_FILES if not (res / f"{n}.csv").exists()]
    if missing:
        raise FileNotFoundError(f"{res} lacks {', '.join(missing)}: run chapters 5-8 first (`make book` runs them in order)")
    one, multi, near, few = (load_table(res / f"{n}.csv") for n in ("05_one_class", "06_multi_class",
                                                                       "07_near_distribution", "08_few_shot"))
    v6, v7 = load_table(res / "06_validity.csv").iloc[0], load_table(res / "07_validity.csv").iloc[0]
    ours, pixel = one.loc["mean", "AUROC"], one.loc["mean", "pixel 1-NN AUROC"]
    sets = per_set(multi)["AUROC"]
    mood_few, oe = few.loc["mean", "MOOD (no OOD data)"], few.loc["mean"].drop("MOOD (no OOD data)")
    rows = [
        {"claim (Li et al. 2023)": "one-class: MIM + Mahalanobis beats the previous state of the art",
         "paper": "+5.7% AUROC (CIFAR-10/100, ImageNet-30, ImageNet-21k pretraining)",
         "measured here": f"mean AUROC {ours:.1f} vs best anchor {SOHN_2021} and raw-pixel 1-NN {pixel:.1f} "
                          f"(Fashion-MNIST, no external data)",
         "replicated": bool(ours > SOHN_2021) if ours > pixel
         else f"no verdict (below the raw-pixel 1-NN baseline, {pixel:.1f})"},
        {"claim (Li et al. 2023)": "multi-class: MIM + Mahalanobis beats the previous state of the art",
         "paper": "+3.0% AUROC over the previous state of the art",
         "measured here": f"mean AUROC {multi.loc['mean', 'AUROC']:.1f}, worst {sets.min():.1f} ({sets.idxmin()}); "
                          f"ID accuracy {v6['id_accuracy']:.1f}%",
         "replicated": _gated("not tested (needs an equal-compute baseline)", v6)},
        {"claim (Li et al. 2023)": "near-distribution: unseen classes of the same domain are detected",
         "paper": "+2.1% AUROC over the previous state of the art",
         "measured here": f"mean AUROC {near.loc['mean', 'AUROC']:.1f} over the held-out classes; "
                          f"known-class accuracy {v7['id_accuracy']:.1f}%",
         "replicated": _gated("not tested (needs an equal-compute baseline)", v7)},
        {"claim (Li et al. 2023)": "MOOD without OOD data beats 10-shot outlier exposure",
         "paper": "beats Fort et al. (2021) 10-shot OE",
         "measured here": f"MOOD {mood_few:.1f} vs best OE {oe.max():.1f} ({oe.idxmax()})",
         "replicated": _gated(bool(mood_few >= oe.max()), v6)},
    ]
    return pd.DataFrame(rows).set_index("claim (Li et al. 2023)")
