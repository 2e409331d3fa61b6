"""The book: every chapter runs under papermill at the smoke profile, the HTML builds with every
chapter and its figures, a failing chapter is reported, a browser renders the pages."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import jupytext
import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from mood.book import runner as book
from mood.book import summary
from mood.core.io import load_table

pytestmark = [pytest.mark.book, pytest.mark.slow, pytest.mark.usefixtures("require_fmnist")]

MIN_FIGURES = {"01": 2, "02": 3, "03": 2, "04": 3, "05": 1, "06": 1, "07": 1, "08": 2, "09": 0,
               "10": 1, "11": 1, "12": 1, "13": 1, "14": 1, "15": 0, "16": 2}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole book at the smoke profile, built from a scratch copy of the repository's root as a
    newcomer's clone looks after `make test`: with pytest's cache folder (its README.md is Markdown
    that Jupyter Book must not pick up) and the other files at the root, not only the book's sources."""
    root = tmp_path_factory.mktemp("book") / "repo"
    shutil.copytree(book.REPO, root, ignore=shutil.ignore_patterns(
        ".git", ".venv", "artifacts", "results", "_build", "chapters", "data", "__pycache__", "*.egg-info"))
    (root / ".pytest_cache").mkdir(exist_ok=True)
    (root / ".pytest_cache" / "README.md").write_text("# pytest cache directory #\n\nwritten by pytest\n")
    (root / ".venv").mkdir(exist_ok=True)
    (root / ".venv" / "notes.md").write_text("# not a page\n")
    mp = pytest.MonkeyPatch()
    mp.setenv("MOOD_ARTIFACTS", str(root / "artifacts"))
    try:
        book.run("smoke", root=root)
        book.build_html(root)
    finally:
        mp.undo()
    return root


def test_every_chapter_is_in_the_toc_and_has_a_parameters_cell() -> None:
    toc = (book.REPO / "_toc.yml").read_text()
    for src in book.chapters():
        assert f"book/chapters/{src.stem}" in toc, src.name
        nb = jupytext.read(src)
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1, f"{src.name}: one cell tagged 'parameters'"
        for name in ("profile", "seed", "results_dir"):
            assert re.search(rf"^{name} = ", params[0].source, re.M), f"{src.name}: parameter {name}"
    from jupytext.config import find_jupytext_configuration_file, load_jupytext_configuration_file

    config = load_jupytext_configuration_file(find_jupytext_configuration_file(str(book.NOTEBOOKS)))
    assert list(config.formats) == ["ipynb,py:percent"]  # JupyterLab pairs each .py with an .ipynb


def test_chapters_write_results_whose_one_class_numbers_recompute(built: Path) -> None:
    """Every chapter writes its tables; chapter 5's one-class table is checked against numbers recomputed
    here (:func:`_check_one_class_table`): its mean row, the headline's figures, the raw-pixel 1-NN
    baseline and the main AUROC of one class."""
    res = built / "results" / "smoke"
    for stem in ("05_one_class", "06_multi_class", "07_near_distribution", "08_few_shot", "09_claims",
                 "10_pretext", "11_architecture", "12_fine_tuning", "13_ood_metric", "14_masking",
                 "16_unleash", "16_unleash_curve", "16_unleash_effect"):
        assert (res / f"{stem}.csv").exists() and (res / f"{stem}.json").exists(), stem
    _check_one_class_table(built)
    timings = load_table(res / "_timings.csv")
    assert len(timings) == len(book.chapters())
    record = json.loads((res / "provenance.json").read_text())
    assert record["profile"] == "smoke" and set(record["chapter_seconds"]) == set(timings.index)
    head = pd.read_csv(res / "headline.csv").set_index("figure")["value"]
    assert {"id_accuracy", "auroc_mnist", "auroc_far_mean", "one_class_auroc_mean",
            "one_class_pixel_knn_auroc_mean", "chapters_1_9_seconds", "book_seconds"} <= set(head.index)


