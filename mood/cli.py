"""Command line over the functions the notebooks call: ``python -m mood --help``.

Examples::

    python -m mood data                                  # what data is there, and where from
    python -m mood run --protocol multi-class            # pretrain -> fine-tune -> Mahalanobis
    python -m mood run --protocol one-class:all --profile smoke --out results/smoke/one_class.csv
    python -m mood pretrain --protocol multi-class --pretext mae --seed 1
    python -m mood run --protocol one-class:0 --set pretrain.batch_size=512 --set finetune.lr=1e-3
    python -m mood unleash --model cnn_dense --seed 1 --noise 0.2   # Unleashing Mask: stages, UM, UMAP, verdict
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Sequence

import pandas as pd

COMPUTE_APPENDIX = "book/appendix_compute.md"  # the compute plan, with the cpu record's measured costs


def _cmd_data(args: argparse.Namespace) -> int:
    from mood.core.data import OFFLINE_OOD, ONLINE_OOD, DataNotFoundError, load_fashion_mnist, load_ood
    from mood.core.protocols import NEAR_PAIRS, make_protocol

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
    """The base profile of a command (:func:`mood.experiments.resolve.base_profile`) with the command
    line's changes, every one checked (names and values) before any data is loaded or any model
    trained. Stage settings (the epoch, pool, device flags and ``--set stage.field=value``) win over
    the profile's one-class overrides too: what a command asks for holds whatever the protocol."""
    from mood.experiments.config import StageOverrides
    from mood.experiments.resolve import base_profile

    model = {}
    if getattr(args, "model", None) or getattr(args, "pretrained", None):
        model = ({"name": args.model} if args.model else {}) | {"pretrained": args.pretrained}
    device = {"device": args.device} if args.device else {}
    flags = StageOverrides(
        pretrain={k: v for k, v in (("pretext", args.pretext), ("epochs", args.pretrain_epochs)) if v is not None} | device,
        finetune=({"epochs": args.finetune_epochs} if getattr(args, "finetune_epochs", None) is not None else {}) | device,
        eval={"pool": args.pool} if getattr(args, "pool", None) else {})
    settings = StageOverrides.parse(args.set or [])
    twice = sorted(flags.settings() & settings.settings())
    if twice:
        raise ValueError(f"{', '.join(twice)} set both by a flag and by --set: give each setting once")
    return base_profile(args.profile, changes=flags.then(settings), model=model,
                        img_size=getattr(args, "img_size", None), seed=args.seed)


def _cmd_stage(args: argparse.Namespace) -> int:
    """pretrain / finetune / evaluate / run: each runs the pipeline up to its stage; under ``torchrun``
    every rank trains its share (:mod:`mood.core.distributed`) and rank 0 reports."""
    from mood.core import distributed
    from mood.core.cache import Cache
    from mood.core.io import save_table
    from mood.core.protocols import expand

    protocols = expand(args.protocol)  # every name is checked before anything is trained
    prof = _profile(args)
    detector = getattr(args, "detector", None)  # run_mood checks it before any training
    cache = Cache(args.artifacts)
    main = distributed.init().is_main  # after every check: a bad argument fails before any process group
    try:
        tables = _run_stages(args, protocols, prof, detector, cache, main)
    finally:
        distributed.close()
    if tables and main:
        df = pd.concat(tables)
        with pd.option_context("display.width", 160):
            print(df.round(2).to_string())
        if args.out:
            print(f"saved {save_table(df, args.out)}", file=sys.stderr)
    return 0


