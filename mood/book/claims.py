"""The claims the book tests, one registry: each claim of MOOD, Unleashing Mask and MOODv2, the figure
its paper reports (cited, never ours), where its evidence lies in a run's result tables, and the
three-way call on it.

A claim's evidence is a paired effect in the claimed direction with its 95% interval, the smallest
effect the design could detect (MDE, :func:`mood.core.stats.mde`), the ID accuracy of the models
behind it and the trivial baseline it must clear. The call is one of ``replicated`` /
``contradicted`` / ``inconclusive`` (:func:`mood.experiments.verdicts.call`), with the reason when
inconclusive; a claim whose chapter did not run, or that the profile's plan does not ask, is
inconclusive and says so. :func:`table` is the results page and chapter 9's table.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from mood.core.io import atomic_write_text
from mood.core.stats import ALPHA, holm, mde, pair_label, paired_test
from mood.experiments import chapters as chapter_registry
from mood.experiments import papers, tables
from mood.experiments.profiles import PROFILES
from mood.experiments.verdicts import CODE_ONLY, Outcome, Validity, call, gate, paired

MOOD, UM, MOODV2 = "MOOD (Li et al. 2023)", "Unleashing Mask (Zhu et al. 2023)", "MOODv2 (Li et al. 2024)"
CALLS: tuple[Outcome, ...] = ("replicated", "contradicted", "inconclusive")


@dataclass(frozen=True)
class Evidence:
    """What a run says about a claim.

    Attributes:
        measured: the effect in words: ``"+1.20 AUROC, 95% CI [+0.40, +2.00]"`` and what it compares.
        mde: the smallest effect the design detects at 80% power (NaN: one seed, no test).
        accuracy: the ID accuracy of the models behind it, in words.
        baseline: the trivial baseline, in words ("" where none applies).
        call: replicated / contradicted / inconclusive.
        why: the reason of an inconclusive call ("" otherwise).
    """

    measured: str
    mde: float
    accuracy: str
    baseline: str
    call: Outcome
    why: str = ""


@dataclass(frozen=True)
class Claim:
    """One claim: ``paper``, the ``claim`` in words, what the paper ``reported`` (cited), the
    ``chapter`` that tests it and ``read``, which turns a results folder into :class:`Evidence`
    (None when the folder lacks the tables)."""

    paper: str
    claim: str
    reported: str
    chapter: str
    read: Callable[[Path], Evidence | None]


def _load(res: Path, name: str) -> pd.DataFrame | None:
    return tables.load(name, res) if tables.exists(name, res) else None


def _words(effect: float, lo: float, hi: float, what: str, unit: str = "AUROC") -> str:
    return f"{what}: " + paired(effect, lo, hi, unit=unit, says=None)


def _one_call(lo: float, hi: float, p_holm: float | None = None) -> tuple[Outcome, str]:
    verdict = call(lo, hi, +1, p_holm)
    return verdict.outcome, verdict.reason


def _joint(outcomes: list[Outcome]) -> Outcome:
    """Several contrasts that must all hold (an intersection-union test): replicated only when every
    one is, contradicted when any is."""
    if all(o == "replicated" for o in outcomes):
        return "replicated"
    return "contradicted" if "contradicted" in outcomes else "inconclusive"


def _one_class(res: Path) -> Evidence | None:
    t = _load(res, "05_one_class")
    if t is None or "pixel 1-NN AUROC" not in t:
        return None
    per_class = t.drop(index=[i for i in t.index if str(i).startswith("mean")])
    d = (per_class["AUROC"] - per_class["pixel 1-NN AUROC"]).to_numpy()
    test = paired_test(d)
    outcome, why = _one_call(test["ci_lo"], test["ci_hi"])
    wins = int((d > 0).sum())
    return Evidence(_words(test["mean"], test["ci_lo"], test["ci_hi"], "MOOD minus raw-pixel 1-NN, paired over the "
                           f"{len(d)} classes") + f"; ahead on {wins} of {len(d)} classes; mean AUROC "
                    f"{t.loc['mean', 'AUROC']:.1f} against {papers.ONE_CLASS_FMNIST[papers.ONE_CLASS_BEST]}, the best "
                    f"published without external data ({papers.ONE_CLASS_BEST})",
                    mde(test["std"], test["seeds"]), "one label: no classifier",
                    f"raw-pixel 1-NN, mean AUROC {t.loc['mean', 'pixel 1-NN AUROC']:.1f}", outcome, why)


def _versus(stem: str, validity: str, what: str, keep: Callable[[pd.DataFrame], pd.DataFrame] = lambda t: t,
            studies: tuple[str, ...] = ()) -> Callable[[Path], Evidence | None]:
    """Evidence from a chapter's comparison with baselines (:func:`mood.experiments.baselines.versus_baselines`):
    replicated when MOOD beats every one (an intersection-union test, each at 5%), contradicted when one
    beats MOOD at the Holm-adjusted level, no verdict when MOOD or a baseline is under the accuracy
    floor or a comparison has one seed (a bootstrap of test images does not cover training). Where
    the profile trains no such baselines in that chapter, the studies' equal-compute contrasts
    ``studies`` answer it."""
    def read(res: Path) -> Evidence | None:
        duel, v = _load(res, stem), _load(res, validity)
        if duel is None:
            if studies:
                if (e := _studies(res, studies, f"{what}; asked in the studies' equal-compute arms")) is not None or v is None:
                    return e
                numbers = sorted({chapter_registry.get(tables.get(spec.split(":")[0]).chapter).number for spec in studies})
                chapters = [str(n) for n in numbers]
                return Evidence(f"asked by the equal-compute contrasts of chapters {'-'.join(chapters)}, which run after "
                                "this one: the results page gives the call", float("nan"), "", "", "inconclusive",
                                f"its evidence (chapters {'-'.join(chapters)}) is not in this results folder yet")
            if v is not None:  # the chapter ran; its profile's plan trains no baselines there
                return Evidence("not asked at this profile: its plan trains no equal-compute baselines in this chapter "
                                "(chapters 10-11 ask it on the near split)", float("nan"), "", "", "inconclusive",
                                "not asked at this profile")
            return None
        duel = keep(duel.reset_index().set_index("baseline"))
        closest = duel.iloc[int(duel["mean"].to_numpy().argmin())]
        seeds = duel["seeds"].fillna(1).astype(int) if "seeds" in duel else pd.Series(1, index=duel.index)
        p_holm = holm(duel["p"].to_numpy())
        beaten = bool((duel["ci_lo"] > 0).all())
        beats_mood = bool(((duel["ci_hi"] < 0) & (p_holm < ALPHA)).any())
        joint = "replicated" if beaten else "contradicted" if beats_mood else "inconclusive"
        why = "not every baseline is beaten significantly"
        floor = float(v.iloc[0]["floor"]) if v is not None and pd.notna(v.iloc[0]["floor"]) else None
        if (seeds < 2).any():
            joint, why = "inconclusive", "one training seed per baseline: the test covers test images, not training"
        if v is not None and not bool(v.iloc[0]["ok"]):  # the accuracy floor: no verdict on this claim
            joint, why = "inconclusive", Validity.read(v.iloc[0]).reason
        elif floor is not None and "ID acc" in duel and (under := gate(duel["ID acc"].groupby(level=0).mean().to_dict(), floor)):
            joint, why = "inconclusive", under.removeprefix("no verdict: ") + " (baselines)"
        acc = f"{v.iloc[0]['id_accuracy']:.1f}%" if v is not None else "not recorded"
        n = int(closest["seeds"]) if pd.notna(closest.get("seeds", np.nan)) else 1
        return Evidence(_words(closest["mean"], closest["ci_lo"], closest["ci_hi"],
                               f"{what} minus the closest of {len(duel)} ({closest.name}, {closest['score']})")
                        + f" ({closest['test']})", mde(closest["std"], n) if n >= 2 else float("nan"),
                        acc, "", joint, why if joint == "inconclusive" else "")
    return read


def _gaps(res: Path, stem: str) -> pd.DataFrame | None:
    return _load(res, f"{stem}_gaps")


def _studies(res: Path, contrasts: tuple[str, ...], what: str = "") -> Evidence | None:
    """Evidence from declared contrasts (``"stem:a − b"``) of the ablation studies, on every protocol
    they ran on: every one must be replicated (an intersection-union test); the effect shown is the
    smallest."""
    rows = []
    for spec in contrasts:
        stem, comparison = spec.split(":", 1)
        g = _gaps(res, stem)
        if g is None:
            return None
        g = g.reset_index()
        g = g[g["comparison"] == comparison]
        if g.empty:
            return Evidence(f"{comparison}: not asked at this profile", float("nan"), "", "", "inconclusive",
                            "the profile's plan does not train both arms")
        rows += [r for _, r in g.iterrows()]
    outcomes = [str(r["call"]).split(":")[0] for r in rows]
    weakest = min(rows, key=lambda r: r["gap"])
    accuracy = "; ".join(f"{r['comparison']}: {r['ID acc a']:.1f}% / {r['ID acc b']:.1f}%" if np.isfinite(r["ID acc b"])
                         else f"{r['comparison']}: {r['ID acc a']:.1f}% / no classifier" for r in rows)
    why = "; ".join(str(r["call"]).split(": ", 1)[1] for r in rows if ": " in str(r["call"]))
    joint = _joint([o if o in CALLS else "inconclusive" for o in outcomes])
    return Evidence(_words(weakest["gap"], weakest["ci_lo"], weakest["ci_hi"],
                           (what + "; " if what else "") + f"{weakest['comparison']} ({weakest['protocol']})")
                    + (f", Holm p = {weakest['p (Holm)']:.3f}" if pd.notna(weakest["p (Holm)"]) else ""),
                    float(weakest["MDE"]), accuracy, "", joint, why if joint == "inconclusive" else "")


def _study(*contrasts: str) -> Callable[[Path], Evidence | None]:
    return lambda res: _studies(res, contrasts)


def _unleash(comparison: str) -> Callable[[Path], Evidence | None]:
    """Evidence from chapter 16's paired effects: clean labels, Energy AUROC, the first backbone."""
    def read(res: Path) -> Evidence | None:
        e, runs = _load(res, "16_unleash_effect"), _load(res, "16_unleash_runs")
        if e is None:
            return None
        e = e.reset_index()
        r = e[(e["comparison"] == comparison) & (e["condition"] == "clean") & (e["score"] == "energy")]
        if r.empty:
            return Evidence(f"{comparison}: not run at this profile", float("nan"), "", "", "inconclusive",
                            "the profile does not run this method")
        r = r.iloc[0]
        p_holm = r.get("p (Holm)", float("nan"))  # Holm over the chapter's primary family (runs before it had none)
        outcome, why = _one_call(r["ci_lo"], r["ci_hi"], float(p_holm) if np.isfinite(p_holm) else None)
        acc = ""
        if runs is not None:
            last = runs.reset_index()
            last = last[(last["condition"] == "clean") & (last["method"] == "baseline (last epoch)")
                        & (last["model"] == r["model"])]
            acc = f"final model {last['ID acc'].mean():.1f}%"
        return Evidence(_words(r["Δ"], r["ci_lo"], r["ci_hi"], f"{comparison}, Energy AUROC, clean labels, {r['model']}"),
                        mde(r["std"], int(r["seeds"])), acc, "", outcome, why)
    return read


