"""The published edition of the book: the executed chapters of the latest full run, kept in the
repository per profile, so that a reader renders the book without training anything.

    python -m mood book publish --profile cpu   # after a whole-book run: book/chapters -> book/edition/cpu
    python -m mood book render --edition cpu    # book/edition/cpu -> _build/html, nothing executed

``book/edition/<profile>/`` holds each chapter's executed notebook (its figures re-encoded as
palette PNGs where that is smaller), the result tables the run wrote (``results/``) and
``edition.json``: the run's provenance (commit, date, profile, device, torch version, wall time of
every chapter). Each published chapter opens with that provenance; the book's first page
(``book/_edition.md``, included by ``book/intro.md``) says whether the code has changed since the
edition was produced: the edition's commit against the checkout's, and which of ``mood/`` and
``notebooks/`` changed. Chapters run again since (``results/<profile>/provenance.json`` records a
newer run of them: :func:`superseded`) are named on the first page, in the README, and at the top of
the chapter itself when the edition is rendered.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

from mood.core.io import atomic_write_text
from mood.book import layout
from mood.book.claims import write_page
from mood.book.records import git_output, load_provenance, provenance_path, run_dates, training_note, utc_now

EDITION_DIR = Path("book") / "edition"
STATUS_FILE = Path("book") / "_edition.md"
PROVENANCE_TAG = "edition-provenance"
SUPERSEDED_TAG = "edition-superseded"
WATCHED = ("mood", "notebooks")  # the code an edition's numbers depend on


def _profile_of(nb) -> str | None:
    return nb.metadata.get("papermill", {}).get("parameters", {}).get("profile")


def shrink_png(data: str) -> str:
    """A base64 PNG re-encoded with an adaptive 256-colour palette, when that is smaller (plots
    have few colours: the palette keeps them and usually halves the file)."""
    from PIL import Image

    raw = base64.b64decode(data)
    img = Image.open(io.BytesIO(raw))
    out = io.BytesIO()
    img.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, format="PNG", optimize=True)
    small = out.getvalue()
    return base64.b64encode(small).decode() if len(small) < len(raw) else data


def provenance_cell(record: dict, chapter: str):
    """The Markdown cell every published chapter opens with."""
    import nbformat

    seconds = record.get("chapter_seconds", {}).get(chapter)
    training = training_note(record.get("chapter_training", {}).get(chapter))
    ran = f"; this chapter ran {seconds:,.0f} s" if seconds is not None else ""
    ran += f" ({training})" if seconds is not None and training else ""
    text = (f":::{{note}}\n**Edition** `{record['profile']}` — executed from commit `{str(record['commit'])[:10]}` "
            f"on {run_dates(record)}, {record['device']}, torch {record['torch']}{ran}. "
            f"The numbers below are that run's; `python -m mood book run --profile {record['profile']}` "
            f"recomputes them.\n:::")
    return nbformat.v4.new_markdown_cell(text, metadata={"tags": [PROVENANCE_TAG]})


def _when(date: str) -> datetime:
    when = datetime.fromisoformat(str(date))
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def superseded(record: dict, root: Path) -> dict[str, dict]:
    """The chapters of the edition ``record`` whose results of record are newer than the edition:
    ``results/<profile>/provenance.json`` holds a later run of them (a later whole run, or chapters
    run on their own since, its ``partial_runs``). Maps each chapter to that run's header
    (``commit``, ``date``); empty when the edition shows the results of record."""
    current = load_provenance(root / "results" / str(record.get("profile")))
    if current is None or "date" not in record:
        return {}
    published = _when(record["date"])
    newer: dict[str, dict] = {}
    for run in [current, *current.get("partial_runs", [])]:
        if "date" in run and _when(run["date"]) > published:
            for chapter in run.get("chapter_seconds", {}):
                newer[chapter] = {"commit": str(run.get("commit", "")), "date": str(run["date"])}
    return newer


def _runs_since(newer: dict[str, dict]) -> str:
    return ", ".join(f"`{ch}` (commit `{r['commit'][:10]}`, {r['date'][:10]})" for ch, r in sorted(newer.items()))


def superseded_cell(profile: str, run: dict):
    """The warning a rendered chapter carries when its results of record are newer than the edition."""
    import nbformat

    text = (f":::{{warning}}\nThis chapter was run again after the edition (commit `{run['commit'][:10]}`, "
            f"{run['date'][:10]}): its results of record are in `results/{profile}/` and the README; the numbers "
            f"below are the edition's and may differ from them. `python -m mood book run --profile {profile}` "
            f"followed by `python -m mood book publish --profile {profile}` brings the edition up to date.\n:::")
    return nbformat.v4.new_markdown_cell(text, metadata={"tags": [SUPERSEDED_TAG]})


def publish(profile: str, root: Path | None = None) -> Path:
    """Copies the executed chapters of ``root/book/chapters`` (every chapter, executed at ``profile``
    by a whole-book run) and ``results/<profile>`` into ``root/book/edition/<profile>``, replacing
    the previous edition only once the new one is complete. Returns the edition folder.

    Raises:
        FileNotFoundError: no whole-book run of ``profile`` to publish (a chapter or the provenance missing).
        ValueError: a chapter was executed at another profile.
    """
    import nbformat


    root = Path(root or layout.REPO)
    results = root / "results" / profile
    prov = provenance_path(results)
    if (record := load_provenance(results)) is None:
        raise FileNotFoundError(f"{prov} is missing: run the whole book first (python -m mood book run --profile {profile})")
    names = [src.stem for src in layout.chapters(root / "notebooks")]
    missing = [n for n in names if not (root / layout.CHAPTERS_DIR / f"{n}.ipynb").exists()]
    unrecorded = [n for n in names if n not in record.get("chapter_seconds", {})]
    if missing or unrecorded:
        raise FileNotFoundError(f"an edition is a whole-book run; missing executed chapters {missing}, chapters "
                                f"without a recorded wall time {unrecorded}: run python -m mood book run --profile {profile}")
    final = root / EDITION_DIR / profile
    staging = final.with_name(f".{profile}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "results").mkdir(parents=True)
    for name in names:
        nb = nbformat.read(root / layout.CHAPTERS_DIR / f"{name}.ipynb", as_version=4)
        if _profile_of(nb) != profile:
            shutil.rmtree(staging)
            raise ValueError(f"{name} was executed at profile {_profile_of(nb)!r}, not {profile!r}: rerun the book")
        nb.cells = [c for c in nb.cells if PROVENANCE_TAG not in c.metadata.get("tags", [])]
        nb.cells.insert(1 if nb.cells else 0, provenance_cell(record, name))
        for cell in nb.cells:
            for out in cell.get("outputs", []):
                if "image/png" in out.get("data", {}):
                    out["data"]["image/png"] = shrink_png(out["data"]["image/png"])
        nbformat.write(nb, staging / f"{name}.ipynb")
    for table in sorted(results.glob("*.csv")) + [prov]:
        shutil.copy2(table, staging / "results" / table.name)
    edition = {**record, "chapters": names, "published": utc_now()}
    (staging / "edition.json").write_text(json.dumps(edition, indent=1) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    return final


def editions(root: Path | None = None) -> list[str]:
    """The profiles that have a published edition."""

    base = Path(root or layout.REPO) / EDITION_DIR
    return sorted(p.name for p in base.iterdir() if (p / "edition.json").exists()) if base.exists() else []


def summary_line(profile: str, root: Path) -> str:
    """The README's words on the ``profile`` edition: ``"Published edition `book/edition/cpu/`: commit `...`,
    2026-11-26, 14 chapters run again since"``; ``""`` when there is none."""
    path = root / EDITION_DIR / profile / "edition.json"
    if not path.exists():
        return ""
    record = json.loads(path.read_text())
    newer = superseded({"profile": profile, **record}, root)
    since = f", {len(newer)} chapter{'s' if len(newer) > 1 else ''} run again since" if newer else ""
    return (f"Published edition `{EDITION_DIR.as_posix()}/{profile}/`: commit `{str(record['commit'])[:10]}`, "
            f"{str(record['date'])[:10]}{since}")