def test_rows_with_equal_run_keys_are_equal_across_every_table(built: Path) -> None:
    """One model, one number: every row carrying a run key agrees with every other row of that key on
    every figure they share, and the sharing is real: chapter 7's models are the studies' reference arms."""
    from mood.experiments import tables

    res = built / "results" / "smoke"
    rows = tables.keyed_rows(res)
    conflicts = tables.key_conflicts(res)
    assert conflicts.empty, conflicts.to_string()
    near = set(tables.load("07_near_distribution_seeds", res)["run key"])
    shared = rows[rows["run key"].isin(near)].groupby("run key")["table"].nunique()
    assert len(shared) == len(near) and (shared >= 4).all(), shared  # chapter 7 and three or more studies
    assert rows.groupby(["run key", "column"])["table"].nunique().max() >= 4


def test_pages_show_one_parameters_cell_and_no_imports(built: Path) -> None:
    """Papermill's injected cell is hidden and its values appear in the chapter's own cell; import
    cells (plumbing) are removed from the page but stay in the notebook, runnable top to bottom."""
    html = built / "_build" / "html" / "book" / "chapters"
    for src in book.chapters():
        page = re.sub(r"<[^>]+>", "", (html / f"{src.stem}.html").read_text())
        assert len(re.findall(r"^profile = ", page, re.M)) == 1, src.stem
        assert re.search(r"^profile = &quot;smoke&quot;|^profile = \"smoke\"|^profile = 'smoke'", page, re.M), src.stem
        assert "injected" not in page.lower(), src.stem
        assert "from mood.book.runner import chapter_setup" not in page, src.stem
        executed = nbformat.read(built / "book" / "chapters" / f"{src.stem}.ipynb", as_version=4)
        assert any("from mood.book.runner import chapter_setup" in c.source for c in executed.cells), src.stem


def test_show_one_parameters_cell_merges_values_and_keeps_comments(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('profile = "cpu"  # the profile\nseed = 0\nshots = [1, 5]  # k',
                                          metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell('# Parameters\nprofile = "smoke"\nseed = 3\nextra = 1\n',
                                          metadata={"tags": ["injected-parameters"]})]
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)
    book.show_one_parameters_cell(path)
    own, injected = nbformat.read(path, as_version=4).cells
    assert own.source == 'profile = "smoke"  # the profile\nseed = 3\nshots = [1, 5]  # k\nextra = 1'
    assert "remove-cell" in injected.metadata["tags"]


def test_html_has_every_chapter_with_its_figures(built: Path) -> None:
    html = built / "_build" / "html"
    assert (html / "index.html").exists()
    for src in book.chapters():
        page = (html / "book" / "chapters" / f"{src.stem}.html").read_text()
        figures = len(re.findall(r"<img[^>]+src=\"[^\"]*_images/", page))
        assert figures >= MIN_FIGURES[src.stem[:2]], f"{src.stem}: {figures} figures"
        assert "Traceback" not in page, f"{src.stem}: an executed cell printed a traceback"


def test_the_results_page_shows_every_claim_whole_with_a_three_way_call(built: Path) -> None:
    from mood.book import claims

    res = built / "results" / "smoke"
    table = claims.table(res)
    assert set(table["call"]) <= set(claims.CALLS)
    assert set(pd.read_csv(res / "09_claims.csv")["call"]) <= set(claims.CALLS)
    body = (built / "book" / "_results.md").read_text()
    for claim, r in table.iterrows():  # every cell whole: nothing cut to a column width
        assert claim in body and r["measured here"].replace("|", "\\|") in body, claim
    page = (built / "_build" / "html" / "book" / "results.html").read_text()
    assert "inconclusive" in page and "chapters/05_one_class.html" in page
    for src in book.chapters():
        chapter = (built / "_build" / "html" / "book" / "chapters" / f"{src.stem}.html").read_text()
        assert "What we found" in chapter and "Exercises" in chapter, src.stem
        assert "No findings:" not in chapter, f"{src.stem}: its findings did not read its own tables"