def _moodv2(res: Path) -> Evidence | None:
    s = _load(res, "13_score_spread")
    if s is None:
        return None
    r = s.reset_index().iloc[0]  # the profile's first ablation protocol
    outcome, _, why = str(r["call"]).partition(": ")  # score_spread's call: the floor already applied
    return Evidence(_words(r["gap"], r["ci_lo"], r["ci_hi"], f"spread across scores, {r['comparison']} ({r['protocol']})"),
                    float(r["MDE"]), f"{r['ID acc a']:.1f}% / {r['ID acc b']:.1f}%", "",
                    outcome if outcome in CALLS else "inconclusive", why)  # type: ignore[arg-type]


CLAIMS: tuple[Claim, ...] = (
    Claim(MOOD, "one-class: MIM pretraining + Mahalanobis beats a detector that learned nothing (raw-pixel 1-NN)",
          "+5.7 AUROC over the previous state of the art (CIFAR-10/100, ImageNet-30; ImageNet-21k pretraining)",
          "05_one_class", _one_class),
    Claim(MOOD, "multi-class: MIM + Mahalanobis beats the alternatives at the same data",
          "+3.0 AUROC over the previous state of the art", "06_multi_class",
          _versus("06_versus_baselines", "06_validity", "MOOD, far-OOD mean AUROC")),
    Claim(MOOD, "near distribution: unseen classes of the same domain are detected better",
          "+2.1 AUROC over the previous state of the art", "07_near_distribution",
          _versus("07_versus_baselines", "07_validity", "MOOD, held-out classes",
                  studies=("10_pretext:" + pair_label("BEiT MIM", "no pretraining (equal compute)"),
                           "11_architecture:" + pair_label("ViT + BEiT MIM", "CNN (equal compute)")))),
    Claim(MOOD, "MOOD, with no OOD data, beats 10-shot outlier exposure",
          "beats Fort et al. (2021)'s 10-shot OE", "08_few_shot_outlier_exposure",
          _versus("08_versus_oe", "06_validity", "MOOD, mean AUROC",
                  keep=lambda t: t[t.index.str.extract(r"OE (\d+)-shot", expand=False).astype(float).to_numpy()
                                   == t.index.str.extract(r"OE (\d+)-shot", expand=False).astype(float).max()])),
    Claim(MOOD, "MIM pretraining beats classification pretraining", "MIM ahead of classification and contrastive",
          "10_ablation_pretext", _study("10_pretext:" + pair_label("BEiT MIM", "classification"))),
    Claim(MOOD, "the ViT with MIM beats a convolutional network", "ViT ahead of ResNet", "11_ablation_architecture",
          _study("11_architecture:" + pair_label("ViT + BEiT MIM", "CNN (equal compute)"))),
    Claim(MOOD, "fine-tuning on the ID labels improves the pretrained features", "fine-tuning ahead of none",
          "12_ablation_fine_tuning", _study("12_fine_tuning:" + pair_label("fine-tuned", "pretrained only"))),
    Claim(MOOD, "Mahalanobis is the best score on MOOD's features", "Mahalanobis ahead of the other scores",
          "13_ablation_ood_metric", _study(*("13_ood_metric:" + pair_label("mahalanobis", s) for s in ("knn", "msp", "energy")))),
    Claim(MOOD, "BEiT's block masking beats random masking", "(BEiT, Bao et al. 2022: blockwise masking)",
          "14_ablation_masking", _study("14_masking:" + pair_label("block, ratio 0.4", "random, ratio 0.4"))),
    Claim(UM, "an intermediate training stage detects OOD better than the final model",
          "intermediate stages ahead of the last on CIFAR-10", "16_unleashing_mask", _unleash("val-OOD epoch vs last")),
    Claim(UM, "UM's loss floor recovers that ability from the final model",
          papers.UM_ENERGY.words("Energy + UM"), "16_unleashing_mask", _unleash("UM vs last")),
    Claim(MOODV2, "reconstruction pretraining narrows the spread of AUROC across score functions",
          "MIM features less sensitive to the score than classification features", "13_ablation_ood_metric", _moodv2),
)


