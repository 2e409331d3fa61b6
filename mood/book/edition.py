"""The executed chapters of a profile's record, and the book rendered from them without training.

A run of the book ends by storing what it executed beside its result tables: the record of a profile
is one folder, ``results/<profile>/``, holding the tables, ``provenance.json``, ``headline.csv`` and
``chapters/`` (each executed chapter, its figures re-encoded as palette PNGs where that is smaller,
opening with the run's provenance). Nothing is stored twice.

    python -m mood book render --edition cpu    # results/cpu -> _build/html, nothing executed (make edition)

A folder that mixes runs of different code is refused (:func:`mood.book.records.check_record`). The
book's first page (``book/_edition.md``, included by ``book/intro.md``) states the record's commit,
date, machine and training speed, each chapter's wall time and the total, and whether ``mood/`` or
``notebooks/`` changed since.
"""

from __future__ import annotations

import base64
import io
import shutil
from pathlib import Path

from mood.book import layout
from mood.book.claims import write_page
from mood.book.records import check_record, git_output, load_provenance, run_dates, training_note, training_speed
from mood.core.io import atomic_write_text

RECORD_CHAPTERS = "chapters"  # results/<profile>/chapters: the record's executed chapters
STATUS_FILE = Path("book") / "_edition.md"
PROVENANCE_TAG = "edition-provenance"
WATCHED = ("mood", "notebooks")  # the code a record's numbers depend on


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
    """The Markdown cell every stored chapter opens with: the run that executed it."""
    import nbformat

    seconds = record.get("chapter_seconds", {}).get(chapter)
    training = training_note(record.get("chapter_training", {}).get(chapter))
    ran = f"; this chapter ran {seconds:,.0f} s" if seconds is not None else ""
    ran += f" ({training})" if seconds is not None and training else ""
    text = (f":::{{note}}\n**Record** `{record['profile']}` — executed from commit `{str(record['commit'])[:10]}` "
            f"on {run_dates(record)}, {record['device']}, torch {record['torch']}{ran}. "
            f"The numbers below are that run's; `PROFILE={record['profile']} make book` recomputes them.\n:::")
    return nbformat.v4.new_markdown_cell(text, metadata={"tags": [PROVENANCE_TAG]})


def record_chapters(results_dir: str | Path) -> Path:
    """Where a record keeps its executed chapters: ``results_dir/chapters``."""
    return Path(results_dir) / RECORD_CHAPTERS