def _run_stages(args: argparse.Namespace, protocols: list[str], prof, detector: str | None, cache, main: bool) -> list:
    from mood.experiments.pipeline import finetune, id_accuracy, pretrain, run_mood
    from mood.experiments.resolve import resolve

    tables = []
    for name in protocols:
        t0 = time.perf_counter()
        resolved = resolve(prof, name, detector=detector)
        if main:  # the configuration that trains and keys the cache, printed once
            print(resolved.describe(), file=sys.stderr)
        if args.command in ("pretrain", "finetune"):
            protocol, p = resolved.protocol, resolved.profile
            pre = pretrain(protocol.train, p.model, p.pretrain, p.format, cache)
            out = pre if args.command == "pretrain" else finetune(pre, protocol.train, p.finetune,
                                                                   protocol.num_classes, p.format, cache)
            if main:
                print(json.dumps({"protocol": name, "stage": args.command, "run_dir": str(out.run_dir),
                                  "epochs": len(out.history), "command_seconds": round(time.perf_counter() - t0, 1),
                                  "train_seconds": round(out.train_seconds, 1),
                                  "last_epoch": out.history[-1] if out.history else None}))
            continue
        run = run_mood(resolved, cache=cache, finetune_stage=args.command == "run")
        table = run.table.copy()
        table.insert(0, "protocol", name)
        table.insert(1, "ID acc", id_accuracy(run.features))  # every OOD figure beside its model's accuracy
        tables.append(table)
        if main:
            print(f"{name}: " + json.dumps({k: round(v, 1) for k, v in run.timings.items()}), file=sys.stderr)
    return tables


def _cmd_unleash(args: argparse.Namespace) -> int:
    """Unleashing Mask for each backbone and seed: per-epoch curve, the method x score table, the verdict."""
    from mood.core.cache import Cache
    from mood.core.protocols import parse_protocol
    from mood.experiments.config import StageOverrides
    from mood.experiments.resolve import base_profile
    from mood.experiments.unleash_study import run_study, summarize

    parse_protocol(args.protocol)
    # the floor is checked here: tune() would refuse it only after every stage had trained
    prof = base_profile(args.profile, changes=StageOverrides(unleash={"floor": args.floor} if args.floor is not None else {}))
    study = run_study(prof, args.model, args.seed, protocol=args.protocol, cache=Cache(args.artifacts),
                      noise=tuple(args.noise) if args.noise else None)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(study.timings.to_string(index=False), file=sys.stderr)
        print(summarize(study.runs).to_string())
    print(study.verdict())
    if args.out:
        study.save(args.out, stem="unleash")
        print(f"saved the study's tables under {args.out}/", file=sys.stderr)
    return 0


def _cmd_book(args: argparse.Namespace) -> int:
    from mood.book import runner as book
    from mood.book.summary import update_cost, update_readme

    def readme() -> None:
        changed = update_readme(book.REPO / "README.md", book.REPO / "results")
        print("README.md results block " + ("updated" if changed else "already up to date"))
        changed = update_cost(book.REPO / COMPUTE_APPENDIX, book.REPO / "results" / "cpu")
        print(f"{COMPUTE_APPENDIX} measured block " + ("updated" if changed else "already up to date"))

    if args.action == "readme":
        readme()
        return 0
    if args.action in ("publish", "render"):
        from mood.book import edition
        from mood.book.records import check_record
        from mood.experiments.profiles import get_profile

        name = get_profile(args.edition or args.profile).name
        if args.action == "publish":
            results = book.REPO / "results" / name
            record = check_record(results)
            stored = edition.store(results, book.REPO / book.CHAPTERS_DIR, list(record["chapter_seconds"]), whole_book=True)
            print(f"chapters stored: {stored}")
            readme()
        else:
            print(f"book rendered from the {name} edition: {edition.render(name)}/index.html")
        return 0
    try:
        if args.action == "run":
            print(book.run(args.profile, only=args.only, seed=args.seed, until=args.until,
                           resume=args.resume).to_string(index=False))
        else:
            print(f"book built: {book.build(args.profile, seed=args.seed, resume=args.resume)}/index.html")
    except book.NotebookFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def _cmd_zoo(args: argparse.Namespace) -> int:
    """The zoo of pretrained backbones: list, show one card, train the missing entries, verify."""
    from pathlib import Path

    from mood.core.cache import Cache
    from mood.core.zoo import size_bytes, zoo_root
    from mood.experiments import zoo

    root = Path(args.zoo) if args.zoo else None
    if args.action == "list":
        t = zoo.table(root)
        with pd.option_context("display.width", 220, "display.max_columns", 30, "display.max_colwidth", 40):
            print(t.to_string(index=False, float_format=lambda v: f"{v:,.2f}") if len(t) else "no entries shipped")
        waiting = [s.name for s in zoo.missing(root=root)]
        print(f"\n{len(t)} shipped in {zoo_root(root)} ({size_bytes(root) / 2**20:.1f} MiB); "
              f"{len(waiting)} registered, not trained yet{': ' + ', '.join(waiting) if waiting else ''}")
        return 0
    if args.action == "show":
        if len(args.names) != 1:
            raise ValueError("zoo show takes one entry name (python -m mood zoo list names them)")
        print(zoo.card_text(args.names[0], root))
        return 0
    if args.action == "train":
        paths = zoo.train(args.names or None, args.profile or "cpu", root, Cache(args.artifacts), args.commit, args.force)
        print(f"zoo: {len(paths)} entr{'y' if len(paths) == 1 else 'ies'} written" + "".join(f"\n  {p}" for p in paths))
        return 0
    if args.retrain:
        r = zoo.retrain(args.retrain, root)
        print(json.dumps(r, indent=1))
        return 0 if r["bit_for_bit"] else 1
    t = zoo.verify(root)
    print(t.to_string(index=False) if len(t) else "no entries shipped")
    bad = t[~t["ok"]] if len(t) else t
    print(f"{len(t) - len(bad)} of {len(t)} entries match their cards and the registry")
    return 1 if len(bad) else 0