def _code_only(res: Path) -> bool:
    """Whether the run's profile exercises the code only (no accuracy floor: ``smoke``), from its
    provenance, else from chapter 6's validity row."""
    if (res / "provenance.json").exists():
        name = json.loads((res / "provenance.json").read_text()).get("profile")
        if name in PROFILES:
            return PROFILES[name].accuracy_floor is None
    v = _load(res, "06_validity")
    return v is not None and pd.isna(v.iloc[0]["floor"])


def table(results_dir: str | os.PathLike, chapters: tuple[str, ...] | None = None) -> pd.DataFrame:
    """One row per claim (of ``chapters``, default all): ``paper``, ``claim``, ``reported`` (the
    paper's, cited), ``measured here``, ``MDE``, ``ID accuracy``, ``trivial baseline``, ``call``,
    ``why`` (an inconclusive call's reason) and ``chapter``. A claim whose tables are missing is
    inconclusive: "not run"."""
    res = Path(results_dir)
    code_only = _code_only(res)
    rows = []
    for c in CLAIMS:
        if chapters is not None and c.chapter not in chapters:
            continue
        try:
            e = c.read(res) or Evidence("not run", float("nan"), "", "", "inconclusive", f"chapter {c.chapter[:2]} did not run")
        except KeyError as err:  # a run older than this reader (e.g. a published edition): its tables lack a column
            e = Evidence("not readable", float("nan"), "", "", "inconclusive",
                         f"the tables of this run lack {err} (written before this claim was read this way)")
        if code_only and e.measured not in ("not run", "not readable"):
            e = replace(e, call="inconclusive", why=f"no verdict: {CODE_ONLY}")
        rows.append({"paper": c.paper, "claim": c.claim, "reported": c.reported, "measured here": e.measured,
                     "MDE": e.mde, "ID accuracy": e.accuracy, "trivial baseline": e.baseline, "call": e.call,
                     "why": e.why, "chapter": c.chapter})
    return pd.DataFrame(rows).set_index("claim")


