"""Command line over the functions the notebooks call: ``python -m mood --help``.

Examples::

    python -m mood data                                  # what data is there, and where from
    python -m mood run --protocol multi-class            # pretrain -> fine-tune -> Mahalanobis
    python -m mood run --protocol one-class:all --profile smoke --out results/smoke/one_class.csv
    python -m mood pretrain --protocol multi-class --pretext mae --seed 1
    python -m mood unleash --model resnet10_narrow --seed 1   # Unleashing Mask: stages, UM, UMAP
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Sequence

import pandas as pd


def _cmd_data(args: argparse.Namespace) -> int:
    from mood.data import OFFLINE_OOD, ONLINE_OOD, DataNotFoundError, load_fashion_mnist, load_ood
    from mood.protocols import NEAR_PAIRS, make_protocol

    rows = []
    for split in ("train", "test"):
        try:
            rows.append(load_fashion_mnist(split, args.root).summary())
        except DataNotFoundError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    for name in OFFLINE_OOD + (ONLINE_OOD if args.online else ()):
        try:
            rows.append(load_ood(name).summary())
        except DataNotFoundError as err:
            rows.append({"name": name, "images": 0, "size": "-", "classes": 0, "source": f"missing: {err}"})
    with pd.option_context("display.max_colwidth", 70, "display.width", 160):
        print("Datasets\n" + pd.DataFrame(rows).to_string(index=False))
        names = ["one-class:0", "multi-class", "near-split", *(f"near-pair:{p}" for p in NEAR_PAIRS), "few-shot:5"]
        protos = [make_protocol(n, root=args.root).summary() for n in names]
        print("\nProtocols (one-class:K for K=0..9 alike; few-shot:K for any K)\n"
              + pd.DataFrame(protos).to_string(index=False))
    return 0


def _profile(args: argparse.Namespace):
    from mood.config import get_profile, override

    prof = get_profile(args.profile).with_seed(args.seed)
    if args.model:
        prof.model.name = args.model
    pre = {k: v for k, v in (("pretext", args.pretext), ("epochs", args.pretrain_epochs)) if v is not None}
    prof.pretrain = override(prof.pretrain, **pre)
    if args.finetune_epochs is not None:
        prof.finetune = override(prof.finetune, epochs=args.finetune_epochs)
    if args.device:
        prof.pretrain.device = prof.finetune.device = args.device
    return prof


def _cmd_stage(args: argparse.Namespace) -> int:
    """pretrain / finetune / evaluate / run: each runs the pipeline up to its stage."""
    from mood.metrics import save_table
    from mood.pipeline import Cache, finetune, pretrain, run_mood
    from mood.protocols import make_protocol

    prof = _profile(args)
    cache = Cache(args.artifacts)
    protocols = [f"one-class:{k}" for k in range(10)] if args.protocol == "one-class:all" else [args.protocol]
    tables = []
    for name in protocols:
        t0 = time.perf_counter()
        if args.command in ("pretrain", "finetune"):
            protocol = make_protocol(name)
            p = prof.for_protocol(name)
            p.model.num_classes = protocol.num_classes
            pre = pretrain(protocol.train, p.model, p.pretrain, p.format, cache)
            out = pre if args.command == "pretrain" else finetune(pre, protocol.train, p.finetune,
                                                                   protocol.num_classes, p.format, cache)
            last = out.history[-1] if out.history else {}
            print(json.dumps({"protocol": name, "run_dir": str(out.run_dir), "epochs": len(out.history),
                              "seconds": round(time.perf_counter() - t0, 1), **last}))
            continue
        run = run_mood(name, prof, cache, finetune_stage=args.command == "run", detector=args.detector)
        table = run.table.copy()
        table.insert(0, "protocol", name)
        tables.append(table)
        print(f"{name}: " + json.dumps({k: round(v, 1) for k, v in run.timings.items()}), file=sys.stderr)
    if tables:
        df = pd.concat(tables)
        with pd.option_context("display.width", 160):
            print(df.round(2).to_string())
        if args.out:
            print(f"saved {save_table(df, args.out)}", file=sys.stderr)
    return 0


def _cmd_unleash(args: argparse.Namespace) -> int:
    """Unleashing Mask for each backbone and seed: per-epoch curve and the method x score table."""
    from mood.config import get_profile
    from mood.metrics import save_table
    from mood.pipeline import Cache
    from mood.unleash import run_unleash, summarize

    prof = get_profile(args.profile)
    if args.floor is not None:
        prof.unleash.floor = args.floor
    cache = Cache(args.artifacts)
    models = args.model or list(prof.unleash.models)
    seeds = args.seed if args.seed is not None else list(prof.unleash.seeds)
    tables, curves = [], []
    for model in models:
        for seed in seeds:
            run = run_unleash(model, prof, seed=seed, protocol=args.protocol, cache=cache)
            print(f"{model} seed {seed}: floor b {run.floor:.4f} (last-epoch train CE {run.final_loss:.4f}); "
                  + json.dumps({k: round(v, 1) for k, v in run.timings.items()}), file=sys.stderr)
            tables.append(run.table)
            curves.append(run.curve.assign(model=model, seed=seed))
    runs = pd.concat(tables, ignore_index=True)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(summarize(runs).to_string())
    if args.out:
        print(f"saved {save_table(runs.set_index('model'), args.out)}", file=sys.stderr)
        curve_path = save_table(pd.concat(curves).set_index("model"), args.out.rsplit(".", 1)[0] + "_curve.csv")
        print(f"saved {curve_path}", file=sys.stderr)
    return 0


def _cmd_book(args: argparse.Namespace) -> int:
    from mood import book

    try:
        if args.action == "run":
            print(book.run(args.profile, only=args.only, seed=args.seed).to_string(index=False))
        else:
            print(f"book built: {book.build(args.profile, seed=args.seed)}/index.html")
    except book.NotebookFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mood", description="Masked image modeling for OOD detection.",
                                epilog="Profiles: smoke (CI, seconds), cpu (default), gpu.")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("data", help="summarise every dataset and protocol and where it was loaded from")
    d.add_argument("--root", default=None, help="folder with the Fashion-MNIST idx files (else MOOD_FMNIST_DIR, Debian, download)")
    d.add_argument("--online", action="store_true", help="also load CIFAR-10/100 and SVHN through torchvision")
    d.set_defaults(func=_cmd_data)
    b = sub.add_parser("book", help="execute the notebooks with papermill (run) and build the HTML book (build)")
    b.add_argument("action", choices=("run", "build"), help="run: execute the chapters; build: run, then Jupyter Book")
    b.add_argument("--profile", default="cpu", help="smoke, cpu (default) or gpu")
    b.add_argument("--only", default=None, help="run: only the chapters whose file name contains this")
    b.add_argument("--seed", type=int, default=0, help="seed passed to every chapter")
    b.set_defaults(func=_cmd_book)
    helps = {"pretrain": "pretrain a backbone on the protocol's training images (cached)",
             "finetune": "pretrain (cached), then fine-tune on the ID labels",
             "evaluate": "pretrain (cached), then score the pretrained features directly",
             "run": "the full MOOD pipeline: pretrain -> fine-tune -> features -> score -> table"}
    for name, text in helps.items():
        s = sub.add_parser(name, help=text, description=text)
        s.add_argument("--protocol", default="multi-class",
                       help="multi-class, one-class:K, one-class:all, near-split, near-pair:NAME, few-shot:K")
        s.add_argument("--profile", default=None, help="smoke, cpu or gpu (default: MOOD_PROFILE or cpu)")
        s.add_argument("--pretext", default=None, help="beit, simmim, mae, classification, simclr, none")
        s.add_argument("--model", default=None, help="a preset (vit_tiny_p4, vit_small_p4, vit_s_p4, resnet18_small, resnet10_small, resnet10_narrow) or timm name")
        s.add_argument("--seed", type=int, default=0, help="seed of every stage")
        s.add_argument("--pretrain-epochs", type=int, default=None, help="override the profile's pretraining epochs")
        s.add_argument("--finetune-epochs", type=int, default=None, help="override the profile's fine-tuning epochs")
        s.add_argument("--detector", default=None, help="mahalanobis (default), mahalanobis_cc, knn, vim, msp, maxlogit, energy, entropy")
        s.add_argument("--device", default=None, help="auto (default), cpu or cuda")
        s.add_argument("--artifacts", default=None, help="cache folder (default: MOOD_ARTIFACTS or ./artifacts)")
        s.add_argument("--out", default=None, help="save the results table here (.csv or .json)")
        s.set_defaults(func=_cmd_stage)
    text = "Unleashing Mask: train from scratch keeping every epoch, estimate the loss floor, UM, UMAP, control"
    u = sub.add_parser("unleash", help=text, description=text)
    u.add_argument("--model", action="append", default=None,
                   help="backbone (repeatable; default: the profile's, a small ResNet and the ViT)")
    u.add_argument("--seed", type=int, action="append", default=None, help="seed (repeatable; default: the profile's)")
    u.add_argument("--profile", default=None, help="smoke, cpu or gpu (default: MOOD_PROFILE or cpu)")
    u.add_argument("--protocol", default="multi-class", help="the ID data and OOD sets (default multi-class)")
    u.add_argument("--floor", type=float, default=None, help="loss floor b (default: estimated with a 96.5%% weight mask)")
    u.add_argument("--artifacts", default=None, help="cache folder (default: MOOD_ARTIFACTS or ./artifacts)")
    u.add_argument("--out", default=None, help="save the per-run table here (.csv or .json), the curve beside it")
    u.set_defaults(func=_cmd_unleash)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
