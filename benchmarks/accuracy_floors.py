"""The accuracy floors of the verdicts (``Profile.accuracy_floor``, ``Profile.floors``): a multinomial
logistic regression on the raw pixels (standardised) of the same training images a profile's models
train on, tested on the protocol's ID test set. A model below it has learned less about the ID classes
than a linear model on pixels, and its OOD numbers carry no verdict (:mod:`mood.experiments.verdicts`).

    python benchmarks/accuracy_floors.py --profile cpu
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from mood.core.images import ImageSet
from mood.experiments.pipeline import training_sample
from mood.experiments.resolve import resolve


def pixels(s: ImageSet) -> np.ndarray:
    """``float32 [N, H*W*C]`` in [0, 1]."""
    return s.images.reshape(len(s), -1).astype(np.float32) / 255.0


def floor(protocol: str, profile: str, scale: str) -> dict:
    run = resolve(profile, protocol, scale=scale)
    train = training_sample(run.protocol.train, run.profile.finetune)
    t0 = time.perf_counter()
    scaler = StandardScaler().fit(pixels(train))
    clf = LogisticRegression(max_iter=500).fit(scaler.transform(pixels(train)), train.labels)
    acc = 100.0 * float((clf.predict(scaler.transform(pixels(run.protocol.id_test))) == run.protocol.id_test.labels).mean())
    return {"protocol": protocol, "scale": scale, "training images": len(train), "floor (%)": round(acc, 2),
            "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--protocols", nargs="+", default=["multi-class", "near-split"])
    ap.add_argument("--scales", nargs="+", default=["main"])
    a = ap.parse_args()
    print(pd.DataFrame([floor(p, a.profile, s) for p in a.protocols for s in a.scales]).to_string(index=False))


if __name__ == "__main__":
    main()
