"""The edition's first-page note: which code changed since the edition was executed."""

from __future__ import annotations

import base64
import io
import json
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


def _notebook(path: Path, profile: str = "cpu") -> None:
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {path.stem}"),
                                         nbformat.v4.new_code_cell("x = 1")])
    nb.metadata["papermill"] = {"parameters": {"profile": profile}}
    nbformat.write(nb, path)


def test_the_first_page_states_the_records_machine_speed_and_chapter_times(repo: Path) -> None:
    record = {**_record(_git(repo, "rev-parse", "HEAD")), "chapter_seconds": {"01_a": 60.0, "02_b": 150.0},
              "run_training": {"trained runs": 3, "trained s": 100.0, "trained images": 120000, "cached runs": 0}}
    results = repo / "results" / "cpu"
    results.mkdir(parents=True)
    (results / "provenance.json").write_text(json.dumps(record))
    note = edition.status(repo, record)
    assert "executed from commit" in note and "a CPU, training at 1,200 img/s" in note and "are cold" in note
    assert "| `01_a` | 1.0 |" in note and "| `02_b` | 2.5 |" in note and "| **total** | **3.5** |" in note
    assert "rendered from commit" in note and "executed now" in edition.status(repo, record, executed_now=True)
    warm = {**record, "run_training": {**record["run_training"], "cached runs": 2}}
    assert "not those of a cold run" in edition.status(repo, warm)


def test_a_record_stores_its_chapters_and_renders_only_when_it_is_one_run(repo: Path) -> None:
    """A whole run stores its chapters in the record; a run of some chapters at the same commit joins
    it; one at another commit leaves a folder that mixes code, which staging refuses."""
    from mood.book.records import join_record

    head = _git(repo, "rev-parse", "HEAD")
    executed = repo / "book" / "chapters"
    executed.mkdir(parents=True)
    for name in ("01_a", "02_b"):
        _notebook(executed / f"{name}.ipynb")
    results = repo / "results" / "cpu"
    whole = {**_record(head), "code_changed_since_commit": False, "chapter_seconds": {"01_a": 1.0, "02_b": 2.0}}
    join_record(whole, results, whole_book=True)
    edition.store(results, executed, ["01_a", "02_b"], whole_book=True)
    assert sorted(p.name for p in edition.record_chapters(results).iterdir()) == ["01_a.ipynb", "02_b.ipynb"]
    for old in executed.glob("*.ipynb"):
        old.unlink()  # a reader's clone has no executed chapters: staging copies the record's
    edition.stage("cpu", repo)
    assert sorted(p.name for p in executed.glob("*.ipynb")) == ["01_a.ipynb", "02_b.ipynb"]
    assert "The `cpu` record" in (repo / edition.STATUS_FILE).read_text()
    again = {**whole, "date": "2026-11-27T00:00:00", "chapter_seconds": {"02_b": 5.0}}
    record = join_record(again, results, whole_book=False)  # same commit: one record, built in two runs
    assert record["chapter_seconds"] == {"01_a": 1.0, "02_b": 5.0} and record["total_seconds"] == 6.0
    edition.stage("cpu", repo)
    other = {**again, "commit": "f" * 40}
    join_record(other, results, whole_book=False)
    with pytest.raises(ValueError, match=r"mixes runs of different code.*`ffffffffff` \(02_b\).*git checkout"):
        edition.stage("cpu", repo)
    join_record(whole, results, whole_book=True)  # a whole run replaces the folder's record
    edition.stage("cpu", repo)
    _notebook(executed / "01_a.ipynb", profile="smoke")
    with pytest.raises(ValueError, match="executed at profile 'smoke'"):
        edition.store(results, executed, ["01_a"], whole_book=True)
    assert sorted(p.name for p in edition.record_chapters(results).iterdir()) == ["01_a.ipynb", "02_b.ipynb"]
    with pytest.raises(FileNotFoundError, match="no record of this profile yet"):
        edition.stage("gpu", repo)
