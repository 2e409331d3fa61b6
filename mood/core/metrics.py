"""OOD metrics and result tables.

Sign convention, everywhere in ``mood``: a score is an **OOD score — higher means more likely
OOD** (a Mahalanobis distance, a negative max-softmax probability, ...).

FPR@95%TPR has two conventions in the literature:

- ``positive="id"`` (default; MOOD, ODIN, Energy, Unleashing Mask): pick the threshold that
  accepts 95% of ID test images as ID; report the fraction of OOD images also accepted.
- ``positive="ood"`` (OpenOOD v1.5, 2023): pick the threshold that flags 95% of OOD images;
  report the fraction of ID images also flagged.
"""

from __future__ import annotations

from typing import Literal, Mapping

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

Positive = Literal["id", "ood"]
METRIC_COLUMNS = ("AUROC", "AUPR-In", "AUPR-Out", "FPR95")


def _check(scores: np.ndarray, what: str) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"{what} scores must be one number per image, shape [N]; got shape {s.shape}. "
                         f"A detector returns [N]; pick a column or reduce a [N, K] array first")
    if s.size == 0:
        raise ValueError(f"{what} scores are empty")
    bad = ~np.isfinite(s)
    if bad.any():
        raise ValueError(f"{what} scores contain {int(bad.sum())} NaN/inf value(s) of {s.size}: "
                         f"the model or score diverged; no AUROC is computed from them")
    return s


def _labelled(id_scores: np.ndarray, ood_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s_id, s_ood = _check(id_scores, "ID"), _check(ood_scores, "OOD")
    y = np.concatenate([np.zeros(len(s_id)), np.ones(len(s_ood))])  # 1 = OOD
    return y, np.concatenate([s_id, s_ood])


def auroc(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """Probability that a random OOD image scores higher than a random ID image (ties count 1/2)."""
    y, s = _labelled(id_scores, ood_scores)
    return float(roc_auc_score(y, s))


def aupr_in(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """Average precision with ID as the positive class (ranked by negated OOD score)."""
    y, s = _labelled(id_scores, ood_scores)
    return float(average_precision_score(1 - y, -s))


def aupr_out(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """Average precision with OOD as the positive class."""
    y, s = _labelled(id_scores, ood_scores)
    return float(average_precision_score(y, s))


def fpr_at_tpr(id_scores: np.ndarray, ood_scores: np.ndarray, tpr: float = 0.95,
               positive: Positive = "id") -> float:
    """False-positive rate at the smallest threshold reaching true-positive rate ``tpr``.

    Args:
        id_scores: ``[N_id]`` OOD scores of ID images.
        ood_scores: ``[N_ood]`` OOD scores of OOD images.
        tpr: the true-positive rate to reach (0.95 for FPR95).
        positive: ``"id"`` — positives are ID images, accepted when score <= t;
            ``"ood"`` — positives are OOD images, flagged when score >= t.
    """
    if not 0.0 < tpr <= 1.0:
        raise ValueError(f"fpr_at_tpr: tpr is a rate in (0, 1], got {tpr} (FPR95 is tpr=0.95)")
    if positive not in ("id", "ood"):
        raise ValueError(f"positive must be 'id' or 'ood', got {positive!r}")
    s_id, s_ood = _check(id_scores, "ID"), _check(ood_scores, "OOD")
    if positive == "id":
        # Accepting x as ID when s(x) <= t; the smallest t with TPR >= tpr is an order statistic.
        t = np.sort(s_id)[int(np.ceil(tpr * len(s_id))) - 1]
        return float(np.mean(s_ood <= t))
    if positive == "ood":
        t = np.sort(s_ood)[::-1][int(np.ceil(tpr * len(s_ood))) - 1]
        return float(np.mean(s_id >= t))
    raise ValueError(f"positive must be 'id' or 'ood', got {positive!r}")


def evaluate(id_scores: np.ndarray, ood_scores: np.ndarray, positive: Positive = "id") -> dict[str, float]:
    """All four metrics, in percent: ``{"AUROC", "AUPR-In", "AUPR-Out", "FPR95"}``."""
    return {"AUROC": 100 * auroc(id_scores, ood_scores),
            "AUPR-In": 100 * aupr_in(id_scores, ood_scores),
            "AUPR-Out": 100 * aupr_out(id_scores, ood_scores),
            "FPR95": 100 * fpr_at_tpr(id_scores, ood_scores, 0.95, positive)}


def results_table(id_scores: np.ndarray, ood_scores: Mapping[str, np.ndarray],
                  positive: Positive = "id", groups: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per OOD set, then a ``mean (G)`` row per group ``G`` of ``groups`` (OOD set -> group,
    e.g. ``far`` / ``noise``; only when there are two groups or more) and a ``mean`` row over every
    set; columns ``METRIC_COLUMNS`` in percent."""
    if not ood_scores:
        raise ValueError("results_table needs at least one OOD set")
    rows = {name: evaluate(id_scores, s, positive) for name, s in ood_scores.items()}
    df = pd.DataFrame.from_dict(rows, orient="index")[list(METRIC_COLUMNS)]
    present = list(dict.fromkeys((groups or {}).get(name, "other") for name in rows)) if groups else []
    if len(present) > 1:
        sets = list(rows)
        for g in present:
            df.loc[f"mean ({g})"] = df.loc[[n for n in sets if groups.get(n, "other") == g]].mean(axis=0)
        df = df.loc[sets + [f"mean ({g})" for g in present]]
    df.loc["mean"] = df.loc[list(rows)].mean(axis=0)
    df.index.name = "ood"
    return df


def per_set(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of a :func:`results_table` that are OOD sets (without the ``mean`` rows)."""
    return table.loc[[i for i in table.index if not str(i).startswith("mean")]]
