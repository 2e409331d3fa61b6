"""A profile's multi-class pipeline over its fine-tuning seeds, outside the book: what a device call of
a few minutes can measure when a whole chapter does not fit (not a run of record).

One shared pretraining, one fine-tuning per seed (:func:`mood.experiments.pipeline.run_seeds`, side by side when
the profile has workers), each scored on the profile's feature; then the first seed's backbone scored
on several features side by side (:func:`mood.experiments.selection.feature_table`). Writes into ``--out``:
``<name>_seeds.csv`` (ID accuracy and AUROC per seed), ``<name>_summary.csv`` (mean, std, 95%
t-interval), ``<name>_features.csv`` and ``<name>_seeds.json`` (code, device, software, times).

    python benchmarks/seed_probe.py --profile gpu --out benchmarks/results --name gpu_multi_class
    python benchmarks/seed_probe.py --profile gpu --set pretrain.batch_size=2048 pretrain.compile=true \
        --out benchmarks/results --name gpu_b2048   # a candidate setting, against the profile's own
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import timm
import torch

from mood.book.records import code_commit, device_name
from mood.core.stats import seed_summary
from mood.experiments.config import StageOverrides
from mood.experiments.pipeline import run_seeds, seed_table, training_sample
from mood.experiments.resolve import base_profile
from mood.experiments.selection import feature_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="gpu")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="fine-tuning seeds (default: the profile's)")
    ap.add_argument("--pools", nargs="+", default=["mood", "mean", "blocks"], help="features of the side-by-side table")
    ap.add_argument("--set", nargs="+", default=[], metavar="STAGE.FIELD=VALUE",
                    help="change the profile's stage settings, e.g. pretrain.batch_size=2048 finetune.compile=true")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--name", default="multi_class")
    args = ap.parse_args()
    t0 = time.time()
    changes = StageOverrides.parse(args.set)  # checked before any data is loaded
    prof = base_profile(args.profile, changes=changes)
    args.out.mkdir(parents=True, exist_ok=True)
    runs = run_seeds("multi-class", prof, tuple(args.seeds) if args.seeds else None)
    per_seed = seed_table(runs)
    per_seed.to_csv(args.out / f"{args.name}_seeds.csv")
    seed_summary(per_seed).to_csv(args.out / f"{args.name}_summary.csv")
    first = runs[min(runs)]
    feature_table(first.finetuned, first.protocol, first.profile, tuple(args.pools), ("mahalanobis", "knn"),
                  train=training_sample(first.protocol.train, first.profile.finetune)
                  ).to_csv(args.out / f"{args.name}_features.csv")
    info = {"profile": args.profile, "settings": args.set, "code": code_commit(Path(__file__).parents[1])[0],
            "date": time.strftime("%Y-%m-%d"), "device": device_name(),
            "software": f"torch {torch.__version__} timm {timm.__version__}",
            "timings_s": {s: {k: round(v, 1) for k, v in r.timings.items()} for s, r in runs.items()},
            "wall_s": round(time.time() - t0, 1)}
    (args.out / f"{args.name}_seeds.json").write_text(json.dumps(info, indent=1))
    print(per_seed.round(2).to_string())


if __name__ == "__main__":  # the side-by-side workers start by spawning: they must not rerun this
    main()
