"""Training side by side: jobs run in worker processes for what they cache, the caller then loads."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from mood.core.io import atomic_write_text
from mood.experiments.parallel import Job, prefetch


def test_prefetch_runs_every_job_in_workers(tmp_path: Path) -> None:
    jobs = [Job(atomic_write_text, (tmp_path / f"{i}.txt", f"job {i}"), name=f"write {i}") for i in range(3)]
    seconds = prefetch(jobs, workers=2)
    assert set(seconds) == {"write 0", "write 1", "write 2"} and all(s >= 0 for s in seconds.values())
    assert [(tmp_path / f"{i}.txt").read_text() for i in range(3)] == ["job 0", "job 1", "job 2"]


def test_prefetch_with_one_worker_leaves_the_work_to_the_caller(tmp_path: Path) -> None:
    assert prefetch([Job(atomic_write_text, (tmp_path / "a.txt", "a")), Job(atomic_write_text, (tmp_path / "b.txt", "b"))],
                    workers=1) == {}
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="workers must be >= 1"):
        prefetch([], workers=0)


def test_a_failing_job_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")  # a file where the job needs a folder
    jobs = [Job(atomic_write_text, (tmp_path / "ok.txt", "ok"), name="fine"),
            Job(atomic_write_text, (tmp_path / "file" / "x.txt", "x"), name="doomed")]
    with pytest.raises(RuntimeError, match="job 'doomed' failed"):
        prefetch(jobs, workers=2)


def test_a_job_must_be_importable_by_the_worker() -> None:
    with pytest.raises(ValueError, match="module-level function"):
        Job(lambda: None, name="inline")


@pytest.mark.usefixtures("require_fmnist")
def test_seeds_trained_side_by_side_are_what_the_caller_then_loads(tmp_path: Path) -> None:
    from mood.core.cache import Cache
    from mood.experiments.pipeline import run_seeds
    from mood.experiments.profiles import get_profile

    prof = replace(get_profile("smoke"), workers=2)
    runs = run_seeds("near-pair:pullover-coat", prof, seeds=(0, 1, 2), cache=Cache(tmp_path))
    assert runs[0].finetuned.seconds > 0  # the first seed trains here (and pretrains, once) ...
    assert all(runs[s].finetuned.seconds == 0 and runs[s].finetuned.history for s in (1, 2))  # ... the others in workers
    assert len(list((tmp_path / "pretrain").iterdir())) == 1  # one shared pretraining
    assert runs[1].table.loc["Coat", "AUROC"] != runs[2].table.loc["Coat", "AUROC"]  # each its own seed


def test_workers_end_with_the_process_that_started_them(tmp_path: Path) -> None:
    """A chapter killed by a time limit must not leave workers training on (SIGKILL: no clean-up runs)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux's")
    script = ("import time; from mood.experiments.parallel import Job, prefetch; "
              "prefetch([Job(time.sleep, (120,), name='a'), Job(time.sleep, (120,), name='b')], workers=2)")
    parent = subprocess.Popen([sys.executable, "-c", script])

    def children() -> list[int]:
        out = []
        for d in Path("/proc").iterdir():
            try:
                if d.name.isdigit() and int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent.pid:
                    out.append(int(d.name))
            except (OSError, ValueError, IndexError):
                continue
        return out

    deadline = time.time() + 60
    while len(workers := children()) < 2 and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(2)  # the workers import torch and run their initialiser
    workers = [w for w in children() if "spawn" in Path(f"/proc/{w}/cmdline").read_text(errors="replace")]
    assert len(workers) >= 2, "the workers did not start"
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()

    def alive() -> list[int]:
        out = []
        for w in workers:
            try:
                if Path(f"/proc/{w}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    out.append(w)
            except OSError:
                continue
        return out

    deadline = time.time() + 20
    while alive() and time.time() < deadline:
        time.sleep(0.2)
    left = alive()
    for w in left:  # a failing run leaves nothing behind either
        os.kill(w, signal.SIGKILL)
    assert not left, f"workers {left} outlived their parent"
