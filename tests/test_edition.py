"""The edition's first-page note: which code changed since the edition was executed."""

from __future__ import annotations

import base64
import io
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mood.book import edition


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    for d in ("mood", "notebooks", "tests"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "a.py").write_text("x = 1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "-c", "user.email=t@t", "-c", "user.name=t", "add", ".")
    _git(tmp_path, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "edition")
    return tmp_path


def _record(commit: str) -> dict:
    return {"profile": "cpu", "commit": commit, "date": "2026-11-26T00:00:00", "device": "a CPU", "torch": "2.x"}


def test_status_says_the_code_is_unchanged_then_names_what_changed(repo: Path) -> None:
    commit = _git(repo, "rev-parse", "HEAD")
    assert "are unchanged since" in edition.status(repo, _record(commit))
    (repo / "tests" / "a.py").write_text("x = 2\n")  # not code the numbers depend on
    assert "are unchanged since" in edition.status(repo, _record(commit))
    (repo / "mood" / "a.py").write_text("x = 2\n")  # uncommitted changes count too
    note = edition.status(repo, _record(commit))
    assert "The code has changed since" in note and "`mood/` (1 file: a.py)" in note and "notebooks/` (" not in note
    assert note.startswith(":::{warning}")
    assert "unknown here" in edition.status(repo, _record("0" * 40))
    assert "Executed now from commit" in edition.status(repo, None)


def test_figures_shrink_without_changing_what_they_show() -> None:
    from PIL import Image

    img = np.zeros((120, 200, 3), np.uint8)
    img[:, :100] = (31, 119, 180)
    img[40:80, 120:180] = (255, 127, 14)
    img += np.random.default_rng(0).integers(0, 2, img.shape, dtype=np.uint8)  # anti-aliasing-like noise
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    data = base64.b64encode(buf.getvalue()).decode()
    small = edition.shrink_png(data)
    assert len(small) < len(data)
    back = np.asarray(Image.open(io.BytesIO(base64.b64decode(small))).convert("RGB")).astype(int)
    assert back.shape == img.shape and np.abs(back - img).max() <= 8


def test_each_chapter_opens_with_its_time_and_the_training_it_loaded_from_the_cache() -> None:
    record = {**_record("a" * 40), "chapter_seconds": {"06_x": 120.0, "07_y": 30.0},
              "chapter_training": {"06_x": {"trained runs": 1, "trained s": 100.0, "cached runs": 3, "cached s": 2400.0},
                                   "07_y": {"trained runs": 0, "trained s": 0.0, "cached runs": 0, "cached s": 0.0}}}
    text = edition.provenance_cell(record, "06_x").source
    assert "this chapter ran 120 s (1 training stage(s) ran here (100 s); 3 came from the artifact cache" in text
    assert "2,400 s" in text and "commit `aaaaaaaaaa`" in text
    assert "this chapter ran 30 s. " in edition.provenance_cell(record, "07_y").source  # trained nothing: no note
    assert "cache" not in edition.provenance_cell(_record("b" * 40), "06_x").source  # an older record has no ledger


def test_a_run_resumed_in_parts_says_when_it_began_and_in_how_many_parts(repo: Path) -> None:
    resumed = {**_record(_git(repo, "rev-parse", "HEAD")), "starts": ["2026-11-24T10:00:00", "2026-11-25T09:00:00"]}
    for text in (edition.provenance_cell(resumed, "06_x").source, edition.status(repo, resumed)):
        assert "on 2026-11-24 to 2026-11-26, in 2 parts (`book run --resume`)" in text
    one = {**_record("a" * 40), "starts": ["2026-11-26T00:00:00"]}  # a run in one go: its day
    assert "on 2026-11-26, a CPU" in edition.provenance_cell(one, "06_x").source


def _notebook(path: Path, record: dict) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {path.stem}"),
                                         nbformat.v4.new_code_cell("x = 1")])
    nb.cells.insert(1, edition.provenance_cell(record, path.stem))
    nbformat.write(nb, path)


def test_chapters_run_again_since_the_edition_are_named_on_the_first_page_in_the_readme_and_atop_the_chapter(
        repo: Path) -> None:
    import json

    import nbformat

    record = {**_record(_git(repo, "rev-parse", "HEAD")), "chapter_seconds": {"06_x": 10.0, "07_y": 20.0}}
    folder = repo / edition.EDITION_DIR / "cpu"
    folder.mkdir(parents=True)
    (folder / "edition.json").write_text(json.dumps(record))
    for name in record["chapter_seconds"]:
        _notebook(folder / f"{name}.ipynb", record)
    assert edition.superseded(record, repo) == {}  # no results of record at all
    results = repo / "results" / "cpu"
    results.mkdir(parents=True)
    whole = {**record, "date": "2026-11-26T00:00:00+00:00"}  # the run the edition was published from
    whole["partial_runs"] = [{"commit": "c" * 40, "date": "2026-11-27T09:00:00+00:00", "chapter_seconds": {"07_y": 5.0}},
                             {"commit": "d" * 40, "date": "2026-11-25T09:00:00+00:00", "chapter_seconds": {"06_x": 5.0}}]
    (results / "provenance.json").write_text(json.dumps(whole))

    assert edition.superseded(record, repo) == {"07_y": {"commit": "c" * 40, "date": "2026-11-27T09:00:00+00:00"}}
    note = edition.status(repo, record)
    assert "are unchanged since" in note and "Chapters run again after this edition: `07_y` (commit `cccccccccc`, 2026-11-27)." in note
    assert "06_x" not in note  # its only other run is older than the edition
    assert edition.summary_line("cpu", repo).endswith(", 1 chapter run again since")  # 07_y, as superseded() says

    edition.stage("cpu", repo)
    staged = {n: nbformat.read(repo / "book" / "chapters" / f"{n}.ipynb", as_version=4) for n in ("06_x", "07_y")}
    tags = {n: [c.metadata.get("tags", []) for c in nb.cells] for n, nb in staged.items()}
    assert tags["07_y"][1] == [edition.PROVENANCE_TAG] and tags["07_y"][2] == [edition.SUPERSEDED_TAG]
    assert "commit `cccccccccc`" in staged["07_y"].cells[2].source
    assert [edition.SUPERSEDED_TAG] not in tags["06_x"] and len(staged["06_x"].cells) == 3

    (results / "provenance.json").write_text(json.dumps({**whole, "date": "2026-11-28T00:00:00+00:00", "partial_runs": []}))
    assert set(edition.superseded(record, repo)) == {"06_x", "07_y"}  # a newer whole run, not yet published
    assert edition.summary_line("gpu", repo) == ""  # no gpu edition: nothing to say