def status(root: Path, record: dict | None) -> str:
    """The first page's note: a fresh execution, or an edition and whether the code changed since."""
    head = git_output("rev-parse", "HEAD", cwd=root)
    if record is None:
        return (f":::{{note}}\nExecuted now from commit `{(head or 'unknown')[:10]}`: every number was computed by "
                f"the code of this checkout.\n:::\n")
    commit = str(record.get("commit", ""))
    newer = superseded(record, root)
    since = (f":::{{warning}}\nChapters run again after this edition: {_runs_since(newer)}. Their results of "
             f"record (`results/{record['profile']}/`, the README) are newer than the numbers in those chapters "
             f"here, and each of them says so at its top.\n:::\n") if newer else ""
    lead = (f":::{{note}}\nThis is the published `{record['profile']}` edition: executed from commit `{commit[:10]}` "
            f"on {run_dates(record)} ({record['device']}), rendered from commit `{(head or 'unknown')[:10]}` "
            f"without executing anything.")
    changed = git_output("diff", "--name-only", commit, "--", *WATCHED, cwd=root) if commit else None
    if changed is None:
        return lead + " Whether the code changed since is unknown here (no git history of that commit).\n:::\n" + since
    files = [f for f in changed.splitlines() if f]
    if not files:
        return lead + f" `{'/`, `'.join(WATCHED)}/` are unchanged since.\n:::\n" + since
    parts = []
    for top in WATCHED:
        mine = [f for f in files if f.startswith(top + "/")]
        if mine:
            parts.append(f"`{top}/` ({len(mine)} file{'s' if len(mine) > 1 else ''}: {', '.join(Path(f).name for f in mine[:6])}"
                         f"{', ...' if len(mine) > 6 else ''})")
    return (lead.replace(":::{note}", ":::{warning}") + " **The code has changed since:** " + "; ".join(parts)
            + f". Its numbers are the edition's; `python -m mood book run --profile {record['profile']}` "
              f"recomputes them with the current code.\n:::\n" + since)


