"""The book reads as a book: the results page first, every chapter closing with its findings and
exercises, a glossary, complete references, facts of the profile in use rather than typed ones."""

from __future__ import annotations

import re

import jupytext
import yaml

from mood.book import findings
from mood.book import runner as book


def _toc() -> list[str]:
    toc = yaml.safe_load((book.REPO / "_toc.yml").read_text())
    return [c["file"] for part in toc["parts"] for c in part["chapters"]]


def test_the_results_page_comes_before_chapter_1_and_the_glossary_is_in_the_book() -> None:
    files = _toc()
    assert files.index("book/results") < files.index("book/chapters/01_ood_problem")
    assert "book/glossary" in files and (book.REPO / "book" / "glossary.md").exists()
    page = (book.REPO / "book" / "results.md").read_text()
    assert "{include} _results.md" in page  # written from the run's tables (mood.book.claims.write_page)


def test_every_chapter_closes_with_what_we_found_and_exercises() -> None:
    for src in book.chapters():
        nb = jupytext.read(src)
        text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        assert "## What we found" in text and "## Exercises" in text, src.name
        exercises = text.split("## Exercises", 1)[1]
        assert 2 <= len(re.findall(r"^\d\. ", exercises, re.M)) <= 3, src.name
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        if src.stem != "09_summary":  # chapter 9's findings are the claims' calls
            assert f'findings.say("{src.stem}", results_dir)' in code, src.name
    assert set(findings.FINDINGS) == {s.stem for s in book.chapters()} - {"09_summary"}


def test_the_references_hold_every_work_the_text_cites() -> None:
    refs = (book.REPO / "book" / "references.md").read_text()
    for who in ("Vaze", "Müller", "MOODv2", "Ishida", "Zhu", "Li, J."):
        assert who in refs, who


def test_chapter_2_reads_its_grid_from_the_model_in_use() -> None:
    src = (book.REPO / "notebooks" / "02_masked_image_modeling.py").read_text()
    assert "7x7 grid" not in src and "20 of 49" not in src and "Backbone(prof.model).grid" in src
