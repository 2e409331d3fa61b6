"""The chapters of the book: one registry that the tables, the claims, the findings, the headline,
the compute appendix, the time budgets and the table of contents read, so a chapter's number, file
and title are typed once.

A chapter's ``number`` is the one the reader sees: the prefix of its notebook's file name and its
number in the book's sidebar (every part of ``_toc.yml`` that holds chapters is numbered, so
Jupyter Book counts them 1..16 in this order; ``tests/test_chapters.py`` checks both).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BudgetGroup:
    """Chapters whose wall times share one time budget.

    Attributes:
        name: the group as the compute appendix and ``benchmarks/book_budget.py`` call it.
        figure: the headline figure of its wall time (``results/<profile>/headline.csv``).
        minutes: its budget at the profiles that have one (profile -> minutes of a cold run).
    """

    name: str
    figure: str
    minutes: dict[str, float]


BUDGET_GROUPS: dict[str, BudgetGroup] = {g.name: g for g in (
    BudgetGroup("chapters 1-9", "chapters_1_9_seconds", {"cpu": 60}),
    BudgetGroup("chapters 10-15", "chapters_10_15_seconds", {"cpu": 70}),
    BudgetGroup("chapter 16", "chapter_16_seconds", {"cpu": 20}),
)}
BOOK_MINUTES: dict[str, float] = {"smoke": 10, "cpu": sum(g.minutes["cpu"] for g in BUDGET_GROUPS.values())}
CHAPTER_MINUTES: dict[str, float] = {"gpu": 10}  # any one chapter, where a profile budgets chapters one by one


@dataclass(frozen=True)
class Chapter:
    """One chapter: ``number`` (as the reader sees it), ``stem`` (its notebook ``notebooks/<stem>.py``
    and page ``book/chapters/<stem>``), ``title`` (the notebook's first heading), ``part`` (its
    caption in the table of contents) and ``group`` (its :data:`BUDGET_GROUPS` entry)."""

    number: int
    stem: str
    title: str
    part: str
    group: str

    def __post_init__(self) -> None:
        if not self.stem.startswith(f"{self.number:02d}_"):
            raise ValueError(f"chapter {self.number}: its file must start with {self.number:02d}_, got {self.stem!r}")
        if self.group not in BUDGET_GROUPS:
            raise ValueError(f"chapter {self.stem}: unknown budget group {self.group!r}; valid: {', '.join(BUDGET_GROUPS)}")


_STEPS, _PROTOCOLS, _SUMMARY = "MOOD, step by step", "The four protocols", "Summary"
_ABLATIONS, _UM = "Ablations", "Unleashing Mask"
_MAIN, _STUDIES, _LAST = "chapters 1-9", "chapters 10-15", "chapter 16"

CHAPTERS: dict[str, Chapter] = {c.stem: c for c in (
    Chapter(1, "01_ood_problem", "The OOD problem and the data", _STEPS, _MAIN),
    Chapter(2, "02_masked_image_modeling", "Masked image modeling", _STEPS, _MAIN),
    Chapter(3, "03_fine_tuning", "Fine-tuning", _STEPS, _MAIN),
    Chapter(4, "04_mahalanobis", "Scoring with the Mahalanobis distance", _STEPS, _MAIN),
    Chapter(5, "05_one_class", "One-class OOD detection", _PROTOCOLS, _MAIN),
    Chapter(6, "06_multi_class", "Multi-class OOD detection", _PROTOCOLS, _MAIN),
    Chapter(7, "07_near_distribution", "Near-distribution OOD detection", _PROTOCOLS, _MAIN),
    Chapter(8, "08_few_shot_outlier_exposure", "Few-shot outlier exposure", _PROTOCOLS, _MAIN),
    Chapter(9, "09_summary", "Summary: the paper's claims beside this book's measurements", _SUMMARY, _MAIN),
    Chapter(10, "10_ablation_pretext", "Ablation: the pretext task", _ABLATIONS, _STUDIES),
    Chapter(11, "11_ablation_architecture", "Ablation: the architecture", _ABLATIONS, _STUDIES),
    Chapter(12, "12_ablation_fine_tuning", "Ablation: fine-tuning", _ABLATIONS, _STUDIES),
    Chapter(13, "13_ablation_ood_metric", "Ablation: the OOD score", _ABLATIONS, _STUDIES),
    Chapter(14, "14_ablation_masking", "Ablation: masking", _ABLATIONS, _STUDIES),
    Chapter(15, "15_ablation_results", "Ablation results in one place", _ABLATIONS, _STUDIES),
    Chapter(16, "16_unleashing_mask", "Unleashing Mask: the OOD ability a classifier has mid-training", _UM, _LAST),
)}


def get(chapter: str | int) -> Chapter:
    """The chapter of a notebook stem (``"06_multi_class"``) or a number (6); a ``ValueError`` naming
    the valid ones otherwise."""
    for c in CHAPTERS.values():
        if chapter in (c.stem, c.number):
            return c
    raise ValueError(f"unknown chapter {chapter!r}; valid: {', '.join(CHAPTERS)} (or their numbers 1-{len(CHAPTERS)})")


def in_group(group: str) -> list[str]:
    """The stems of the chapters of budget group ``group``, in book order."""
    if group not in BUDGET_GROUPS:
        raise ValueError(f"unknown budget group {group!r}; valid: {', '.join(BUDGET_GROUPS)}")
    return [c.stem for c in CHAPTERS.values() if c.group == group]


def span(stems) -> str:
    """Chapter stems -> ``"chapters 1-3, 9"`` (``"chapter 5"`` for one; stems not in the registry are named as they are)."""
    names = list(stems)
    if not all(n in CHAPTERS for n in names):
        return ", ".join(map(str, names))
    numbers, runs = sorted({CHAPTERS[n].number for n in names}), []
    for n in numbers:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ("chapters " if len(numbers) > 1 else "chapter ") + ", ".join(
        f"{r[0]}-{r[-1]}" if len(r) > 1 else f"{r[0]}" for r in runs)


__all__ = ["BudgetGroup", "BUDGET_GROUPS", "BOOK_MINUTES", "CHAPTER_MINUTES", "Chapter", "CHAPTERS", "get",
           "in_group", "span"]
