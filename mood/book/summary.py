"""The figures of record and the README's results block, read from a run's result files: the headline
(:func:`headline`, ``headline.csv``), the README's table and provenance line (:func:`readme_block`), and
the compute appendix's measured block (:func:`cost_block`). The claims and their calls live in
:mod:`mood.book.claims`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pandas as pd

from mood.book.edition import record_chapters
from mood.book.records import cached_training, check_record, load_provenance, run_dates, training_speed
from mood.core.io import atomic_write_text, load_table
from mood.core.stats import pair_label
from mood.experiments import chapters as chapter_registry
from mood.experiments import tables as result_tables

PRETEXT_HEADLINE = pair_label("BEiT MIM", "classification")  # chapter 10's contrast behind pretext_mim_minus_classification
SCRATCH_HEADLINE = pair_label("BEiT MIM", "no pretraining (equal compute)")  # chapter 10's, behind pretext_mim_minus_scratch
ARCHITECTURE_HEADLINE = pair_label("ViT + BEiT MIM", "CNN (equal compute)")  # chapter 11's, behind architecture_vit_minus_cnn
# headline figure <- (gaps table, comparison): a declared contrast, paired by seed, on the first protocol it ran on
GAP_FIGURES = {"pretext_mim_minus_classification": ("10_pretext_gaps", PRETEXT_HEADLINE),
               "pretext_mim_minus_scratch": ("10_pretext_gaps", SCRATCH_HEADLINE),
               "architecture_vit_minus_cnn": ("11_architecture_gaps", ARCHITECTURE_HEADLINE)}


def headline(results_dir: str | os.PathLike, whole_book: bool = True) -> pd.DataFrame:
    """The figures of record of a run (``figure``, ``value``), read from the chapters' tables:
    whatever of them the results folder holds. ``book_seconds`` only when the run was the whole
    book (``whole_book``), not chapters 1..N, and beside it ``book_cached_training_seconds`` when that
    run loaded trained stages from the artifact cache (``run_training`` of its provenance): then
    ``book_seconds`` is not the time of a cold run."""
    res = Path(results_dir)
    rows: dict[str, float] = {}

    def table(name: str) -> pd.DataFrame | None:
        return result_tables.load(name, res) if result_tables.exists(name, res) else None

    if (v := table("06_validity")) is not None:
        rows["id_accuracy"] = float(v.iloc[0]["id_accuracy"])
    if (m := table("06_multi_class")) is not None:
        if "mnist" in m.index:
            rows["auroc_mnist"] = float(m.loc["mnist", "AUROC"])
        rows["auroc_far_mean"] = float(m.loc["mean (far)" if "mean (far)" in m.index else "mean", "AUROC"])
    if (sm := table("06_multi_class_summary")) is not None:  # over seeds: the mean wins over the first seed's
        for figure, row in (("id_accuracy", "ID acc"), ("auroc_mnist", "mnist"), ("auroc_far_mean", "mean (far)")):
            if row in sm.index:
                rows[figure] = float(sm.loc[row, "mean"])
                if sm.loc[row, "seeds"] >= 2:  # one seed has no spread
                    rows |= {f"{figure}_{k}": float(sm.loc[row, k]) for k in ("std", "ci_lo", "ci_hi")}
        rows["seeds"] = float(sm["seeds"].max())
    if (o := table("05_one_class")) is not None:
        rows["one_class_auroc_mean"] = float(o.loc["mean", "AUROC"])
        for figure, column in (("one_class_pixel_knn_auroc_mean", "pixel 1-NN AUROC"),
                               ("one_class_untrained_auroc_mean", "untrained AUROC")):
            if column in o.columns:
                rows[figure] = float(o.loc["mean", column])
    for figure, (stem, comparison) in GAP_FIGURES.items():
        if (g := table(stem)) is None:
            continue
        g = g.reset_index()
        g = g[g["comparison"] == comparison]
        if len(g):
            r = g.iloc[0]  # the profile's first ablation protocol
            rows[figure] = float(r["gap"])
            if pd.notna(r["ci_lo"]):  # one seed has no interval
                rows |= {f"{figure}_std": float(r["gap std"]), f"{figure}_ci_lo": float(r["ci_lo"]),
                         f"{figure}_ci_hi": float(r["ci_hi"])}

    def suffix(condition: str) -> str:  # chapter 16's label-noise conditions: clean, and the noisy one
        return "" if condition == "clean" else "_noisy"

    if (f := table("16_unleash_floors")) is not None:
        for cond in f.index.unique():
            rows[f"um_train_accuracy_final{suffix(cond)}"] = float(f.loc[[cond], "last-epoch train acc"].mean())
            if "UM loss / b" in f:  # UM's final training loss over its floor: 1 when it reached b and held it
                rows[f"um_loss_to_floor_ratio{suffix(cond)}"] = float(f.loc[[cond], "UM loss / b"].mean())
    if (e := table("16_unleash_effect")) is not None:
        e = e.reset_index()
        for cond in e["condition"].unique():
            for figure, comparison in (("um_energy_auroc_gain", "UM vs last"),
                                       ("um_val_epoch_energy_auroc_gain", "val-OOD epoch vs last")):
                r = e[(e["comparison"] == comparison) & (e["condition"] == cond) & (e["score"] == "energy")]
                if len(r) == 1:  # one backbone: its paired mean over seeds, std and 95% interval
                    rows[f"{figure}{suffix(cond)}"] = float(r["Δ"].iloc[0])
                    if r["seeds"].iloc[0] >= 2:  # one seed has no spread
                        rows |= {f"{figure}{suffix(cond)}_{k}": float(r[k].iloc[0]) for k in ("std", "ci_lo", "ci_hi")}
    if (timings := res / f"{result_tables.TIMINGS}.csv").exists():
        t = load_table(timings)
        groups = list(chapter_registry.BUDGET_GROUPS.values())
        for i, group in enumerate(groups):  # the first group (the main book) also after a run of part of it
            if i == 0 or whole_book:
                if span := [c for c in chapter_registry.in_group(group.name) if c in t.index]:
                    rows[group.figure] = float(t.loc[span, "seconds"].sum())
        if (speed := training_speed(res)) is not None:
            rows["train_img_per_s"] = speed
        if whole_book:
            rows["book_seconds"] = float(t["seconds"].sum())
            if cached := cached_training(res):  # not a cold run: say how much training it did not pay for
                rows["book_cached_training_seconds"] = float(cached["cached s"])
    return pd.DataFrame({"figure": list(rows), "value": list(rows.values())})


def save_headline(results_dir: str | os.PathLike, whole_book: bool = True) -> Path:
    """Writes :func:`headline` as ``headline.csv`` (``figure,value``) into ``results_dir``."""
    return atomic_write_text(Path(results_dir) / "headline.csv",
                             headline(results_dir, whole_book).to_csv(index=False))


README_BEGIN, README_END = "<!-- results:begin (python -m mood book readme writes this block) -->", "<!-- results:end -->"
FIGURE_LABELS = {
    "id_accuracy": "multi-class ID test accuracy (%)",
    "auroc_mnist": "Fashion-MNIST vs MNIST AUROC",
    "auroc_far_mean": "far-OOD mean AUROC (MNIST, digits, textures, photos)",
    "seeds": "fine-tuning seeds behind the means",
    "one_class_auroc_mean": "one-class mean AUROC (10 classes)",
    "one_class_pixel_knn_auroc_mean": "one-class raw-pixel 1-NN baseline, mean AUROC",
    "one_class_untrained_auroc_mean": "one-class, the same network untrained (random init), mean AUROC",
    "pretext_mim_minus_classification": "pretext ablation: BEiT MIM minus classification pretraining, mean AUROC "
                                        "over the held-out classes (paired by seed, near-distribution split)",
    "pretext_mim_minus_scratch": "pretext ablation: BEiT MIM minus the same ViT trained from scratch at equal compute, "
                                 "mean AUROC over the held-out classes (paired by seed)",
    "architecture_vit_minus_cnn": "architecture ablation: MOOD's ViT minus a small CNN trained from scratch at equal "
                                  "compute, mean AUROC over the held-out classes (paired by seed)",
    "um_train_accuracy_final": "Unleashing Mask: final training accuracy, clean labels (%)",
    "um_loss_to_floor_ratio": "Unleashing Mask: UM's final training loss over its floor b, clean labels (1: at the floor)",
    "um_loss_to_floor_ratio_noisy": "Unleashing Mask: UM's final training loss over its floor b, 20% label noise",
    "um_train_accuracy_final_noisy": "Unleashing Mask: final training accuracy, 20% label noise (%)",
    "um_energy_auroc_gain": "Unleashing Mask: Energy AUROC, UM minus the last epoch, clean labels",
    "um_energy_auroc_gain_noisy": "Unleashing Mask: Energy AUROC, UM minus the last epoch, 20% label noise",
    "um_val_epoch_energy_auroc_gain": "Energy AUROC, epoch picked on validation OOD minus the last, clean labels",
    "um_val_epoch_energy_auroc_gain_noisy": "Energy AUROC, epoch picked on validation OOD minus the last, 20% label noise",
    "chapters_1_9_seconds": "chapters 1-9, wall time (s)",
    "chapters_10_15_seconds": "chapters 10-15 (the ablation studies), wall time (s)",
    "chapter_16_seconds": "chapter 16 (Unleashing Mask), wall time (s)",
    "train_img_per_s": "training throughput of the run: images its trained stages processed per second of their training",
    "book_seconds": "whole book, wall time (s)",
    "book_cached_training_seconds": "training the whole-book run loaded from the artifact cache, not in its wall time (s)",
}


SPREAD = ("_std", "_ci_lo", "_ci_hi")  # a figure's spread over seeds, beside it in headline.csv


def headline_table(figures: pd.DataFrame, keep: Callable[[str], bool] = lambda f: True) -> pd.DataFrame:
    """:func:`headline`'s ``figure, value`` rows as a reader's table: one row per figure that ``keep``
    accepts (its :data:`FIGURE_LABELS` label), its ``value`` and, where the headline has them, its
    spread over seeds (``std``) and 95% interval (``95% CI``) beside it instead of as rows of their own."""
    values = figures.set_index("figure")["value"]
    rows = {}
    for f in values.index:
        if f.endswith(SPREAD) or not keep(f):
            continue
        std, lo, hi = (values.get(f + s) for s in SPREAD)
        rows[FIGURE_LABELS.get(f, f)] = {"value": values[f], "std": std,
                                         "95% CI": f"[{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else ""}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("figure")
# The README's table, at most 12 rows: the headline figures a newcomer reads first, in this order, each
# with a short label (FIGURE_LABELS has the long ones) and, where the headline has one, the figure read
# beside it (how many seeds; the training accuracy of the model whose OOD score it is).
README_FIGURES: dict[str, tuple[str, tuple[str, str] | None]] = {
    "id_accuracy": ("multi-class: ID test accuracy (%)", ("seeds", "{:.0f} seeds")),
    "auroc_mnist": ("multi-class: AUROC, Fashion-MNIST vs MNIST", None),
    "auroc_far_mean": ("multi-class: mean AUROC, far-OOD sets (MNIST, digits, textures, photos)", None),
    "one_class_auroc_mean": ("one-class: mean AUROC over the 10 classes", None),
    "one_class_pixel_knn_auroc_mean": ("one-class: raw-pixel 1-NN baseline, mean AUROC", None),
    "one_class_untrained_auroc_mean": ("one-class: the same network untrained, mean AUROC", None),
    "pretext_mim_minus_classification": ("pretext ablation: BEiT MIM minus classification pretraining, AUROC", None),
    "architecture_vit_minus_cnn": ("architecture ablation: MOOD's ViT minus a CNN at equal compute, AUROC", None),
    "um_energy_auroc_gain": ("Unleashing Mask, clean labels: Energy AUROC, UM minus the last epoch",
                             ("um_loss_to_floor_ratio", "UM's final loss {:.2f} b")),
    "um_val_epoch_energy_auroc_gain": ("clean labels: Energy AUROC, epoch picked on validation OOD minus the last",
                                       ("um_train_accuracy_final", "train accuracy {:.2f}%")),
    "um_energy_auroc_gain_noisy": ("Unleashing Mask, 20% label noise: Energy AUROC, UM minus the last epoch",
                                   ("um_loss_to_floor_ratio_noisy", "UM's final loss {:.2f} b")),
    "um_val_epoch_energy_auroc_gain_noisy": ("20% label noise: Energy AUROC, epoch picked on validation OOD minus "
                                             "the last", ("um_train_accuracy_final_noisy", "train accuracy {:.2f}%")),
}


def _cell(values: dict[str, float], figure: str) -> str:
    """One figure of one profile: its value, ``± std [95% interval]`` where it has them, and the
    figure read beside it (:data:`README_FIGURES`); ``—`` where the profile lacks it."""
    if figure not in values:
        return "—"
    cell = f"{values[figure]:.2f}"
    if all(figure + s in values for s in SPREAD):
        cell += f" ± {values[figure + '_std']:.2f} [{values[figure + '_ci_lo']:.2f}, {values[figure + '_ci_hi']:.2f}]"
    if (beside := README_FIGURES[figure][1]) and beside[0] in values:
        cell += ", " + beside[1].format(values[beside[0]])
    return cell


def _rows(tables: dict[str, pd.DataFrame]) -> list[str]:
    """The README's table, one column per profile (``tables``: its ``headline.csv``), one row per
    figure of :data:`README_FIGURES` that some profile has."""
    values = {prof: dict(zip(t["figure"], t["value"])) for prof, t in tables.items()}
    rows = ["| figure (± std over seeds [95% interval]) | " + " | ".join(f"`{p}`" for p in values) + " |",
            "|---" * (len(values) + 1) + "|"]
    for figure, (label, _) in README_FIGURES.items():
        if any(figure in v for v in values.values()):
            rows.append(f"| {label} | " + " | ".join(_cell(v, figure) for v in values.values()) + " |")
    return rows


def _provenance_line(prof: str, record: dict, results_dir: Path) -> str:
    """One line on the run a profile's record comes from: commit, dates, machine and its training
    speed, torch, the chapters it ran (a partial record names them) and its wall time, and where its
    executed chapters are."""
    speed = training_speed(results_dir)
    line = (f"commit `{record['commit'][:10]}`, {run_dates(record)}, {record['device']}"
            + (f" (training at {speed:,.0f} img/s)" if speed else "") + f", torch {record['torch']}")
    if chapters := record.get("chapter_seconds"):
        line += f", {chapter_registry.span(chapters)}"
        line += f" ({record['total_seconds']:,.0f} s{', not cold' if cached_training(results_dir) else ''})" \
            if "total_seconds" in record else ""
    if any(record_chapters(results_dir).glob("*.ipynb")):
        line += f"; executed chapters in `results/{prof}/chapters/` (`PROFILE={prof} make edition` renders them)"
    return f"- `{prof}` (`results/{prof}/`): {line}."


def readme_block(results_root: str | os.PathLike, profiles: tuple[str, ...] = ("cpu", "gpu")) -> str:
    """The README's results section, rendered from each profile's record, ``results/<profile>/``
    (``headline.csv`` and ``provenance.json``; nothing typed by hand): one table of
    :data:`README_FIGURES`, a column per profile, then one line of provenance per profile. A folder
    that mixes runs of different code is no record (:func:`check_record`): its line says so and it
    gets no column."""
    root = Path(results_root)
    tables, lines = {}, []
    for prof in profiles:
        head = root / prof / "headline.csv"
        try:
            record = check_record(root / prof)
        except FileNotFoundError:
            record = None
        except ValueError as err:
            lines.append(f"- `{prof}`: no record: {err}.")
            continue
        if not head.exists() or record is None:
            lines.append(f"- `{prof}`: no run of record yet (`PROFILE={prof} make book` produces one).")
            continue
        tables[prof] = pd.read_csv(head)
        lines.append(_provenance_line(prof, record, root / prof))
    return "\n".join([README_BEGIN, *(_rows(tables) + [""] if tables else []), *lines, README_END])


def _replace_block(path: Path, begin: str, end: str, block: str) -> bool:
    """Replaces the text between ``begin`` and ``end`` in ``path`` with ``block`` (which carries the
    markers); returns whether the file changed."""
    text = path.read_text()
    if begin not in text or end not in text:
        raise ValueError(f"{path} has no generated block ({begin} ... {end})")
    before, rest = text.split(begin, 1)
    new = before + block + rest.split(end, 1)[1]
    if new != text:
        atomic_write_text(path, new)
    return new != text


def update_readme(readme: str | os.PathLike, results_root: str | os.PathLike) -> bool:
    """Replaces the block between the README's results markers with :func:`readme_block`; returns
    whether the file changed."""
    return _replace_block(Path(readme), README_BEGIN, README_END, readme_block(results_root))


PLAN_BEGIN, PLAN_END = "<!-- cost:begin (python -m mood book readme writes this block) -->", "<!-- cost:end -->"


def cost_block(results_dir: str | os.PathLike) -> str:
    """The compute appendix's measured part, from a run of record's ``_timings.csv`` and provenance
    (nothing typed by hand): each chapter's wall time, the training it ran and what it read from the
    artifact cache, each group against its share of the 150-minute budget, and the run's training
    throughput."""
    res = Path(results_dir)
    record, timings = load_provenance(res), res / f"{result_tables.TIMINGS}.csv"
    if record is None or not timings.exists():
        return "\n".join([PLAN_BEGIN, f"No run of record in `{res.name}` yet.", PLAN_END])
    t = load_table(timings)
    lines = [f"Run of record at commit `{str(record['commit'])[:10]}`, {run_dates(record)}, {record['device']}"
             + (f", training at {speed:,.0f} img/s" if (speed := training_speed(res)) else "")
             + (" (not cold: it read trained stages from the artifact cache)" if cached_training(res) else "") + ".", "",
             "| chapter | wall time (min) | stages trained | their training (min) | stages read from the cache |",
             "|---|---:|---:|---:|---:|"]
    for ch, r in t.iterrows():
        lines.append(f"| `{ch}` | {r['seconds'] / 60:.1f} | {r.get('trained runs', 0):.0f} | "
                     f"{r.get('trained s', 0) / 60:.1f} | {r.get('cached runs', 0):.0f} |")
    lines += ["", "| group | wall time (min) | budget (min) |", "|---|---:|---:|"]
    for group in chapter_registry.BUDGET_GROUPS.values():
        if set(span := chapter_registry.in_group(group.name)) <= set(t.index):
            lines.append(f"| {group.name} | {t.loc[span, 'seconds'].sum() / 60:.1f} | {group.minutes['cpu']} |")
    if set(chapter_registry.CHAPTERS) <= set(t.index):
        lines.append(f"| whole book | {t['seconds'].sum() / 60:.1f} | {chapter_registry.BOOK_MINUTES['cpu']} |")
    return "\n".join([PLAN_BEGIN, *lines, PLAN_END])


def update_cost(page: str | os.PathLike, results_dir: str | os.PathLike) -> bool:
    """Replaces the compute appendix's measured block with :func:`cost_block`; returns whether it changed."""
    return _replace_block(Path(page), PLAN_BEGIN, PLAN_END, cost_block(results_dir))
