# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Ablation results in one place
#
# **What you will learn:** the tables of the five ablation chapters side by side, read from the
# files they wrote in this run (`results/<profile>/1?_*.csv`): mean AUROC over each protocol's OOD
# sets, mean ± standard deviation over seeds, at the profile's ablation scale; then the pretext
# comparison the book reports as a headline figure, read from the same files.

# %% tags=["parameters"]
profile = "cpu"  # smoke (CI, seconds) | cpu (default) | gpu
seed = 0  # seed of every stage
results_dir = "results/cpu"  # where the chapters wrote their tables

# %% tags=["remove-cell"]
from pathlib import Path

from IPython.display import Markdown, display

from mood.experiments.ablations import ordering_verdict, pair_verdict, seed_intervals, verdict
from mood.experiments import tables
from mood.book.runner import chapter_setup
from mood.core.stats import pair_names
from mood.book.summary import FIGURE_LABELS, headline

# %% tags=["hide-input"]
prof = chapter_setup(profile, seed)
res = Path(results_dir)
chapters = {"10_pretext": "Pretext task", "11_architecture": "Architecture", "12_fine_tuning": "Fine-tuning",
            "13_ood_metric": "OOD score", "14_masking": "Masking and pretraining length"}
missing = tables.missing(chapters, res)
assert not missing, f"run chapters {missing} first (make book runs them in order)"

# %% tags=["hide-input"]
for stem, title in chapters.items():
    display(Markdown(f"### {title}"))
    display(tables.load(stem, res))
    runs = tables.load(f"{stem}_runs", res).reset_index()
    display(Markdown("```\n" + verdict(runs, floor=prof.accuracy_floor) + "\n```"))

# %% [markdown]
# ## The headline: MIM against classification pretraining
#
# BEiT-style MIM minus supervised classification pretraining, mean AUROC, paired by seed (chapter
# 10's `10_pretext_gaps`), as `headline.csv` records it beside chapter 11's ViT-minus-ResNet gap;
# then MOOD's full ordering with its evidence. Every figure here is read from the files chapters 10
# and 11 wrote.

# %% tags=["hide-input"]
figures = headline(res, whole_book=False).set_index("figure")["value"]
gap_figures = figures[[f for f in figures.index if f.startswith(("pretext_", "architecture_"))]]
display(gap_figures.rename(lambda f: FIGURE_LABELS.get(f, f)).round(3).to_frame("value"))
gaps = tables.load("10_pretext_gaps", res)  # indexed (comparison, protocol)
intervals = tables.load("10_pretext_intervals", res)  # indexed (variant, protocol)
for proto in gaps.index.get_level_values("protocol").unique():
    result = ordering_verdict(gaps, intervals, ["BEiT MIM", "classification", "SimCLR"], proto, prof.accuracy_floor)
    acc = intervals.xs(proto, level="protocol")["ID acc"]
    display(Markdown(f"**{proto}** — MIM > classification > contrastive: {result['call']}. "
                     + "; ".join(result["evidence"]) + ". ID accuracy: "
                     + ", ".join(f"{v} {a:.1f}%" for v, a in acc.items()) + "."))

# %% [markdown]
# ## The architecture at equal compute
#
# Chapter 11's question, read from its files: with the same pretext, images and seed, and a ResNet
# whose training FLOPs per image are nearest the ViT's, which architecture detects OOD better? Each
# line is the paired gap with its 95% interval and the call at the Holm-adjusted p; no call where
# either model is under the accuracy floor.

# %% tags=["hide-input"]
arch_gaps = tables.load("11_architecture_gaps", res)
arch_intervals = seed_intervals(tables.load("11_architecture_runs", res).reset_index())
for comparison, proto in arch_gaps.index:
    a, b = pair_names(comparison)
    display(Markdown(f"**{proto}** — {pair_verdict(arch_gaps, arch_intervals, a, b, proto, prof.accuracy_floor)}."))
