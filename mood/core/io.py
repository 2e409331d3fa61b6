"""Writes that never leave anything half-written (a temporary file, then a rename) and the result
tables every chapter saves (CSV and JSON).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd
import torch


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Writes ``text`` to ``path`` through a temporary file and a rename: never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_torch_save(obj: object, path: str | os.PathLike) -> Path:
    """``torch.save`` through a temporary file and a rename. The temporary name is unique, so two
    processes saving the same artifact (side-by-side jobs that share a stage) never collide."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def save_table(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Saves a results table as CSV (``.csv``) or JSON records (``.json``), atomically."""
    path = Path(path)
    if path.suffix == ".csv":
        return atomic_write_text(path, df.to_csv())
    if path.suffix == ".json":
        records = json.loads(df.reset_index().to_json(orient="records"))
        return atomic_write_text(path, json.dumps(records, indent=1))
    raise ValueError(f"save_table: use a .csv or .json path, got {path}")


def load_table(path: str | os.PathLike) -> pd.DataFrame:
    """Reads a table written by :func:`save_table` (first column becomes the index)."""
    path = Path(path)
    if path.suffix == ".csv":
        return pd.read_csv(path, index_col=0)
    if path.suffix == ".json":
        df = pd.DataFrame(json.loads(path.read_text()))
        return df.set_index(df.columns[0])
    raise ValueError(f"load_table: use a .csv or .json path, got {path}")


def save_results(df: pd.DataFrame, results_dir: str | os.PathLike, name: str) -> list[Path]:
    """Writes ``df`` as ``<results_dir>/<name>.csv`` and ``.json``, for the summary chapter and for
    anyone who wants the numbers without re-running."""
    return [save_table(df, Path(results_dir) / f"{name}.{ext}") for ext in ("csv", "json")]
