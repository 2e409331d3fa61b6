"""The book's result tables, one entry each: the file stem a chapter writes under ``results/<profile>/``
(as CSV and JSON, :func:`mood.core.io.save_results`), the chapter that writes it, and the index and
columns every run of it has (a table may have more: the OOD sets or protocols of the profile).

:func:`save` refuses a name that is not registered or a table that lacks its declared index or
columns; :func:`load` reads one back with its declared index. The summary chapter, chapter 15 and
the tests read the chapters' tables by these names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import pandas as pd

from mood.core.io import save_results
from mood.experiments import chapters


@dataclass(frozen=True)
class ResultTable:
    """One result table.

    Args:
        key: the file stem (``results/<profile>/<key>.csv`` and ``.json``).
        chapter: the chapter that writes it (``notebooks/<chapter>.py``).
        index: the names of its index levels, as saved (empty: one unnamed index).
        columns: the columns every run writes (a two-level header: the names on either level).
        doc: what a row is.
        header_rows: column levels (2: chapter 16's ``score x metric`` summary).
    """

    key: str
    chapter: str
    index: tuple[str, ...]
    columns: tuple[str, ...]
    doc: str
    header_rows: int = 1

    def __post_init__(self) -> None:
        chapters.get(self.chapter)  # a chapter not in the registry fails at import, naming the valid ones

    def missing(self, df: pd.DataFrame) -> list[str]:
        """What ``df`` lacks of this table: a different index, or declared columns absent."""
        out = []
        names = tuple(n for n in df.index.names if n is not None)
        if names != self.index:
            out.append(f"index {names or '(unnamed)'} instead of {self.index or '(unnamed)'}")
        have = {c for level in range(df.columns.nlevels) for c in df.columns.get_level_values(level)}
        out += [f"column {c!r}" for c in self.columns if c not in have]
        return out


SEED_TEST = ("mean", "std", "seeds", "ci_lo", "ci_hi")  # mean, std and 95% t-interval over seeds
VERSUS = ("score", "ID acc", "mean", *SEED_TEST[1:], "p", "significant", "test")  # baselines.versus_baselines
OOD_METRICS = ("AUROC", "AUPR-In", "AUPR-Out", "FPR95")  # metrics.results_table
RUNS = ("protocol", "seed", "run key", "AUROC", "FPR95", "ID acc", "images seen", "train s")  # ablations.run_variant
GAPS = ("a", "b", "gap", "gap std", "ci_lo", "ci_hi", "p", "significant", "p (Holm)")  # ablations.pair_gaps
CONTRASTS = (*GAPS, "MDE", "ID acc a", "ID acc b", "claimed", "call")  # studies.contrasts
VALIDITY = ("id_accuracy", "floor", "ok")  # verdicts.Validity.to_dict

def _study_tables(stem: str, chapter: str) -> tuple[ResultTable, ...]:
    """The four tables of an ablation study (:func:`mood.experiments.studies.run_chapter`)."""
    return (ResultTable(stem, chapter, ("variant",), (), "mean ± std over seeds per protocol"),
            ResultTable(f"{stem}_runs", chapter, ("variant",), RUNS, "one row per variant, protocol and seed, with its run key"),
            ResultTable(f"{stem}_intervals", chapter, ("variant", "protocol"), ("AUROC", *SEED_TEST[1:], "ID acc"),
                        "mean AUROC with its 95% interval over seeds (clipped to [0, 100]), beside ID accuracy and compute"),
            ResultTable(f"{stem}_gaps", chapter, ("comparison", "protocol"), CONTRASTS,
                        "the declared contrasts: paired gap, 95% CI, p, Holm p over the study, MDE at 80% power, call"))


_TABLES = [
    ResultTable("01_datasets", "01_ood_problem", ("name",), ("images", "size", "classes", "source"),
                "one row per data set: images, size, classes, source"),
    ResultTable("01_protocols", "01_ood_problem", ("protocol",), ("classes", "train", "id_test", "ood_test", "ood_train"),
                "one row per evaluation protocol: its image counts"),
    ResultTable("02_pretrain_history", "02_masked_image_modeling", ("epoch",), ("loss", "lr", "seconds", "img_per_s"),
                "MIM pretraining, one row per epoch"),
    ResultTable("03_finetune_history", "03_fine_tuning", ("epoch",), ("loss", "acc", "lr", "seconds", "img_per_s"),
                "multi-class fine-tuning, one row per epoch"),
    ResultTable("03_label_smoothing", "03_fine_tuning", ("setting",), ("AUROC", "mean feature norm", "mean top-logit gap"),
                "one-class AUROC with and without label smoothing"),
    ResultTable("04_mahalanobis_variants", "04_mahalanobis", ("ood",), ("mahalanobis", "mahalanobis_cc"),
                "AUROC per OOD set of the shared and the class-conditional Mahalanobis score"),
    ResultTable("05_one_class", "05_one_class", ("class",),
                (*OOD_METRICS, "untrained AUROC", "pixel 1-NN AUROC", "train images"),
                "one-class protocol, one row per normal class and their mean"),
    ResultTable("05_one_class_features", "05_one_class", ("class",), ("mean", "mood", "blocks", "tokens"),
                "one-class AUROC per feature pool"),
    ResultTable("05_one_class_vs_anchors", "05_one_class", (), ("mean AUROC", "source"),
                "this run's one-class mean beside the published anchors"),
    ResultTable("06_multi_class_seeds", "06_multi_class", ("seed",), ("run key", "ID acc", "mean (far)", "mean"),
                "one row per fine-tuning seed: ID accuracy and the AUROC of every OOD set"),
    ResultTable("06_validity", "06_multi_class", ("profile",), VALIDITY, "the accuracy floor of chapter 6's models"),
    ResultTable("06_multi_class_summary", "06_multi_class", ("figure",), SEED_TEST,
                "mean, std and 95% interval over seeds of each headline figure"),
    ResultTable("06_multi_class", "06_multi_class", ("ood",), OOD_METRICS, "multi-class, first seed, per OOD set"),
    ResultTable("06_multi_class_intervals", "06_multi_class", ("ood",), ("AUROC", "lo", "hi"),
                "bootstrap 95% interval of each OOD set's AUROC"),
    ResultTable("06_features", "06_multi_class", ("pool",), ("detector", "mean (far)", "mean"),
                "AUROC of every feature pool and detector"),
    ResultTable("06_pool_choice", "06_multi_class", ("pool",), ("validation AUROC", "chosen", "profile's pool"),
                "each pool's AUROC on the validation protocol (held-out training images vs their tile-shuffled copies)"),
    ResultTable("06_multi_class_vs_pixels", "06_multi_class", ("ood",), ("MOOD (first seed)", "pixel 1-NN"),
                "MOOD beside the raw-pixel baselines, AUROC per OOD set"),
    ResultTable("06_equal_compute", "06_multi_class", ("model",),
                ("score", "seed", "run key", "ID acc", "steps", "train s", "mean (far)", "mean"),
                "the baselines at equal compute: one row per model, score and seed, with its run key"),
    ResultTable("06_versus_baselines", "06_multi_class", ("baseline",), (*VERSUS, "mean (far)"),
                "MOOD minus each equal-compute baseline, far-OOD mean AUROC, paired test"),
    ResultTable("07_validity", "07_near_distribution", ("profile",), VALIDITY,
                "the accuracy floor of chapter 7's model"),
    ResultTable("07_near_distribution", "07_near_distribution", ("ood",), OOD_METRICS,
                "near-distribution protocol, per held-out class"),
    ResultTable("07_near_distribution_seeds", "07_near_distribution", ("seed",), ("run key", "ID acc", "mean"),
                "one row per fine-tuning seed: its run key, ID accuracy and the AUROC of every held-out class"),
    ResultTable("07_equal_compute", "07_near_distribution", ("model",),
                ("score", "seed", "run key", "ID acc", "steps", "train s", "mean"),
                "the baselines at equal compute: one row per model, score and seed, with its run key"),
    ResultTable("07_versus_baselines", "07_near_distribution", ("baseline",), VERSUS,
                "MOOD minus each equal-compute baseline, mean AUROC, paired test"),
    ResultTable("08_few_shot", "08_few_shot_outlier_exposure", (), ("MOOD (no OOD data)",),
                "mean AUROC over seeds per OOD set (rows) of MOOD and each outlier-exposure variant (columns)"),
    ResultTable("08_few_shot_seeds", "08_few_shot_outlier_exposure", (),
                ("model", "score", "seed", "run key", "ID acc", "mean", "train s"),
                "one row per model, score and seed, with its run key"),
    ResultTable("08_versus_oe", "08_few_shot_outlier_exposure", ("baseline", "score"), VERSUS[1:],
                "MOOD without OOD data minus each outlier-exposure variant, paired test"),
    ResultTable("09_claims", "09_summary", ("claim",),
                ("paper", "reported", "measured here", "MDE", "ID accuracy", "trivial baseline", "call", "why", "chapter"),
                "each main claim of the MOOD paper (chapters 5-8): reported, measured here, the three-way call"),
    *(table for stem, chapter in (("10_pretext", "10_ablation_pretext"), ("11_architecture", "11_ablation_architecture"),
                                  ("12_fine_tuning", "12_ablation_fine_tuning"), ("13_ood_metric", "13_ablation_ood_metric"),
                                  ("14_masking", "14_ablation_masking"))
      for table in _study_tables(stem, chapter)),
    ResultTable("11_architecture_cost", "11_ablation_architecture", ("variant",),
                ("model", "ID acc", "images seen", "MFLOP per image", "train TFLOP", "train s"),
                "the training compute of each variant"),
    ResultTable("13_score_spread", "13_ablation_ood_metric", ("comparison", "protocol"),
                ("spread a", "spread b", "gap", "ci_lo", "ci_hi", "p", "MDE", "ID acc a", "ID acc b", "call"),
                "MOODv2's claim: classification's spread of AUROC across scores minus BEiT's, paired by seed"),
    ResultTable("13_ood_metric_fpr95", "13_ablation_ood_metric", ("variant",), (),
                "mean FPR95 ± std over seeds per protocol"),
    ResultTable("13_ood_metric_sets", "13_ablation_ood_metric", ("variant", "protocol"), ("reads",),
                "each score's AUROC on each OOD set (mean over seeds) and what the score reads"),
    ResultTable("16_unleash_curve", "16_unleashing_mask", ("condition",), ("model", "seed", "epoch"),
                "one row per condition, model, seed and epoch: training loss and accuracy, OOD metrics of each score"),
    ResultTable("16_unleash_runs", "16_unleashing_mask", ("condition",),
                ("model", "seed", "method", "score", "AUROC", "FPR95", "ID acc"),
                "one row per condition, model, seed, method and score"),
    ResultTable("16_unleash_floors", "16_unleashing_mask", ("condition",),
                ("model", "seed", "floor b", "last-epoch train CE", "last-epoch train acc", "UM final train CE", "UM loss / b"),
                "UM's loss floor b beside the final model's training loss and UM's, per condition, model and seed"),
    ResultTable("16_unleash_climb", "16_unleashing_mask", ("condition",), ("model", "seed", "epoch", "ce", "floor b", "ce / b"),
                "UM's training cross-entropy per tuning epoch against its floor b, per condition, model and seed"),
    ResultTable("16_unleash_stages", "16_unleashing_mask", ("condition",),
                ("model", "seed", "score", "best epoch", "best AUROC", "last epoch", "last AUROC", "gap"),
                "the best epoch against the last, per condition, model, seed and score"),
    ResultTable("16_unleash", "16_unleashing_mask", ("condition", "model", "method"), ("AUROC", "FPR95", "ID acc"),
                "mean ± std over seeds, columns score x metric", header_rows=2),
    ResultTable("16_unleash_effect", "16_unleashing_mask", ("comparison", "condition", "model", "score"),
                ("Δ", *SEED_TEST[1:], "p", "significant"), "paired-by-seed effects of the methods"),
    ResultTable("16_unleash_beside_mood", "16_unleashing_mask", ("detector",), ("AUROC", "FPR95", "ID acc", "seeds"),
                "MOOD's chapter 6 detector beside the Unleashing Mask method chosen on validation data, per condition"),
]
TABLES: dict[str, ResultTable] = {t.key: t for t in _TABLES}
# what else a results folder holds: the book runner's chapter timings and the summary's headline figures
TIMINGS, HEADLINE = "_timings", "headline"
NOT_TABLES = (TIMINGS, HEADLINE)


def get(name: str) -> ResultTable:
    """The registered table ``name``; a ``ValueError`` naming the registered ones otherwise."""
    if name not in TABLES:
        raise ValueError(f"unknown result table {name!r}; register it in mood/experiments/tables.py "
                         f"(registered: {', '.join(TABLES)})")
    return TABLES[name]


def save(name: str, df: pd.DataFrame, results_dir: str | os.PathLike, stem: str | None = None) -> list[Path]:
    """Writes ``df`` as the registered table ``name`` (``<results_dir>/<stem>.csv`` and ``.json``;
    ``stem`` defaults to ``name``: the command line writes chapter 16's tables under names of its own).

    Raises:
        ValueError: ``name`` is not registered, or ``df`` lacks its declared index or columns.
    """
    table = get(name)
    if missing := table.missing(df):
        raise ValueError(f"result table {name!r} (chapter {table.chapter}) lacks {', '.join(missing)}")
    return save_results(df, results_dir, stem or name)


def path(name: str, results_dir: str | os.PathLike) -> Path:
    """Where the registered table ``name`` lies under ``results_dir`` (its CSV)."""
    return Path(results_dir) / f"{get(name).key}.csv"


def exists(name: str, results_dir: str | os.PathLike) -> bool:
    """Whether ``results_dir`` holds the registered table ``name``."""
    return path(name, results_dir).exists()


def missing(names: Iterable[str], results_dir: str | os.PathLike) -> list[str]:
    """The registered tables of ``names`` that ``results_dir`` lacks."""
    return [n for n in names if not exists(n, results_dir)]


def load(name: str, results_dir: str | os.PathLike) -> pd.DataFrame:
    """The registered table ``name`` read back from ``results_dir``, indexed as it was saved.

    Raises:
        FileNotFoundError: naming the chapter that writes it.
    """
    table, file = get(name), path(name, results_dir)
    if not file.exists():
        raise FileNotFoundError(f"{file} is missing: chapter {table.chapter} writes it")
    header = list(range(table.header_rows)) if table.header_rows > 1 else 0
    return pd.read_csv(file, index_col=list(range(max(1, len(table.index)))), header=header)


RUN_KEY = "run key"  # the column of a row made by one resolved run (mood.experiments.resolve.Run.key)
CALL_TIMES = ("seconds",)  # wall time of the call that read a row, not a figure of its model


def keyed_rows(results_dir: str | os.PathLike) -> pd.DataFrame:
    """Every row of every registered table under ``results_dir`` that carries a run key, in one long
    table: ``table``, ``run key`` and each numeric column as ``column`` / ``value``."""
    parts = []
    for name, t in TABLES.items():
        if t.header_rows > 1 or not exists(name, results_dir):
            continue
        df = load(name, results_dir).reset_index()
        if RUN_KEY not in df:
            continue
        values = df.select_dtypes("number").drop(columns=["seed", *CALL_TIMES], errors="ignore")
        long = values.assign(**{RUN_KEY: df[RUN_KEY]}).melt(id_vars=RUN_KEY, var_name="column", value_name="value")
        parts.append(long.assign(table=name))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["table", RUN_KEY, "column", "value"])


def key_conflicts(results_dir: str | os.PathLike, tolerance: float = 1e-6) -> pd.DataFrame:
    """Rows with the same run key whose figures differ: per (run key, column) present in several rows,
    the tables and the spread of values, where it exceeds ``tolerance``. Empty when the same model shows
    the same numbers wherever it appears (the book's one-model-one-number rule)."""
    rows = keyed_rows(results_dir).dropna(subset=["value"])
    spread = rows.groupby([RUN_KEY, "column"]).agg(tables=("table", lambda t: ", ".join(sorted(set(t)))),
                                                    low=("value", "min"), high=("value", "max"), rows=("value", "size"))
    return spread[(spread["rows"] > 1) & (spread["high"] - spread["low"] > tolerance)]
