"""The README reads in five minutes, its code and commands run as written, it says where each
module lives and where to add each kind of thing, and its results block is the record's."""

from __future__ import annotations

import re
import shlex
import warnings

import pytest
import yaml

from mood.book import runner as book

README = (book.REPO / "README.md").read_text()
# what the README leaves to the book
APPENDIX = ("book/appendix_running.md", "book/appendix_scaling.md", "book/appendix_compute.md")


def _section(text: str, heading: str) -> str:
    """The text under ``## heading`` up to the next heading of level 1 or 2."""
    start = text.index(f"\n## {heading}")
    rest = text[start + 1:]
    m = re.search(r"^#{1,2} ", rest[3:], re.M)
    return rest[:m.start() + 3] if m else rest


def _page(path: str) -> str:
    return (book.REPO / path).read_text()


def _results_block() -> str:
    from mood.book.summary import README_BEGIN, README_END

    return README[README.index(README_BEGIN):README.index(README_END) + len(README_END)]


def test_the_readme_reads_in_five_minutes() -> None:
    assert len(README.splitlines()) <= 160
    table = [line for line in _results_block().splitlines() if line.startswith("| ")]
    assert 2 <= len(table) - 1 <= 12  # the header, then at most 12 figures
    for page in APPENDIX:  # the rest is in the book, and the README names it
        assert page in README and (book.REPO / page).exists(), page


