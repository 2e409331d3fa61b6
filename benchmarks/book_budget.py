"""The book's time budgets (issue 4 and 5), checked against the wall times of the last full run.

``python -m mood book run --profile P`` (or ``make book``) writes every chapter's wall time to
``results/P/_timings.csv``; this script reads it and prints each chapter, the main chapters' total
(01-09: the paper's sections), the whole book's total, and each budget with its verdict. A run that
loaded trained stages from the artifact cache (its provenance's ``run_training``) gets no verdict:
its time is not that of a cold run.

The budgets are the chapter registry's (:data:`mood.experiments.chapters.BUDGET_GROUPS`: per group
and profile; ``BOOK_MINUTES``: the whole book; ``CHAPTER_MINUTES``: any one chapter).

    python benchmarks/book_budget.py --profile cpu
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from mood.experiments import chapters


def budgets_s(profile: str) -> dict[str, float]:
    """The budgeted spans of ``profile`` in seconds, from the chapter registry
    (:data:`mood.experiments.chapters.BUDGET_GROUPS`, ``BOOK_MINUTES``, ``CHAPTER_MINUTES``)."""
    out = {g.name: 60 * g.minutes[profile] for g in chapters.BUDGET_GROUPS.values() if profile in g.minutes}
    if profile in chapters.BOOK_MINUTES:
        out["whole book"] = 60 * chapters.BOOK_MINUTES[profile]
    if profile in chapters.CHAPTER_MINUTES:
        out["any one chapter"] = 60 * chapters.CHAPTER_MINUTES[profile]
    return out


PROFILES_WITH_BUDGETS = sorted({p for g in chapters.BUDGET_GROUPS.values() for p in g.minutes}
                               | set(chapters.BOOK_MINUTES) | set(chapters.CHAPTER_MINUTES))


def totals(t: pd.DataFrame, n_chapters: int) -> dict[str, float | None]:
    """Seconds of the budgeted spans of a ``chapter, seconds`` table (None: the run did not cover
    the span, e.g. the whole book after ``--until 9``)."""
    by = t.set_index("chapter")["seconds"]
    out: dict[str, float | None] = {g.name: float(by[span].sum()) if set(span := chapters.in_group(g.name)) <= set(by.index)
                                    else None for g in chapters.BUDGET_GROUPS.values()}
    return out | {"whole book": float(by.sum()) if len(by) == n_chapters else None, "any one chapter": float(by.max())}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="cpu", choices=PROFILES_WITH_BUDGETS)
    p.add_argument("--results", default="results", help="the results folder of the run")
    a = p.parse_args()
    path = Path(a.results) / a.profile / "_timings.csv"
    if not path.exists():
        sys.exit(f"{path} not found: run the whole book first (python -m mood book run --profile {a.profile})")
    t = pd.read_csv(path)
    t["minutes"] = (t["seconds"] / 60).round(1)
    t["cumulative min"] = t["minutes"].cumsum().round(1)
    print(t.to_string(index=False))
    from mood.book.records import cached_training, training_speed
    from mood.book.runner import chapters

    speed = training_speed(path.parent)
    print(f"training throughput of this run: {speed:,.0f} img/s (compare machines by it)" if speed
          else "training throughput: not recorded by this run")
    spans = totals(t, len(chapters()))
    cached = cached_training(path.parent)
    for span, limit in budgets_s(a.profile).items():
        if spans[span] is None:
            print(f"{span}: not measured (the run covered chapters {', '.join(t['chapter'].str[:2])})")
            continue
        if cached:
            print(f"{span}: {spans[span] / 60:.1f} min, but not a cold run — it loaded {cached['cached runs']:.0f} trained "
                  f"stage(s) from the artifact cache ({cached['cached s'] / 60:.1f} min of training not in its time): "
                  f"no verdict against the {limit / 60:.0f}-minute budget")
            continue
        verdict = "within" if spans[span] <= limit else "OVER"
        print(f"{span}: {spans[span] / 60:.1f} min — {verdict} the {limit / 60:.0f}-minute budget")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