def build_parser() -> argparse.ArgumentParser:
    from mood.core.models import MODEL_PRESETS, POOLS
    from mood.core.pretext import PRETEXTS
    from mood.core.protocols import PROTOCOL_NAMES
    from mood.core.scores import SCORES
    from mood.experiments.profiles import PROFILES

    profiles = ", ".join(PROFILES)
    p = argparse.ArgumentParser(prog="mood", description="Masked image modeling for OOD detection.",
                                epilog=f"Profiles: {profiles} (default: MOOD_PROFILE, else cpu).")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("data", help="summarise every dataset and protocol and where it was loaded from")
    d.add_argument("--root", default=None,
                   help="folder with the Fashion-MNIST idx files (else MOOD_FMNIST_DIR, Debian, download)")
    d.add_argument("--online", action="store_true", help="also load CIFAR-10/100 and SVHN through torchvision")
    d.set_defaults(func=_cmd_data)
    b = sub.add_parser("book", help="execute the notebooks with papermill (run) and build the HTML book (build)")
    b.add_argument("action", choices=("run", "build", "readme", "publish", "render"),
                   help="run: execute the chapters; build: run, then Jupyter Book; readme: the README's results block "
                        "from results/<profile>/; render: HTML from the profile's record (results/<profile>/chapters), executing "
                        "nothing; publish: store the executed chapters of book/chapters in the record (a run stores "
                        "its own; this is for a run made by code that did not)")
    b.add_argument("--edition", default=None, help="render/publish: the record's profile (default: --profile)")
    b.add_argument("--profile", default=None, help=f"{profiles} (default: MOOD_PROFILE, else cpu)")
    b.add_argument("--only", default=None,
                   help="run: only the chapters whose file name contains this (joins the record of the same commit)")
    b.add_argument("--until", type=int, default=None,
                   help="run: chapters 1..N (joins the record of the same commit; e.g. 9: the main book)")
    b.add_argument("--seed", type=int, default=0, help="seed passed to every chapter")
    b.add_argument("--resume", action="store_true",
                   help="run/build: go on with the unfinished run of record (whole book or --until) from the first "
                        "chapter it did not finish, on the same machine and code")
    b.set_defaults(func=_cmd_book)
    helps = {"pretrain": "pretrain a backbone on the protocol's training images (cached)",
             "finetune": "pretrain (cached), then fine-tune on the ID labels",
             "evaluate": "pretrain (cached), then score the pretrained features directly",
             "run": "the full MOOD pipeline: pretrain -> fine-tune -> features -> score -> table"}
    for name, text in helps.items():
        s = sub.add_parser(name, help=text, description=text)
        s.add_argument("--protocol", default="multi-class", help=f"{', '.join(PROTOCOL_NAMES)}, or one-class:all")
        s.add_argument("--profile", default=None, help=f"{profiles} (default: MOOD_PROFILE, else cpu)")
        s.add_argument("--pretext", default=None, help=", ".join(PRETEXTS))
        s.add_argument("--model", default=None, help=f"a preset ({', '.join(MODEL_PRESETS)}) or a timm model name")
        s.add_argument("--pretrained", default=None,
                       help="start from 'timm' (timm's published weights for --model; online on first use), "
                            "'zoo:NAME' (a zoo entry: python -m mood zoo list) or a checkpoint file")
        s.add_argument("--img-size", type=int, default=None, help="resize every image to this side (default: the data's own)")
        s.add_argument("--seed", type=int, default=0, help="seed of every stage")
        s.add_argument("--pretrain-epochs", type=int, default=None, help="override the profile's pretraining epochs (>= 1)")
        if name in ("finetune", "run"):
            s.add_argument("--finetune-epochs", type=int, default=None, help="override the profile's fine-tuning epochs (>= 1)")
        if name in ("evaluate", "run"):
            s.add_argument("--detector", default=None,
                           help=f"the OOD score: {', '.join(SCORES)} (default: the profile's, mahalanobis)")
            s.add_argument("--pool", default=None, help=f"the scored feature: {', '.join(POOLS)} (default: the profile's)")
            s.add_argument("--out", default=None, help="save the results table here (.csv or .json)")
        s.add_argument("--device", default=None, help="auto (default), cpu or cuda")
        s.add_argument("--set", action="append", default=None, metavar="STAGE.FIELD=VALUE",
                       help="change any stage setting of the profile, e.g. --set pretrain.batch_size=512 "
                            "--set finetune.lr=1e-3 (repeatable; stage: pretrain, finetune or eval; checked against "
                            "the field's type)")
        s.add_argument("--artifacts", default=None, help="cache folder (default: MOOD_ARTIFACTS or ./artifacts)")
        s.set_defaults(func=_cmd_stage)
    z = sub.add_parser("zoo", help="the zoo of pretrained backbones (zoo/): list, show, train, verify",
                       description="The zoo of long-pretrained backbones shipped in zoo/: list them, show one card, "
                                   "train the registered entries not shipped yet (in the registry's order; resumable), "
                                   "or verify every file against its card (--retrain NAME: train one again and compare).")
    z.add_argument("action", choices=("list", "show", "train", "verify"))
    z.add_argument("names", nargs="*", help="show: one entry; train: these entries (default: every missing one)")
    z.add_argument("--profile", default=None, help="train: the profile whose data sizes apply (default cpu; smoke for tests)")
    z.add_argument("--commit", action="store_true", help="train: git-commit each entry as soon as it is written")
    z.add_argument("--force", action="store_true", help="train: train the named entries again even if shipped")
    z.add_argument("--retrain", default=None, metavar="NAME", help="verify: train NAME again, alone, and compare")
    z.add_argument("--zoo", default=None, help="the zoo folder (default: MOOD_ZOO, else zoo/ in the repository)")
    z.add_argument("--artifacts", default=None, help="where the runs' checkpoints live (default: MOOD_ARTIFACTS or ./artifacts)")
    z.set_defaults(func=_cmd_zoo)
    text = "Unleashing Mask: train from scratch keeping every epoch, estimate the loss floor, UM, UMAP, control"
    u = sub.add_parser("unleash", help=text, description=text)
    u.add_argument("--model", action="append", default=None,
                   help="backbone (repeatable; default: the profile's, the small CNN)")
    u.add_argument("--seed", type=int, action="append", default=None, help="seed (repeatable; default: the profile's)")
    u.add_argument("--profile", default=None, help=f"{profiles} (default: MOOD_PROFILE, else cpu)")
    u.add_argument("--protocol", default="multi-class", help="the ID data and OOD sets (default multi-class)")
    u.add_argument("--noise", type=float, action="append", default=None,
                   help="label-noise rate of a condition (repeatable; default: the profile's, 0 and 0.2)")
    u.add_argument("--floor", type=float, default=None, help="loss floor b (default: estimated with a 96.5%% weight mask)")
    u.add_argument("--artifacts", default=None, help="cache folder (default: MOOD_ARTIFACTS or ./artifacts)")
    u.add_argument("--out", default=None, help="save every table of the study (CSV and JSON) under this folder")
    u.set_defaults(func=_cmd_unleash)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
