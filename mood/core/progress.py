"""Progress bars for long work: tqdm (a widget in JupyterLab), off when ``MOOD_PROGRESS=0``.

The book runner turns them off, so executed notebooks hold results rather than bar redraws.
"""

from __future__ import annotations

import os
from typing import Iterable, TypeVar

T = TypeVar("T")


def enabled() -> bool:
    return os.environ.get("MOOD_PROGRESS", "1") != "0"


def progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterable[T]:
    """``items`` wrapped in a tqdm bar (or returned as they are when progress is off)."""
    if not enabled():
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, total=total, leave=False, mininterval=1.0)