def markdown(claims: pd.DataFrame, link: Callable[[str], str] = lambda ch: f"chapter {int(ch[:2])}") -> str:
    """A :func:`table` as a Markdown table whose cells are never cut, the call in bold."""
    head = "| claim | paper reported | measured here | MDE | ID accuracy | trivial baseline | call | chapter |"
    lines = [head, "|" + "---|" * 8]
    for claim, r in claims.iterrows():
        mde_text = "—" if pd.isna(r["MDE"]) else f"{r['MDE']:.2f}"
        verdict = f"**{r['call']}**" + (f" ({r['why']})" if r["why"] else "")
        cells = [f"{claim} — *{r['paper']}*", r["reported"], r["measured here"], mde_text, r["ID accuracy"] or "—",
                 r["trivial baseline"] or "—", verdict, link(r["chapter"])]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


RESULTS_FILE = Path("book") / "_results.md"  # included by book/results.md, the page after the introduction


def page(results_dir: str | os.PathLike | None) -> str:
    """The results page's body: every claim's call, read from ``results_dir`` (a run of record, or a
    published edition's results); a note when there is none."""
    res = Path(results_dir) if results_dir is not None else None
    if res is None or not (res / "provenance.json").exists():
        return "No run of record in this checkout yet: `make book` (or `make edition`) writes this page.\n"
    record = json.loads((res / "provenance.json").read_text())
    head = (f"Profile `{record.get('profile', res.name)}`, commit `{str(record.get('commit', ''))[:10]}`, "
            f"{str(record.get('date', ''))[:10]}. Each call links to the chapter that makes it.\n\n")
    return head + markdown(table(res), link=lambda ch: f"[{int(ch[:2])}](chapters/{ch}.ipynb)") + "\n"


def write_page(root: Path, results_dir: str | os.PathLike | None) -> Path:
    """Writes :func:`page` into ``root/book/_results.md``."""
    return atomic_write_text(Path(root) / RESULTS_FILE, page(results_dir))
