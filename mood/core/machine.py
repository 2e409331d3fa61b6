"""Where and from what code something ran: the commit, the machine, the time. Records of book runs
(:mod:`mood.book.records`) and zoo cards (:mod:`mood.experiments.zoo`) both say it this way."""

from __future__ import annotations

import os
from pathlib import Path

import torch


def git_output(*args: str, cwd: Path) -> str | None:
    """``git args`` run in ``cwd``: its stripped stdout, or None when git fails (no git, not a
    repository, an unknown commit)."""
    import subprocess

    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def device_name() -> str:
    """The accelerator's name, else the CPU's model and core count."""
    import platform

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def utc_now() -> str:
    """Now, in UTC, to the second (ISO 8601): the time stamp of every record."""
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def code_commit(repo: Path) -> tuple[str, bool]:
    """The commit whose code runs in ``repo`` ("unknown" without git) and whether ``mood/`` or
    ``notebooks/`` differ from it. A copy of the tree whose git history is missing or another
    commit's (a device machine is sent the session's first checkout beside the current files; an
    unpacked archive) names the commit whose tree it is in ``MOOD_COMMIT``: that wins, and the copy
    is taken to be that commit's tree."""
    stated = os.environ.get("MOOD_COMMIT")
    if stated:
        return stated, False
    status = git_output("status", "--porcelain", "--", "mood", "notebooks", cwd=repo)
    return git_output("rev-parse", "HEAD", cwd=repo) or "unknown", bool(status)
