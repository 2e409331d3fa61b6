"""Statistics for the book's verdicts: intervals, paired tests, and their false-positive rates.

- :func:`auroc_ci`: a 95% bootstrap interval of one AUROC (ID and OOD scores resampled apart).
- :func:`paired_test`: is a same-seed difference (variant A minus B, one number per seed) nonzero?
  A two-sided paired t-test at ``alpha`` with its t-interval. When the per-seed differences are
  independent and normal with mean 0, it rejects with probability ``alpha`` (5%): that is its
  false-positive rate, whatever the number of seeds (>= 2); tests/test_stats.py checks it by
  simulation, beside the former "|mean| > 2·std over 2 seeds" rule's 21.6%.
- :func:`paired_bootstrap`: is the AUROC of two fixed models on the same test images different?
  Images resampled jointly; covers the test-set sample, not training seeds.
- :func:`mde`: the smallest true difference :func:`paired_test` detects at a given power, over
  ``S`` seeds of a given spread, as one of ``K`` Holm-adjusted contrasts.
- :func:`bounded_interval`: a t-interval over seeds of a figure bounded to ``[lo, hi]`` (a percentage),
  clipped to them.
- :func:`seed_summary`: mean ± std and t-interval over seeds of each headline figure (bounded on request).
- :func:`seed_gaps`: :func:`paired_test` per group of a long table of per-seed differences.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import optimize
from scipy import stats as sps

ALPHA = 0.05


def _auroc_ranks(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """AUROC from the Mann-Whitney U statistic (ties count 1/2): ``[0, 1]``."""
    ranks = sps.rankdata(np.concatenate([id_scores, ood_scores]))
    n_id, n_ood = len(id_scores), len(ood_scores)
    return float((ranks[n_id:].sum() - n_ood * (n_ood + 1) / 2) / (n_id * n_ood))


class _ResampledAUROC:
    """The AUROC of fixed ID scores ``[N]`` vs OOD scores ``[M]`` under bootstrap weights (how many
    times each score was drawn), equal to :func:`_auroc_ranks` of the resampled arrays: the scores
    are sorted once, so each resample costs a weighted cumulative count instead of a sort."""

    def __init__(self, s_id: np.ndarray, s_ood: np.ndarray) -> None:
        self.order = np.argsort(s_id, kind="stable")
        ranked = s_id[self.order]
        self.below = np.searchsorted(ranked, s_ood, "left")  # ID scores strictly below each OOD score
        self.below_eq = np.searchsorted(ranked, s_ood, "right")  # ... below or tied
        self.n_id, self.n_ood = len(s_id), len(s_ood)

    def __call__(self, id_idx: np.ndarray, ood_idx: np.ndarray) -> float:
        w_id = np.bincount(id_idx, minlength=self.n_id)[self.order]
        w_ood = np.bincount(ood_idx, minlength=self.n_ood)
        c = np.concatenate([[0], np.cumsum(w_id)])
        pairs = (c[self.below] + c[self.below_eq]) / 2  # ties count 1/2
        return float((pairs * w_ood).sum() / (len(id_idx) * len(ood_idx)))


def auroc_ci(id_scores: np.ndarray, ood_scores: np.ndarray, n_boot: int = 1000, level: float = 0.95,
             seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUROC (percent), resampling the ID ``[N]`` and the OOD
    ``[M]`` scores apart, with replacement, ``n_boot`` times. It covers test-set sampling only,
    not training seeds: seeds are compared with :func:`paired_test`."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if n_boot < 100:
        raise ValueError(f"n_boot={n_boot} is too few for a {level:.0%} interval; use >= 1000")
    s_id, s_ood = np.asarray(id_scores, np.float64).ravel(), np.asarray(ood_scores, np.float64).ravel()
    if len(s_id) == 0 or len(s_ood) == 0:
        raise ValueError("auroc_ci: ID and OOD scores must both be non-empty")
    rng = np.random.default_rng(seed)
    resampled = _ResampledAUROC(s_id, s_ood)
    boots = [resampled(rng.integers(0, len(s_id), len(s_id)), rng.integers(0, len(s_ood), len(s_ood)))
             for _ in range(n_boot)]
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return 100 * float(lo), 100 * float(hi)


def auroc_intervals(id_scores: np.ndarray, ood_scores: dict[str, np.ndarray], n_boot: int = 1000,
                    level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """:func:`auroc_ci` of each OOD set: one row per set, columns ``AUROC``, ``lo``, ``hi`` (percent)."""
    rows = {}
    for name, s in ood_scores.items():
        s_id, s_ood = np.asarray(id_scores, np.float64).ravel(), np.asarray(s, np.float64).ravel()
        lo, hi = auroc_ci(s_id, s_ood, n_boot, level, seed)
        rows[name] = {"AUROC": 100 * _auroc_ranks(s_id, s_ood), "lo": lo, "hi": hi}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "ood"
    return out


def paired_bootstrap(a: tuple[np.ndarray, dict[str, np.ndarray]], b: tuple[np.ndarray, dict[str, np.ndarray]],
                     n_boot: int = 1000, alpha: float = ALPHA, seed: int = 0) -> dict[str, float | bool | int]:
    """Paired bootstrap of the mean AUROC (percent, over the OOD sets given) of detector ``a`` minus
    detector ``b``, both scoring the *same* test images: ``(id_scores [N], {set: ood_scores [M_set]})``
    each. ID and every OOD set are resampled apart, the same indices for both detectors, so the
    images' shared difficulty cancels. It covers test-set sampling for two fixed trained models, not
    training seeds (:func:`paired_test` does): when the two models' population AUROCs are equal it
    declares a difference with probability about ``alpha``.

    Returns:
        ``mean`` (the observed difference), ``std`` (of the bootstrap), ``seeds`` (1), the percentile
        interval ``ci_lo`` / ``ci_hi``, ``p`` (two-sided bootstrap p-value) and ``significant``.
    """
    (ia, oa), (ib, ob) = a, b
    ia, ib = np.asarray(ia, np.float64).ravel(), np.asarray(ib, np.float64).ravel()
    if len(ia) != len(ib) or set(oa) != set(ob) or any(len(oa[k]) != len(ob[k]) for k in oa):
        raise ValueError("paired_bootstrap: both detectors must score the same images (same ID and OOD set sizes)")
    if not oa:
        raise ValueError("paired_bootstrap: no OOD sets")
    rng = np.random.default_rng(seed)

    ra = {k: _ResampledAUROC(ia, np.asarray(oa[k], np.float64).ravel()) for k in oa}
    rb = {k: _ResampledAUROC(ib, np.asarray(ob[k], np.float64).ravel()) for k in oa}

    def diff(i_idx: np.ndarray, o_idx: dict[str, np.ndarray]) -> float:
        return 100 * float(np.mean([ra[k](i_idx, o_idx[k]) - rb[k](i_idx, o_idx[k]) for k in oa]))

    observed = diff(np.arange(len(ia)), {k: np.arange(len(v)) for k, v in oa.items()})
    boots = np.array([diff(rng.integers(0, len(ia), len(ia)), {k: rng.integers(0, len(v), len(v)) for k, v in oa.items()})
                      for _ in range(n_boot)])
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    p = float(min(1.0, 2 * min(np.mean(boots <= 0), np.mean(boots >= 0))))
    return {"mean": observed, "std": float(boots.std(ddof=1)), "seeds": 1, "ci_lo": float(lo), "ci_hi": float(hi),
            "p": p, "significant": bool(lo > 0 or hi < 0)}


def comparison_table(rows: dict[tuple[str, str], dict]) -> pd.DataFrame:
    """Rows keyed ``(baseline, score)`` (a test's columns each) as the table :func:`beats_all` and
    the summary read: index levels ``baseline`` and ``score``."""
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index = pd.MultiIndex.from_tuples(out.index, names=["baseline", "score"])
    return out


def paired_test(diffs: np.ndarray, alpha: float = ALPHA) -> dict[str, float | bool | int]:
    """Two-sided paired t-test of per-seed differences ``[S]`` against 0.

    Returns:
        ``mean``, ``std`` (over seeds), ``seeds``, the ``(1 - alpha)`` t-interval ``ci_lo`` /
        ``ci_hi``, ``p`` and ``significant`` (p < alpha; never with fewer than 2 seeds).
    """
    d = np.asarray(diffs, np.float64).ravel()
    d = d[np.isfinite(d)]
    n = len(d)
    mean = float(d.mean()) if n else float("nan")
    if n < 2:
        return {"mean": mean, "std": float("nan"), "seeds": n, "ci_lo": float("nan"), "ci_hi": float("nan"),
                "p": float("nan"), "significant": False}
    std = float(d.std(ddof=1))
    half = float(sps.t.ppf(1 - alpha / 2, n - 1)) * std / np.sqrt(n)
    if std == 0:
        p = 0.0 if mean != 0 else 1.0
    else:
        p = float(2 * sps.t.sf(abs(mean) / (std / np.sqrt(n)), n - 1))
    return {"mean": mean, "std": std, "seeds": n, "ci_lo": mean - half, "ci_hi": mean + half, "p": p,
            "significant": bool(p < alpha)}


def holm(p: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values ``[K]`` of ``K`` tests ``p [K]``: rejecting wherever the
    adjusted value is below alpha keeps the chance of any false rejection among the ``K`` at most
    alpha (under any dependence). NaN p-values stay NaN and do not count as tests."""
    p = np.asarray(p, np.float64)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    k = len(order)
    out[order] = np.minimum(1.0, np.maximum.accumulate(p[order] * (k - np.arange(k))))
    return out


def mde(sd: float, seeds: int, tests: int = 1, alpha: float = ALPHA, power: float = 0.8) -> float:
    """Minimum detectable effect: the true mean of ``seeds`` per-seed differences (normal, standard
    deviation ``sd``) that the two-sided :func:`paired_test` detects with
    probability ``power``, when the test is one of ``tests`` contrasts adjusted with :func:`holm`.
    It holds the test to ``alpha / tests`` (Bonferroni, Holm's first and strictest step), so it is
    conservative for the contrasts Holm tests later at a looser level.

    Exact, not the normal approximation: at a true difference ``δ`` the power is ``P(|T| > t_crit)``
    with ``T`` noncentral t (``seeds - 1`` degrees of freedom, noncentrality ``δ·sqrt(seeds)/sd``),
    solved for ``δ``. At alpha 0.05 and power 0.8, in units of ``sd``, for 1 / 2 / 3 tests:
    3 seeds 3.26 / 4.62 / 5.67, 4 seeds 2.13 / 2.72 / 3.12, 5 seeds 1.68 / 2.05 / 2.29.

    Returns:
        The MDE in the units of ``sd`` (proportional to it); NaN with fewer than 2 seeds or a NaN
        ``sd``; 0.0 when ``sd`` is 0.
    """
    if not isinstance(seeds, (int, np.integer)) or isinstance(seeds, bool):
        raise ValueError(f"seeds must be an int (the number of per-seed differences), got {seeds!r}")
    if not isinstance(tests, (int, np.integer)) or isinstance(tests, bool) or tests < 1:
        raise ValueError(f"tests must be an int >= 1 (the number of Holm-adjusted contrasts), got {tests!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if not 0 < power < 1:
        raise ValueError(f"power must lie in (0, 1), got {power}")
    level = alpha / tests
    if power <= level:
        raise ValueError(f"power must exceed the test's level alpha / tests = {level:g} (its power at no effect), "
                         f"got {power}")
    if sd < 0:
        raise ValueError(f"sd must be >= 0, got {sd}")
    if seeds < 2 or np.isnan(sd):
        return float("nan")
    if sd == 0:
        return 0.0
    df = seeds - 1
    t_crit = float(sps.t.ppf(1 - level / 2, df))

    def shortfall(delta: float) -> float:  # power minus the target, at a true difference of delta sd
        nc = delta * np.sqrt(seeds)
        # the lower tail as the mirrored upper one: scipy's nct.cdf far below a large nc returns NaN
        return float(sps.nct.sf(t_crit, df, nc) + sps.nct.sf(t_crit, df, -nc)) - power

    upper = 1.0
    while shortfall(upper) < 0:
        upper *= 2
    return float(sd * optimize.brentq(shortfall, 0.0, upper, xtol=1e-12))


def beats_all(versus: pd.DataFrame) -> bool:
    """Whether the reference beats every baseline of a comparison table (columns ``mean``: the
    reference minus the baseline, ``significant``; :func:`mood.experiments.baselines.versus_baselines`): each
    difference positive and significant. An intersection-union test: when the reference is no
    better than at least one baseline, it concludes "beats all" with probability at most the
    tests' alpha."""
    return bool(((versus["mean"] > 0) & versus["significant"].astype(bool)).all())


def bounded_interval(values: np.ndarray, lo: float, hi: float, alpha: float = ALPHA) -> tuple[float, float]:
    """``(1 - alpha)`` t-interval over seeds of a figure bounded to ``[lo, hi]`` (an AUROC in percent:
    ``0, 100``), from its per-seed ``values [S]``, clipped to the bounds: a seed mean of 99.7 with a
    half-width of 1.1 reads ``[98.6, 100]``, not ``[98.6, 100.8]``. (A logit-scale interval would stay
    inside without clipping, but a seed at exactly 100 sends its logit to infinity, and any finite
    stand-in sets the width; the clipped t-interval keeps the t-test's coverage wherever the true
    value lies inside.) NaN values are dropped.

    Returns:
        ``(ci_lo, ci_hi)``; NaN, NaN with fewer than 2 values.
    """
    if not lo < hi:
        raise ValueError(f"bounds must satisfy lo < hi, got lo={lo}, hi={hi}")
    x = np.asarray(values, np.float64).ravel()
    x = x[np.isfinite(x)]
    if ((x < lo) | (x > hi)).any():
        raise ValueError(f"values must lie in the bounds [{lo}, {hi}], got {x[(x < lo) | (x > hi)].tolist()}")
    t = paired_test(x, alpha)
    if len(x) < 2:
        return float("nan"), float("nan")
    return float(max(lo, t["ci_lo"])), float(min(hi, t["ci_hi"]))


def seed_summary(per_seed: pd.DataFrame, alpha: float = ALPHA,
                 bounds: tuple[float, float] | None = None) -> pd.DataFrame:
    """Mean, std and ``(1 - alpha)`` t-interval over seeds of every column of ``per_seed`` (one row
    per seed): one row per column, columns ``mean``, ``std``, ``seeds``, ``ci_lo``, ``ci_hi``. The
    interval covers training-seed variation (with one seed: NaN).

    With ``bounds=(lo, hi)`` (``(0, 100)`` for percentages) every column's interval comes from
    :func:`bounded_interval`: the t-interval clipped to the bounds. ``mean`` and ``std`` stay the plain ones."""
    rows = {c: paired_test(per_seed[c].to_numpy(), alpha) for c in per_seed.columns}
    if bounds is not None:
        for c, row in rows.items():
            row["ci_lo"], row["ci_hi"] = bounded_interval(per_seed[c].to_numpy(), *bounds, alpha)
    out = pd.DataFrame.from_dict(rows, orient="index")[["mean", "std", "seeds", "ci_lo", "ci_hi"]]
    out.index.name = "figure"
    return out


def seed_gaps(diffs: pd.DataFrame, by: list[str], value: str, alpha: float = ALPHA) -> pd.DataFrame:
    """Paired (same-seed) differences ``diffs[value]``, one row per seed, tested per ``by`` group with
    :func:`paired_test`: columns ``mean``, ``std``, ``seeds``, ``ci_lo``, ``ci_hi``, ``p``, ``significant``."""
    rows = {key: paired_test(g[value].to_numpy(), alpha) for key, g in diffs.groupby(by, sort=False)}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index = pd.MultiIndex.from_tuples(out.index, names=by) if len(by) > 1 else pd.Index(
        [k[0] if isinstance(k, tuple) else k for k in out.index], name=by[0])
    return out


PAIR_SEP = " − "  # between the two variants of a paired comparison's label


def pair_label(a: str, b: str) -> str:
    """The label of ``a`` minus ``b`` in :func:`mood.experiments.ablations.pair_gaps`' ``comparison`` index: ``"a − b"``."""
    return f"{a}{PAIR_SEP}{b}"


def pair_names(label: str) -> tuple[str, str]:
    """The two variants ``(a, b)`` of a :func:`pair_label`."""
    a, sep, b = label.partition(PAIR_SEP)
    if not sep:
        raise ValueError(f"{label!r} is not a paired comparison; its label has the form 'a{PAIR_SEP}b'")
    return a, b
