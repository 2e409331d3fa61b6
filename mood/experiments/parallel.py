"""Independent training runs side by side, so that a small CPU spends its cores better.

A model as small as the ``cpu`` profile's (a 128-wide ViT on 16 tokens) does not keep two cores
fully busy from one process. Measured on this 2-core machine in the run of record (commit 2ba63ea):
one fine-tuning with 2 threads trains at ~1,500-1,600 img/s, two 1-thread fine-tunings side by side
at 830-850 img/s each, ~1,680 together: +5-10%, less than a bare training-step loop suggests
(1,220 vs 1,560 img/s, 1.27x; ``benchmarks/side_by_side.py`` measures both schedules in one run).
In one run of ``benchmarks/side_by_side.py`` (two 1-epoch fine-tunings of 20,000 images) the
side-by-side schedule was 0.93x as fast, process start-up included: on 2 cores the profiles keep
``workers=1``; a machine with more cores than one small model can use is where it pays. When a chapter
needs several trainings that do not depend on each other (fine-tuning seeds, equal-compute
baselines, one-class classes), :func:`prefetch` runs them in ``workers`` processes of
``cores / workers`` threads each. The jobs are the very calls the chapter makes afterwards: their
trained backbones and features land in the artifact cache (:class:`mood.core.cache.Cache`, atomic
writes, one folder per configuration), and the chapter's own calls then load them. Prefetching is
only a schedule: with ``workers <= 1`` it does nothing and the chapter trains as before.

Floating-point sums depend on the thread count, so a model trained by a 1-thread worker differs in
its last bits from one trained with 2 threads; each is deterministic for a given ``workers``.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from mood.core.progress import progress


@dataclass(frozen=True)
class Job:
    """One call to make in a worker: ``fn(*args, **kwargs)``; ``fn`` must be importable (a module-
    level function of ``mood``) and the arguments picklable. The return value is discarded: the call
    is made for what it caches."""

    fn: Callable[..., Any]
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        if not callable(self.fn) or "<" in getattr(self.fn, "__qualname__", "<lambda>"):
            raise ValueError(f"Job {self.name!r}: fn must be a module-level function (a worker imports it), "
                             f"got {self.fn!r}")


def _die_with_parent() -> None:
    """On Linux, asks the kernel to end this worker when the process that started it dies: a chapter
    killed by a time limit leaves no orphaned workers training on (and holding a GPU)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before the request took effect
            os._exit(1)


def _init_worker(threads: int) -> None:
    _die_with_parent()
    torch.set_num_threads(threads)
    os.environ["MOOD_PROGRESS"] = "0"  # bars from several processes would interleave


def _run(job: Job) -> float:
    t0 = time.perf_counter()
    job.fn(*job.args, **job.kwargs)
    return time.perf_counter() - t0


def prefetch(jobs: Sequence[Job], workers: int, threads: int | None = None) -> dict[str, float]:
    """Runs ``jobs`` in ``workers`` processes (spawned, ``threads`` torch threads each; default: this
    process's threads split between them) and waits for all of them.

    Returns:
        Wall seconds per job name (empty when nothing ran side by side: ``workers <= 1`` or fewer
        than two jobs, in which case the caller's own calls do the training).
    Raises:
        RuntimeError: naming the job that failed (the others are cancelled); what the failed job had
        written is left as any interrupted run leaves it (resumable, never half-written).
    """
    if workers < 1:
        raise ValueError(f"prefetch: workers must be >= 1, got {workers}")
    if workers == 1 or len(jobs) < 2:
        return {}
    workers = min(workers, len(jobs))
    threads = threads or max(1, torch.get_num_threads() // workers)
    seconds: dict[str, float] = {}
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(threads,)) as pool:
        futures = {pool.submit(_run, job): job.name or f"job {i}" for i, job in enumerate(jobs)}
        for fut in progress(as_completed(futures), desc=f"side by side ({workers} workers)", total=len(futures)):
            name, error = futures[fut], fut.exception()
            if error is not None:
                pool.shutdown(wait=True, cancel_futures=True)  # the queued jobs never start
                raise RuntimeError(f"prefetch: job {name!r} failed: {error!r}") from error
            seconds[name] = fut.result()
    return seconds