def write_status(root: Path, record: dict | None) -> Path:
    """Writes :func:`status` into ``root/book/_edition.md`` (included by the first page)."""
    return atomic_write_text(root / STATUS_FILE, status(root, record))


def stage(profile: str, root: Path) -> None:
    """Puts the ``profile`` edition's notebooks in ``root/book/chapters`` (replacing what is there)
    and its note on the first page, executing nothing; a chapter run again since the edition
    (:func:`superseded`) gets a warning after its provenance."""
    import nbformat


    folder = root / EDITION_DIR / profile
    if not (folder / "edition.json").exists():
        have = editions(root)
        raise FileNotFoundError(f"no {profile!r} edition in {root / EDITION_DIR} (published: {', '.join(have) or 'none'}); "
                                f"make one with python -m mood book run --profile {profile}, then publish")
    record = json.loads((folder / "edition.json").read_text())
    chapters = root / layout.CHAPTERS_DIR
    chapters.mkdir(parents=True, exist_ok=True)
    for old in chapters.glob("*.ipynb"):
        old.unlink()
    newer = superseded(record, root)
    for src in sorted(folder.glob("*.ipynb")):
        if src.stem not in newer:
            shutil.copy2(src, chapters / src.name)
            continue
        nb = nbformat.read(src, as_version=4)
        at = next((i + 1 for i, c in enumerate(nb.cells) if PROVENANCE_TAG in c.metadata.get("tags", [])), 0)
        nb.cells.insert(at, superseded_cell(record["profile"], newer[src.stem]))
        nbformat.write(nb, chapters / src.name)
    write_status(root, record)
    write_page(root, folder / "results")  # the results page, from the edition's own tables


def render(profile: str, root: Path | None = None) -> Path:
    """Builds the HTML book from the ``profile`` edition (:func:`stage`), executing nothing.
    Returns the HTML folder."""

    root = Path(root or layout.REPO)
    stage(profile, root)
    return layout.jupyter_book(root)
