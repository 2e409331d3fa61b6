"""The README's code runs as written, and says where to add each kind of thing."""

from __future__ import annotations

import re
import warnings

import pytest

from mood.book import runner as book

README = (book.REPO / "README.md").read_text()


def _block(heading: str) -> str:
    m = re.search(rf"## {re.escape(heading)}.*?```python\n(.*?)```", README, re.S)
    assert m, f"README has no python block under '## {heading}'"
    return m.group(1)


@pytest.mark.slow
@pytest.mark.usefixtures("require_fmnist")
def test_scoring_your_own_backbone_snippet_runs_as_written(capsys: pytest.CaptureFixture) -> None:
    """The whole of Fashion-MNIST through a ResNet-18 in batches (about 20 s, 1.6 GB here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a degenerate fit would warn
        exec(compile(_block("Scoring your own backbone and OOD sets"), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert re.search(r"^mine\s+\d", out, re.M) and re.search(r"^mean\s+\d", out, re.M)


def test_readme_says_where_to_add_each_kind_of_thing() -> None:
    section = README[README.index("## Where to add"):]
    for what, home in (("score", "mood/scores.py"), ("protocol", "mood/protocols.py"),
                       ("pretext task", "mood/pretext.py"), ("chapter", "_toc.yml")):
        assert re.search(rf"\*\*A {what}\*\*[^*]*{re.escape(home)}", section, re.S), what
    assert "_build/html" in README and "book/_build/html" not in README


def test_results_block_is_rendered_from_the_committed_results() -> None:
    from mood.book.summary import readme_block

    assert readme_block(book.REPO / "results") in README  # run `python -m mood book readme` after a run of record


def test_update_readme_renders_headline_and_provenance(tmp_path) -> None:
    import json

    import pandas as pd

    from mood.book.summary import README_BEGIN, README_END, update_readme

    (tmp_path / "results" / "cpu").mkdir(parents=True)
    pd.DataFrame({"figure": ["id_accuracy", "auroc_mnist"], "value": [88.25, 99.1]}).to_csv(
        tmp_path / "results" / "cpu" / "headline.csv", index=False)
    (tmp_path / "results" / "cpu" / "provenance.json").write_text(json.dumps(
        {"commit": "0123456789abcdef", "date": "2026-11-25T21:00:00+00:00", "device": "CPU X, 2 cores",
         "torch": "2.14.1"}))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_BEGIN}\nold\n{README_END}\nrest\n")
    assert update_readme(readme, tmp_path / "results") and not update_readme(readme, tmp_path / "results")
    text = readme.read_text()
    assert "| multi-class ID test accuracy (%) | 88.25 |" in text and "commit `0123456789`" in text
    assert "`gpu`: no run of record yet" in text and "old" not in text and text.endswith("rest\n")
    assert text.count("no published edition yet") == 2
    edition = tmp_path / "book" / "edition" / "cpu"
    edition.mkdir(parents=True)
    (edition / "edition.json").write_text(json.dumps({"commit": "fedcba9876543210", "date": "2026-11-26T18:00:00+00:00"}))
    (edition / "chapter.ipynb").write_bytes(b"x" * 1_500_000)
    assert update_readme(readme, tmp_path / "results")
    assert "published edition `book/edition/cpu/` from commit `fedcba9876`, 2026-11-26, 1.5 MB" in readme.read_text()


def test_the_scaling_commands_parse_as_written() -> None:
    import shlex

    from mood.cli import _profile, build_parser
    from mood.core.protocols import expand

    section = README[README.index("## Beyond one machine"):README.index("## Tests")]
    commands = [c.replace("\\\n", " ") for c in re.findall(r"^(?:python|torchrun) .*?(?<!\\)$", section, re.M | re.S)]
    mood_args = [shlex.split(c.split(" -m mood ", 1)[1]) for c in commands if " -m mood " in c]
    assert len(mood_args) == 6
    for args in mood_args:
        ns = build_parser().parse_args(args)
        assert ns.command == "run" and expand(ns.protocol)
        _profile(ns)  # every override checked, as the command does before any work
    assert {a[a.index("--protocol") + 1] for a in mood_args} >= {"cifar10", "cifar100-near", "cifar10-one-class:all"}


def test_the_command_line_examples_parse_as_written() -> None:
    import shlex

    from mood.cli import _profile, build_parser

    section = README[README.index("## Command line"):README.index("## Scoring your own backbone")]
    stages = [shlex.split(line.split("#")[0])[3:] for line in section.splitlines()
              if re.match(r"python -m mood (pretrain|finetune|evaluate|run) --(?!help)", line)]
    assert len(stages) == 4 and any("--set" in args for args in stages)
    for args in stages:
        _profile(build_parser().parse_args(args))  # every override checked, as the command does
