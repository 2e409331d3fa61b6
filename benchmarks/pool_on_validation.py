"""Which feature should the detector score? Chosen without a test set: the Mahalanobis AUROC of each
pool of the profile's multi-class model (fine-tuned, seed 0) on a validation protocol made of ID
training images the detector was not fitted on against the same images with their 4-px tiles
shuffled (:func:`mood.experiments.selection.validation_protocol`). The profile's ``eval.pool`` should be
the pool this picks; the table says whether it is.

    MOOD_ARTIFACTS=... python benchmarks/pool_on_validation.py --profile cpu   # reads the run's cached models

It trains the model when the artifact cache does not hold it (the cpu one: ~10 min on 2 cores).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mood.experiments.pipeline import run_mood
from mood.experiments.profiles import get_profile
from mood.experiments.selection import pool_on_validation, validation_protocol


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--protocol", default="multi-class")
    ap.add_argument("--out", default=None, help="write the table here (csv)")
    a = ap.parse_args()
    prof = get_profile(a.profile)
    run = run_mood(a.protocol, prof)
    out = pool_on_validation(run)
    n = len(validation_protocol(run.protocol, run.profile).id_test)
    print(f"{a.protocol} at {prof.name}: {n:,} held-out training images vs their tile-shuffled copies")
    print(out.round(2).to_string())
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        out.to_csv(a.out)


if __name__ == "__main__":
    main()
