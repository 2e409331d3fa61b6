"""The chapter registry is the one home of a chapter's number, file, title and budget group: the
notebooks, the table of contents (the sidebar's numbers), the tables, the claims and the findings
agree with it."""

from __future__ import annotations

import re

import pytest
import yaml

from mood.book import claims, findings
from mood.book.runner import REPO
from mood.book.runner import chapters as notebooks
from mood.experiments import chapters, tables


def test_the_registry_lists_every_notebook_with_its_title_in_book_order() -> None:
    assert list(chapters.CHAPTERS) == [src.stem for src in notebooks()]
    for src in notebooks():
        heading = re.search(r"^# # (.+)$", src.read_text(), re.M).group(1)
        c = chapters.CHAPTERS[src.stem]
        assert heading == c.title, src.name
        assert chapters.get(c.number) is c and chapters.get(c.stem) is c
    assert [c.number for c in chapters.CHAPTERS.values()] == list(range(1, len(chapters.CHAPTERS) + 1))


def test_the_sidebar_numbers_each_chapter_as_its_file_and_registry_do() -> None:
    """Jupyter Book numbers the chapters of numbered parts one after another; a chapter in an
    unnumbered part gets no number and shifts every later one (the summary once made the pretext
    ablation "9.")."""
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    seen, count = [], 0
    for part in toc["parts"]:
        for entry in part["chapters"]:
            stem = entry["file"].rsplit("/", 1)[-1]
            if stem not in chapters.CHAPTERS:
                continue
            c = chapters.CHAPTERS[stem]
            assert part.get("numbered"), f"{stem}: its part {part['caption']!r} is not numbered"
            count += 1
            assert count == c.number, f"the sidebar numbers {stem} {count}"
            assert part["caption"] == c.part, stem
            seen.append(stem)
    assert seen == list(chapters.CHAPTERS)


def test_tables_claims_and_findings_name_registered_chapters() -> None:
    assert {t.chapter for t in tables.TABLES.values()} <= set(chapters.CHAPTERS)
    assert {c.chapter for c in claims.CLAIMS} <= set(chapters.CHAPTERS)
    assert set(findings.FINDINGS) <= set(chapters.CHAPTERS)
    with pytest.raises(ValueError, match="unknown chapter '17_new'; valid: 01_ood_problem"):
        tables.ResultTable("17_x", "17_new", (), (), "a table of a chapter not registered")


def test_budget_groups_cover_the_book_once_and_spans_read_the_numbers() -> None:
    grouped = [s for g in chapters.BUDGET_GROUPS for s in chapters.in_group(g)]
    assert sorted(grouped) == sorted(chapters.CHAPTERS) and len(grouped) == len(set(grouped))
    assert chapters.span(["01_ood_problem", "02_masked_image_modeling", "03_fine_tuning", "09_summary"]) == "chapters 1-3, 9"
    assert chapters.span(["05_one_class"]) == "chapter 5"
    assert chapters.span(["01_a", "02_b"]) == "01_a, 02_b"  # not the book's chapters: named as they are
    with pytest.raises(ValueError, match="unknown chapter 17"):
        chapters.get(17)
    with pytest.raises(ValueError, match="must start with 03_"):
        chapters.Chapter(3, "04_x", "x", "Summary", "chapter 16")
