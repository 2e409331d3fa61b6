"""The result-table registry: every table a chapter writes is registered, and the committed results
hold what the registry declares."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from mood.experiments import tables

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.py"))
CHAPTERS = {p.stem for p in NOTEBOOKS}
STEM = re.compile(r"""["'](\d\d_[A-Za-z0-9_]+)["']""")  # a quoted chapter-numbered name


def test_every_table_name_in_the_chapters_and_the_package_is_registered() -> None:
    """Statically: each quoted ``NN_name`` in a chapter or a module is a registered table or a
    chapter, and the chapters write tables only through the registry."""
    sources = NOTEBOOKS + sorted((REPO / "mood").rglob("*.py"))
    unknown = {f"{f.relative_to(REPO)}: {n}" for f in sources if f.name != "tables.py"
               for n in STEM.findall(f.read_text()) if n not in tables.TABLES and n not in CHAPTERS}
    assert not unknown, sorted(unknown)
    for f in NOTEBOOKS:
        text = f.read_text()
        assert "save_results(" not in text and "save_table(" not in text, f"{f.name} writes a table past the registry"
        for stem in re.findall(r"""save_grid\([^)]*["'](\w+)["']\)""", text):  # ablations.save_grid writes two
            assert {stem, f"{stem}_runs"} <= set(tables.TABLES), (f.name, stem)


def test_each_table_names_its_chapter_and_the_summary_reads_registered_tables() -> None:
    from mood.book.summary import GAP_FIGURES

    assert all(t.chapter in CHAPTERS and t.key == k and t.doc for k, t in tables.TABLES.items())
    assert {stem for stem, _ in GAP_FIGURES.values()} <= set(tables.TABLES)
    assert not set(tables.NOT_TABLES) & set(tables.TABLES)


@pytest.mark.parametrize("profile", sorted(p.name for p in (REPO / "results").iterdir() if p.is_dir()))
def test_the_committed_results_are_registered_tables_with_their_columns(profile: str) -> None:
    res = REPO / "results" / profile
    stems = {p.stem for p in res.glob("*.csv")}
    assert not stems - set(tables.TABLES) - set(tables.NOT_TABLES), "unregistered tables in results/" + profile
    for name in sorted(stems & set(tables.TABLES)):
        assert tables.TABLES[name].missing(tables.load(name, res)) == [], name


def test_save_refuses_what_is_not_registered_or_lacks_its_columns(tmp_path: Path) -> None:
    df = pd.DataFrame({"id_accuracy": [90.0], "floor": [84.5], "ok": [True]}, index=pd.Index(["cpu"], name="profile"))
    with pytest.raises(ValueError, match="unknown result table '06_validty'; register it"):
        tables.save("06_validty", df, tmp_path)
    with pytest.raises(ValueError, match=r"'06_validity' \(chapter 06_multi_class\) lacks column 'ok'"):
        tables.save("06_validity", df.drop(columns="ok"), tmp_path)
    with pytest.raises(ValueError, match=r"lacks index \('name',\) instead of \('profile',\)"):
        tables.save("06_validity", df.rename_axis("name"), tmp_path)
    assert not list(tmp_path.iterdir())  # nothing written
    with pytest.raises(FileNotFoundError, match="chapter 06_multi_class writes it"):
        tables.load("06_validity", tmp_path)
    tables.save("06_validity", df, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["06_validity.csv", "06_validity.json"]
    pd.testing.assert_frame_equal(tables.load("06_validity", tmp_path), df)
    assert tables.missing(["06_validity", "07_validity"], tmp_path) == ["07_validity"]


def test_load_restores_a_multilevel_index_and_header(tmp_path: Path) -> None:
    gaps = pd.DataFrame({c: [1.0] for c in tables.CONTRASTS},
                        index=pd.MultiIndex.from_tuples([("M − C", "multi-class")], names=["comparison", "protocol"]))
    tables.save("10_pretext_gaps", gaps, tmp_path)
    assert tables.load("10_pretext_gaps", tmp_path).index.names == ["comparison", "protocol"]
    wide = pd.DataFrame([["1.00", "2.00"]], columns=pd.MultiIndex.from_tuples([("energy", "AUROC"), ("energy", "FPR95")]),
                        index=pd.MultiIndex.from_tuples([("clean", "m", "+UM")], names=["condition", "model", "method"]))
    with pytest.raises(ValueError, match="lacks column 'ID acc'"):
        tables.save("16_unleash", wide, tmp_path)
    wide[("energy", "ID acc")] = "90.00"
    tables.save("16_unleash", wide, tmp_path, stem="unleash")  # the command line's own file names
    back = pd.read_csv(tmp_path / "unleash.csv", index_col=[0, 1, 2], header=[0, 1])
    assert back.loc[("clean", "m", "+UM"), ("energy", "FPR95")] == 2.0


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_each_committed_record_is_one_run_of_one_commits_code(profile: str) -> None:
    """What a reader sees comes from one run at one commit: the record names one commit, ran clean
    code, weighs at most 20 MB and shows one number for one model (rows with equal run keys agree
    across all its tables); the cpu record stores every chapter it ran (the gpu one predates stored
    chapters)."""
    from mood.book.edition import record_chapters
    from mood.book.records import check_record

    res = REPO / "results" / profile
    record = check_record(res)
    assert len(record["commit"]) == 40 and not record["code_changed_since_commit"]
    assert sum(f.stat().st_size for f in res.rglob("*") if f.is_file()) <= 20e6
    assert tables.key_conflicts(res).empty, tables.key_conflicts(res).to_string()
    if profile == "cpu":
        assert {p.stem for p in record_chapters(res).glob("*.ipynb")} == set(record["chapter_seconds"])


def test_the_cpu_record_is_the_whole_book_run_cold() -> None:
    from mood.book.records import cached_training, check_record

    res = REPO / "results" / "cpu"
    assert set(check_record(res)["chapter_seconds"]) == CHAPTERS
    assert cached_training(res) is None  # nothing came from an artifact cache the run did not fill