@pytest.mark.slow
@pytest.mark.usefixtures("require_fmnist")
def test_scoring_your_own_backbone_snippet_runs_as_written(capsys: pytest.CaptureFixture) -> None:
    """The whole of Fashion-MNIST through a ResNet-18 in batches (about 20 s, 1.6 GB here)."""
    block = re.search(r"```python\n(.*?)```", _section(README, "Scoring your own backbone and OOD sets"), re.S)
    assert block, "no python block under '## Scoring your own backbone and OOD sets'"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a degenerate fit would warn
        exec(compile(block.group(1), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert re.search(r"^mine\s+\d", out, re.M) and re.search(r"^mean\s+\d", out, re.M)


def test_the_zoo_snippet_loads_an_entry_in_plain_timm(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from mood.core import zoo

    block = re.search(r"```python\n(.*?)```", _section(README, "The zoo: pretrained backbones, paid for once"), re.S)
    assert block, "no python block under '## The zoo'"
    name = re.search(r'zoo/([\w-]+)/card.json', block.group(1)).group(1)
    if name not in zoo.shipped():
        pytest.skip(f"{name} is not shipped yet")
    monkeypatch.chdir(book.REPO)
    scope: dict = {}
    exec(compile(block.group(1), "README.md", "exec"), scope)
    stored = zoo.load_state(name)
    assert all(torch.equal(scope["net"].state_dict()[k], v.float()) for k, v in stored.items())


def test_readme_says_where_to_add_each_kind_of_thing() -> None:
    section = _section(README, "Where to add")
    for what, home in (("score", "mood/core/scores.py"), ("protocol", "mood/core/protocols.py"),
                       ("pretext task", "mood/core/pretext.py"), ("backbone", "mood/core/models.py"),
                       ("chapter", "_toc.yml")):
        assert re.search(rf"\*\*A {what}\*\*[^*]*{re.escape(home)}", section, re.S), what
    for registry in ("SCORES", "PROTOCOLS", "PRETEXTS", "MODEL_PRESETS"):  # each named where it lives
        assert f"`{registry}`" in section, registry
    assert "_build/html" in README and "book/_build/html" not in README


def test_the_module_map_names_every_module_by_its_layer() -> None:
    section = _section(README, "The pipeline and where each step lives")
    for layer in ("core", "experiments", "book"):
        listed = re.search(rf"\*\*`mood/{layer}/`\*\*.*?\n((?:- .*\n)+)", section)
        assert listed, f"no list of mood/{layer}/"
        named = [m for line in re.findall(r"^- ((?:`\w+\.py`(?:, )?)+):", listed.group(1), re.M)
                 for m in re.findall(r"`(\w+\.py)`", line)]  # a line may name several modules
        on_disk = sorted(f.name for f in (book.REPO / "mood" / layer).glob("*.py") if f.name != "__init__.py")
        assert sorted(named) == on_disk, f"mood/{layer}/: add a line for each new module, drop removed ones"
    for path in re.findall(r"`(mood/[\w/]+\.py)`", README + "".join(_page(p) for p in APPENDIX)):
        assert (book.REPO / path).exists(), path


def test_results_block_is_rendered_from_the_committed_results() -> None:
    from mood.book.summary import readme_block

    # run `python -m mood book readme` after a run of record
    assert _results_block() == readme_block(book.REPO / "results")


def test_the_compute_appendix_reads_its_costs_from_the_cpu_record() -> None:
    from mood.book.summary import PLAN_BEGIN, PLAN_END, cost_block

    page = _page("book/appendix_compute.md")
    # run `python -m mood book readme` after a run of record
    assert page[page.index(PLAN_BEGIN):page.index(PLAN_END) + len(PLAN_END)] == cost_block(book.REPO / "results" / "cpu")
    assert "| `06_multi_class` |" in page and "| chapters 1-9 |" in page


def test_update_readme_renders_headline_and_provenance(tmp_path) -> None:
    import json

    import pandas as pd

    from mood.book.summary import README_BEGIN, README_END, update_readme

    (tmp_path / "results" / "cpu").mkdir(parents=True)
    pd.DataFrame({"figure": ["id_accuracy", "auroc_mnist", "book_seconds"], "value": [88.25, 99.1, 5.0]}).to_csv(
        tmp_path / "results" / "cpu" / "headline.csv", index=False)
    (tmp_path / "results" / "cpu" / "provenance.json").write_text(json.dumps(
        {"commit": "0123456789abcdef", "date": "2026-11-25T21:00:00+00:00", "device": "CPU X, 2 cores",
         "torch": "2.14.1"}))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_BEGIN}\nold\n{README_END}\nrest\n")
    assert update_readme(readme, tmp_path / "results") and not update_readme(readme, tmp_path / "results")
    text = readme.read_text()
    assert "| multi-class: ID test accuracy (%) | 88.25 |" in text and "book_seconds" not in text  # README figures only
    assert "- `cpu` (`results/cpu/`): commit `0123456789`, 2026-11-25, CPU X, 2 cores, torch 2.14.1." in text
    assert "`gpu`: no run of record yet" in text and "old" not in text and text.endswith("rest\n")
    assert "chapters/" not in text  # no executed chapters stored
    (tmp_path / "results" / "cpu" / "chapters").mkdir()
    (tmp_path / "results" / "cpu" / "chapters" / "01_a.ipynb").write_text("{}")
    assert update_readme(readme, tmp_path / "results")
    assert "torch 2.14.1; executed chapters in `results/cpu/chapters/` (`PROFILE=cpu make edition` renders them)." \
        in readme.read_text()


def test_the_book_pages_the_readme_points_to_are_in_the_toc_and_valid() -> None:
    toc = yaml.safe_load((book.REPO / "_toc.yml").read_text())
    appendix = next(p for p in toc["parts"] if p["caption"] == "Appendix")
    assert [c["file"] + ".md" for c in appendix["chapters"]] == list(APPENDIX)
    for path in APPENDIX:
        text = _page(path)
        text = re.sub(r"```.*?```", "", text, flags=re.S)  # headings only outside code
        levels = [len(h) for h in re.findall(r"^(#+) ", text, re.M)]
        assert levels[0] == 1 and levels.count(1) == 1, f"{path}: one title"
        assert all(b <= a + 1 for a, b in zip(levels, levels[1:])), f"{path}: a heading level skipped"
        assert not re.search(r"\]\((?!https?:)", text), f"{path}: a relative link Sphinx would resolve"
        assert "$" not in re.sub(r"`[^`]*`", "", text), f"{path}: a dollar outside code is math to MyST"


def test_every_make_target_named_exists() -> None:
    makefile = (book.REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z-]+):", makefile, re.M))
    named = set(re.findall(r"(?:^|`)(?:PROFILE=\w+ )?make ([a-z][a-z-]*)", README + "".join(_page(p) for p in APPENDIX),
                           re.M))
    assert {"test", "book", "edition"} <= named and named <= targets, named - targets


def test_the_scaling_commands_parse_as_written() -> None:
    from mood.cli import _profile, build_parser
    from mood.core.protocols import expand

    page = _page("book/appendix_scaling.md")
    commands = [c.replace("\\\n", " ") for c in re.findall(r"^(?:python|torchrun) .*?(?<!\\)$", page, re.M | re.S)]
    mood_args = [shlex.split(c.split(" -m mood ", 1)[1]) for c in commands if " -m mood " in c]
    assert len(mood_args) == 6
    for args in mood_args:
        ns = build_parser().parse_args(args)
        assert ns.command == "run" and expand(ns.protocol)
        _profile(ns)  # every override checked, as the command does before any work
    assert {a[a.index("--protocol") + 1] for a in mood_args} >= {"cifar10", "cifar100-near", "cifar10-one-class:all"}


def test_the_command_line_examples_parse_as_written() -> None:
    from mood.cli import _profile, build_parser

    section = _section(_page("book/appendix_running.md"), "The command line")
    stages = [shlex.split(line.split("#")[0])[3:] for line in section.splitlines()
              if re.match(r"python -m mood (pretrain|finetune|evaluate|run) --(?!help)", line)]
    assert len(stages) == 4 and any("--set" in args for args in stages)
    for args in stages:
        _profile(build_parser().parse_args(args))  # every override checked, as the command does
    prose = re.sub(r"<!--.*?-->", "", README + _page("book/appendix_running.md"))
    book_commands = re.findall(r"python -m mood (book [^`#;()\n]*)", prose)
    assert len(book_commands) >= 4
    for command in book_commands:  # book readme, run --until 9, run --resume, publish, render ...
        build_parser().parse_args(shlex.split(command))
