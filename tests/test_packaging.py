"""The set-up files agree with each other and with the README."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_TO_PIP = {"pytorch": "torch"}


def _name(req: str) -> str:
    return re.split(r"[<>=!~ ;\[]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    conda_names = {CONDA_TO_PIP.get(_name(d), _name(d)) for d in conda if isinstance(d, str)} - {"python", "pip"}
    assert conda_names == {_name(r) for r in project}


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make book" in readme


def test_cli_help_and_unknown_command() -> None:
    out = subprocess.run([sys.executable, "-m", "mood", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "data" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "mood", "frobnicate"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