def store(results_dir: Path, executed: Path, chapters: list[str], whole_book: bool) -> Path:
    """Stores the executed notebooks ``executed/<chapter>.ipynb`` of a run in its record
    (``results_dir/chapters``), each opening with the record's provenance and its PNGs shrunk
    (:func:`shrink_png`). A whole-book run replaces the folder once every chapter is written; a run
    of some chapters replaces theirs. Returns the folder.

    Raises:
        FileNotFoundError: a chapter's executed notebook is missing.
    """
    import nbformat

    record = load_provenance(results_dir)
    if record is None:
        raise FileNotFoundError(f"{results_dir}/provenance.json is missing: a run stores its chapters after its record")
    final = record_chapters(results_dir)
    staging = final.with_name(".chapters.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for name in chapters:
            nb = nbformat.read(executed / f"{name}.ipynb", as_version=4)
            if _profile_of(nb) not in (None, record["profile"]):
                raise ValueError(f"{executed / name}.ipynb was executed at profile {_profile_of(nb)!r}, not "
                                 f"{record['profile']!r}: it cannot join that record")
            nb.cells = [c for c in nb.cells if PROVENANCE_TAG not in c.metadata.get("tags", [])]
            nb.cells.insert(1 if nb.cells else 0, provenance_cell(record, name))
            for cell in nb.cells:
                for out in cell.get("outputs", []):
                    if "image/png" in out.get("data", {}):
                        out["data"]["image/png"] = shrink_png(out["data"]["image/png"])
            nbformat.write(nb, staging / f"{name}.ipynb")
        if whole_book or not final.exists():
            shutil.rmtree(final, ignore_errors=True)
            staging.rename(final)
        else:
            for nb_path in staging.glob("*.ipynb"):
                nb_path.replace(final / nb_path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _changed_since(root: Path, commit: str) -> str | None:
    """What of :data:`WATCHED` changed between ``commit`` and the checkout: "" when nothing did, None
    when git cannot tell (no history of that commit)."""
    changed = git_output("diff", "--name-only", commit, "--", *WATCHED, cwd=root) if commit else None
    if changed is None:
        return None
    files = [f for f in changed.splitlines() if f]
    parts = []
    for top in WATCHED:
        if mine := [f for f in files if f.startswith(top + "/")]:
            parts.append(f"`{top}/` ({len(mine)} file{'s' if len(mine) > 1 else ''}: {', '.join(Path(f).name for f in mine[:6])}"
                         f"{', ...' if len(mine) > 6 else ''})")
    return "; ".join(parts)


def _chapter_times(record: dict) -> list[str]:
    seconds = record.get("chapter_seconds", {})
    if not seconds:
        return []
    rows = [f"| `{ch}` | {s / 60:.1f} |" for ch, s in seconds.items()]
    return ["", "| chapter | wall time (min) |", "|---|---:|", *rows, f"| **total** | **{sum(seconds.values()) / 60:.1f}** |", ""]


def status(root: Path, record: dict | None, executed_now: bool = False) -> str:
    """The first page's note on the numbers the book shows: the record's commit, date, machine and
    its training speed (img/s), each chapter's wall time and the total, and whether ``mood/`` or
    ``notebooks/`` changed since that commit (``executed_now``: the chapters were executed by this
    build rather than read from the record). Without a record: executed now, nothing more known."""
    head = (git_output("rev-parse", "HEAD", cwd=root) or "unknown")[:10]
    if record is None:
        return (f":::{{note}}\nExecuted now from commit `{head}`: every number was computed by "
                f"the code of this checkout.\n:::\n")
    commit = str(record.get("commit", ""))
    speed = training_speed(root / "results" / str(record["profile"]))
    machine = f"{record['device']}" + (f", training at {speed:,.0f} img/s" if speed else "")
    how = ("executed now" if executed_now else f"rendered from commit `{head}` without executing anything")
    lead = (f"The `{record['profile']}` record (`results/{record['profile']}/`): executed from commit `{commit[:10]}` "
            f"on {run_dates(record)}, {machine}, torch {record['torch']}; {how}.")
    cold = record.get("run_training", {}).get("cached runs")
    lead += (" The run read trained stages from the artifact cache, so its wall times are not those of a cold run."
             if cold else " The run started from an empty artifact cache: the wall times below are cold.")
    changed = _changed_since(root, commit)
    if changed is None:
        note = ":::{note}\n" + lead + " Whether the code changed since is unknown here (no git history of that commit)."
    elif not changed:
        note = ":::{note}\n" + lead + f" `{'/`, `'.join(WATCHED)}/` are unchanged since."
    else:
        note = (":::{warning}\n" + lead + f" **The code has changed since:** {changed}. The numbers are the record's; "
                f"`PROFILE={record['profile']} make book` recomputes them with the current code.")
    return "\n".join([note, ":::", *_chapter_times(record)]) + "\n"


def write_status(root: Path, record: dict | None, executed_now: bool = False) -> Path:
    """Writes :func:`status` into ``root/book/_edition.md`` (included by the first page)."""
    return atomic_write_text(root / STATUS_FILE, status(root, record, executed_now))


def stage(profile: str, root: Path) -> None:
    """Puts the ``profile`` record's executed chapters in ``root/book/chapters`` (replacing what is
    there), its note on the first page and its claims on the results page, executing nothing.

    Raises:
        FileNotFoundError: no record of ``profile``, or one without its executed chapters.
        ValueError: the record mixes runs of different code (:func:`check_record`).
    """
    results = root / "results" / profile
    record = check_record(results)
    stored = sorted(record_chapters(results).glob("*.ipynb"))
    if not stored:
        raise FileNotFoundError(f"{record_chapters(results)} holds no executed chapter: the record predates stored "
                                f"chapters; `PROFILE={profile} make book` makes a record with them")
    chapters = root / layout.CHAPTERS_DIR
    chapters.mkdir(parents=True, exist_ok=True)
    for old in chapters.glob("*.ipynb"):
        old.unlink()
    for src in stored:
        shutil.copy2(src, chapters / src.name)
    write_status(root, record)
    write_page(root, results)


def render(profile: str, root: Path | None = None) -> Path:
    """Builds the HTML book from the ``profile`` record (:func:`stage`), executing nothing.
    Returns the HTML folder."""

    root = Path(root or layout.REPO)
    stage(profile, root)
    return layout.jupyter_book(root)