def test_notebook_run_by_hand_matches_papermill(built: Path) -> None:
    """A student's run (nbclient, from notebooks/, parameters edited by hand) gives papermill's table."""
    res = built / "results" / "smoke" / "06_multi_class.csv"
    by_papermill = res.read_text()
    nb = jupytext.read(book.NOTEBOOKS / "06_multi_class.py")
    for cell in nb.cells:
        if "parameters" in cell.metadata.get("tags", []):
            cell.source = cell.source.replace('profile = "cpu"', 'profile = "smoke"').replace(
                '"results/cpu"', '"results/smoke"')
    (built / "notebooks").mkdir(exist_ok=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("MOOD_ARTIFACTS", str(built / "artifacts"))
    try:
        NotebookClient(nb, kernel_name="python3", resources={"metadata": {"path": str(built / "notebooks")}}).execute()
    finally:
        mp.undo()
    assert res.read_text() == by_papermill


def test_failing_chapter_is_named_and_kept(tmp_path: Path) -> None:
    src = tmp_path / "notebooks"
    src.mkdir()
    (src / "01_broken.py").write_text('# %% tags=["parameters"]\nprofile = "cpu"\nseed = 0\nresults_dir = "r"\n'
                                      "# %%\nx = 1\n# %%\nraise ValueError('boom')\n")
    with pytest.raises(book.NotebookFailed, match=r"01_broken\.py: cell \d+ raised ValueError: boom") as err:
        book.run("smoke", root=tmp_path, notebooks=src)
    kept = tmp_path / "book" / "chapters" / "01_broken.ipynb"
    assert str(kept) in str(err.value)
    executed = nbformat.read(kept, as_version=4)
    assert any(o.get("ename") == "ValueError" for c in executed.cells for o in c.get("outputs", []))


def test_run_until_writes_a_record_of_the_chapters_it_ran(tmp_path: Path) -> None:
    src = tmp_path / "notebooks"
    src.mkdir()
    first, second, study = "01_ood_problem", "02_masked_image_modeling", "10_ablation_pretext"  # the registry's stems
    for name in (first, second, study):
        (src / f"{name}.py").write_text('# %% tags=["parameters"]\nprofile = "cpu"\nseed = 0\nresults_dir = "r"\n# %%\nx = 1\n')
    timings = book.run("smoke", root=tmp_path, notebooks=src, until=2)
    assert list(timings["chapter"]) == [first, second]
    record = json.loads((tmp_path / "results" / "smoke" / "provenance.json").read_text())
    assert set(record["chapter_seconds"]) == {first, second} and record["profile"] == "smoke"
    head = pd.read_csv(tmp_path / "results" / "smoke" / "headline.csv").set_index("figure")["value"]
    assert "chapters_1_9_seconds" in head.index and "book_seconds" not in head.index  # not the whole book


def test_runs_of_some_chapters_join_the_record_of_their_commit_and_the_run_stores_its_chapters(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mood.book.edition import record_chapters
    from mood.book.records import check_record

    src = tmp_path / "notebooks"
    src.mkdir()
    for name in ("01_a", "02_b", "10_c"):
        (src / f"{name}.py").write_text('# %% tags=["parameters"]\nprofile = "cpu"\nseed = 0\nresults_dir = "r"\n# %%\nx = 1\n')
    results = tmp_path / "results" / "smoke"
    monkeypatch.setenv("MOOD_COMMIT", "a" * 40)
    book.run("smoke", root=tmp_path, notebooks=src, until=2)
    assert sorted(p.stem for p in record_chapters(results).glob("*.ipynb")) == ["01_a", "02_b"]
    # the chapter's kernel finds its ledger (MOOD_LEDGER) and the record says what training it loaded
    (src / "10_c.py").write_text('# %% tags=["parameters"]\nprofile = "cpu"\nseed = 0\nresults_dir = "r"\n# %%\n'
                                 'import json, os\nwith open(os.environ["MOOD_LEDGER"], "a") as f:\n'
                                 '    f.write(json.dumps({"run": "finetune/ab", "cached": True, "seconds": 90.0}) + "\\n")\n')
    book.run("smoke", root=tmp_path, notebooks=src, only="10_c")  # same commit: it joins the record
    record = check_record(results)
    assert set(record["chapter_seconds"]) == {"01_a", "02_b", "10_c"} and len(record["starts"]) == 2
    assert record["chapter_training"]["10_c"] == {"trained runs": 0, "trained s": 0, "trained images": 0,
                                                  "cached runs": 1, "cached s": 90.0}
    assert record["run_training"]["cached runs"] == 1
    assert sorted(p.stem for p in record_chapters(results).glob("*.ipynb")) == ["01_a", "02_b", "10_c"]
    head = pd.read_csv(results / "headline.csv").set_index("figure")["value"]
    assert "book_seconds" in head.index  # every chapter is in the record now
    assert list(load_table(results / "_timings.csv").index) == ["01_a", "02_b", "10_c"]
    monkeypatch.setenv("MOOD_COMMIT", "b" * 40)
    book.run("smoke", root=tmp_path, notebooks=src, only="02_b")  # other code: the folder is no record now
    with pytest.raises(ValueError, match="mixes runs of different code"):
        check_record(results)
    assert "- `smoke`: no record:" in summary.readme_block(tmp_path / "results", profiles=("smoke",))
    book.run("smoke", root=tmp_path, notebooks=src)  # a whole run makes the record again
    assert check_record(results)["commit"] == "b" * 40 and "other_runs" not in check_record(results)


def test_an_interrupted_run_of_record_resumes_from_the_first_chapter_it_did_not_finish(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mood.book.records import run_dates

    src, log = tmp_path / "notebooks", tmp_path / "executed.txt"
    src.mkdir()
    head = '# %% tags=["parameters"]\nprofile = "cpu"\nseed = 0\nresults_dir = "r"\n# %%\nimport json, os\n'
    for name in ("01_a", "02_b", "03_c"):
        (src / f"{name}.py").write_text(head + f"open({str(log)!r}, 'a').write('{name}\\n')\n")
    with (src / "01_a.py").open("a") as f:  # chapter 1 trains a stage: the record counts it after the resume
        f.write('open(os.environ["MOOD_LEDGER"], "a").write(json.dumps({"run": "pretrain/x", "cached": False, '
                '"seconds": 5.0}) + "\\n")\n')
    with (src / "02_b.py").open("a") as f:  # the session ends during chapter 2
        f.write("if os.environ.get('STOP_IN_B'):\n    raise KeyboardInterrupt('session over')\n")
    monkeypatch.setenv("STOP_IN_B", "1")
    with pytest.raises(book.NotebookFailed):
        book.run("smoke", root=tmp_path, notebooks=src)
    journal = json.loads((tmp_path / book.JOURNAL).read_text())
    assert set(journal["done"]) == {"01_a"} and not (tmp_path / "results" / "smoke" / "provenance.json").exists()
    with pytest.raises(ValueError, match=r"seed \(0 there, 1 now\)"):
        book.run("smoke", root=tmp_path, notebooks=src, seed=1, resume=True)
    with pytest.raises(ValueError, match="not resumed"):
        book.run("smoke", root=tmp_path, notebooks=src, only="02", resume=True)
    assert not (tmp_path / "results" / "smoke").exists()  # refused before any chapter ran

    monkeypatch.delenv("STOP_IN_B")
    timings = book.run("smoke", root=tmp_path, notebooks=src, resume=True)
    assert log.read_text().split() == ["01_a", "02_b", "02_b", "03_c"]  # chapter 1 did not run again
    record = json.loads((tmp_path / "results" / "smoke" / "provenance.json").read_text())
    assert record["chapter_seconds"]["01_a"] == journal["done"]["01_a"]["seconds"] == timings["seconds"].iloc[0]
    assert set(record["chapter_seconds"]) == {"01_a", "02_b", "03_c"} and len(record["starts"]) == 2
    assert record["run_training"]["trained runs"] == 1 and record["chapter_training"]["01_a"]["trained s"] == 5.0
    assert run_dates(record).endswith("in 2 parts (`book run --resume`)")
    assert not (tmp_path / book.JOURNAL).exists() and not (tmp_path / book.LEDGERS).exists()
    with pytest.raises(FileNotFoundError, match="no unfinished run"):
        book.run("smoke", root=tmp_path, notebooks=src, resume=True)

    monkeypatch.setenv("STOP_IN_B", "1")
    with pytest.raises(book.NotebookFailed):
        book.run("smoke", root=tmp_path, notebooks=src)
    (tmp_path / book.CHAPTERS_DIR / "01_a.ipynb").write_text("{}")  # not the notebook the run wrote ...
    monkeypatch.delenv("STOP_IN_B")
    book.run("smoke", root=tmp_path, notebooks=src, resume=True)
    assert log.read_text().split()[4:] == ["01_a", "02_b", "01_a", "02_b", "03_c"]  # ... so it runs again

    monkeypatch.setenv("STOP_IN_B", "1")
    with pytest.raises(book.NotebookFailed):
        book.run("smoke", root=tmp_path, notebooks=src)
    with (src / "03_c.py").open("a") as f:
        f.write("y = 2\n")
    with pytest.raises(ValueError, match=r"differs in code .* did not come from this code"):
        book.run("smoke", root=tmp_path, notebooks=src, resume=True)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.parametrize("page", ["index.html", "book/chapters/06_multi_class.html"])
def test_browser_renders_pages(built: Path, page: str, tmp_path: Path) -> None:
    exe = _chromium()
    if exe is None:
        if __import__("os").environ.get("CI"):
            pytest.fail("chromium missing on CI: `make data` installs it")
        pytest.skip("chromium not installed (make data installs it)")
    shot = tmp_path / "shot.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
             "--window-size=1280,1600", "--virtual-time-budget=5000"]
    url = (built / "_build" / "html" / page).as_uri()
    proc = subprocess.run([exe, *flags, f"--screenshot={shot}", url], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 20_000  # a rendered page, not a blank one
    console_errors = [line for line in proc.stderr.splitlines() if "CONSOLE" in line and "Uncaught" in line]
    assert not console_errors, console_errors
    dom = subprocess.run([exe, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    assert "mood" in dom and "<article" in dom


def test_the_record_renders_with_its_provenance_and_figures(built: Path, tmp_path: Path) -> None:
    """The smoke run stored its executed chapters in its record; render it in a fresh copy without
    executing anything, and read every chapter in headless Chromium: the provenance block and the
    figures are there, and the first page states the run's commit and chapter times."""
    from mood.book import edition

    root = tmp_path / "repo"
    shutil.copytree(built, root, ignore=shutil.ignore_patterns("artifacts", "_build"))
    folder = root / "results" / "smoke"
    record = json.loads((folder / "provenance.json").read_text())
    assert sorted(p.stem for p in edition.record_chapters(folder).glob("*.ipynb")) == [s.stem for s in book.chapters()]
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert size < 20e6, f"the record weighs {size / 1e6:.1f} MB"
    for old in (root / "book" / "chapters").glob("*.ipynb"):
        old.unlink()  # a reader's clone has no executed chapters: render must not need them
    html = edition.render("smoke", root=root)
    root_page = html / "book" / "intro.html"  # index.html only redirects to the root page
    assert "intro.html" in (html / "index.html").read_text()
    assert "mood.css" in root_page.read_text() and (html / "_static" / "mood.css").exists()  # tables fit
    first_page = (root / "book" / "_edition.md").read_text()
    assert "The `smoke` record" in first_page and "| **total** |" in first_page
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium not installed (make data installs it)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=3000", "--dump-dom"]
    for src in book.chapters():
        url = (html / "book" / "chapters" / f"{src.stem}.html").as_uri()
        dom = subprocess.run([exe, *flags, url], capture_output=True, text=True, timeout=120).stdout
        assert "Record" in dom and str(record["commit"])[:10] in dom, f"{src.stem}: no provenance block"
        figures = len(re.findall(r"<img[^>]+src=\"[^\"]*_images/", dom))
        assert figures >= MIN_FIGURES[src.stem[:2]], f"{src.stem}: {figures} figures"
    first = subprocess.run([exe, *flags, root_page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert "record" in first and "img/s" in first


def test_render_refuses_a_profile_without_a_record(tmp_path: Path) -> None:
    from mood.book import edition

    with pytest.raises(FileNotFoundError, match="no record of this profile yet"):
        edition.render("cpu", root=tmp_path)


def _check_one_class_table(root: Path, k: int = 1) -> None:
    """Chapter 5's table under ``root/results/smoke`` (artifacts under ``root/artifacts``): the ten
    classes and their mean; the headline's one-class figures are that mean row; for class ``k``, the
    raw-pixel 1-NN AUROC recomputed with scikit-learn on the chapter's test images, and the main AUROC
    recomputed from scikit-learn's Mahalanobis distances of the pretrained features the chapter cached."""
    import numpy as np
    from sklearn.covariance import EmpiricalCovariance
    from sklearn.metrics import roc_auc_score
    from sklearn.neighbors import NearestNeighbors

    from mood.core.cache import Cache
    from mood.core.data import FMNIST_CLASSES
    from mood.experiments.pipeline import eval_sample, run_mood
    from mood.experiments.resolve import base_profile, resolve

    res = root / "results" / "smoke"
    one = load_table(res / "05_one_class.csv")
    assert list(one.index) == [*FMNIST_CLASSES, "mean"]  # ten classes and the mean
    np.testing.assert_allclose(one.loc["mean"], one.drop(index="mean").mean())
    head = pd.read_csv(res / "headline.csv").set_index("figure")["value"]
    assert head["one_class_auroc_mean"] == pytest.approx(one.loc["mean", "AUROC"])
    assert head["one_class_pixel_knn_auroc_mean"] == pytest.approx(one.loc["mean", "pixel 1-NN AUROC"])

    def auroc(id_s: np.ndarray, ood_s: np.ndarray) -> float:
        return 100 * roc_auc_score(np.r_[np.zeros(len(id_s)), np.ones(len(ood_s))], np.r_[id_s, ood_s])

    run = resolve(base_profile("smoke", seed=0), f"one-class:{k}")  # as chapter_setup and the chapter resolve it
    p, ev = run.protocol, run.profile.eval
    flat = lambda s: s.images.reshape(len(s), -1).astype(np.float64)  # noqa: E731
    nearest = NearestNeighbors(n_neighbors=1).fit(flat(p.train))  # every training image of the normal class
    dist = lambda s: nearest.kneighbors(flat(s))[0][:, 0]  # noqa: E731
    pixel = auroc(dist(eval_sample(p.id_test, ev.max_test)), dist(eval_sample(p.ood_test["other classes"], ev.n_ood)))
    assert one.loc[FMNIST_CLASSES[k], "pixel 1-NN AUROC"] == pytest.approx(pixel, abs=0.1)
    assert one.loc[FMNIST_CLASSES[k], "pixel 1-NN AUROC"] > 60  # raw pixels tell a class from the other nine
    cached = run_mood(run, cache=Cache(root / "artifacts"), finetune_stage=False)  # the chapter's pretrained backbone
    assert cached.pretrained.seconds == 0
    f = cached.features
    gauss = EmpiricalCovariance().fit(f.fit.features.double().numpy())
    main = auroc(*(gauss.mahalanobis(s.features.double().numpy()) for s in (f.id, f.ood["other classes"])))
    assert one.loc[FMNIST_CLASSES[k], "AUROC"] == pytest.approx(main, abs=0.1)
