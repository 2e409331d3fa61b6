"""The book's time budgets (issue 4 and 5), checked against the wall times of the last full run.

``python -m mood book run --profile P`` (or ``make book``) writes every chapter's wall time to
``results/P/_timings.csv``; this script reads it and prints each chapter, the main chapters' total
(01-09: the paper's sections), the whole book's total, and each budget with its verdict. A run that
loaded trained stages from the artifact cache (its provenance's ``run_training``) gets no verdict:
its time is not that of a cold run.

=========  ============================================================================
``smoke``  the whole book in a few minutes (10) on the 2-core CPU: CI runs it
``cpu``    the whole book within 150 minutes cold: chapters 01-09 within 60, 10-15 within 70, 16 within 20
``gpu``    every chapter within one 10-minute run on one H100
=========  ============================================================================

    python benchmarks/book_budget.py --profile cpu
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

BUDGETS_S = {"smoke": {"whole book": 600},
             "cpu": {"chapters 01-09": 60 * 60, "chapters 10-15": 70 * 60, "chapter 16": 20 * 60, "whole book": 150 * 60},
             "gpu": {"any one chapter": 600}}


def totals(t: pd.DataFrame, n_chapters: int) -> dict[str, float | None]:
    """Seconds of the budgeted spans of a ``chapter, seconds`` table (None: the run did not cover
    the span, e.g. the whole book after ``--until 9``)."""
    number = t["chapter"].str[:2].astype(int)
    main, studies, last = number <= 9, number.between(10, 15), number == 16
    return {"chapters 01-09": t.loc[main, "seconds"].sum() if main.sum() == 9 else None,
            "chapters 10-15": t.loc[studies, "seconds"].sum() if studies.sum() == 6 else None,
            "chapter 16": t.loc[last, "seconds"].sum() if last.sum() == 1 else None,
            "whole book": t["seconds"].sum() if len(t) == n_chapters else None,
            "any one chapter": t["seconds"].max()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="cpu", choices=sorted(BUDGETS_S))
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
    for span, limit in BUDGETS_S[a.profile].items():
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
