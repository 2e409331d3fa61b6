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
# **What you will learn:** every declared contrast of the five ablation chapters side by side, read
# from the files they wrote in this run (`results/<profile>/1?_*_gaps.csv`): the paired gap on the
# mean AUROC, its 95% interval, the Holm-adjusted p within its chapter, the smallest gap the design
# could detect (MDE), both models' ID accuracy and the call. Nothing here is computed anew.

# %% tags=["parameters"]
profile = "cpu"  # smoke (CI, seconds) | cpu (default) | gpu
seed = 0  # seed of every stage
results_dir = "results/cpu"  # where the chapters wrote their tables

# %% tags=["remove-cell"]
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

from mood.book import findings
from mood.book.runner import chapter_setup
from mood.book.summary import headline, headline_table
from mood.experiments import studies, tables

# %% tags=["hide-input"]
prof = chapter_setup(profile, seed)
res = Path(results_dir)
stems = {name: study.stem for name, study in studies.STUDIES.items()}
missing = tables.missing([f"{stem}_gaps" for stem in stems.values()], res)
assert not missing, f"run chapters {missing} first (make book runs them in order)"

# %% tags=["hide-input"]
gaps = pd.concat({name: tables.load(f"{stem}_gaps", res) for name, stem in stems.items()}, names=["study"])
gaps[["gap", "ci_lo", "ci_hi", "p (Holm)", "MDE", "ID acc a", "ID acc b", "call"]].round(3)

# %% [markdown]
# ## The headline figures
#
# The contrasts the book records in `headline.csv`, read from the same files.

# %% tags=["hide-input"]
display(headline_table(headline(res, whole_book=False), keep=lambda f: f.startswith(("pretext_", "architecture_"))).round(2))
for name, stem in stems.items():
    display(Markdown(f"**{name.replace('_', ' ')}** — " + "; ".join(studies.verdict_lines(tables.load(f"{stem}_gaps", res)))))

# %% [markdown]
# ## What we found
#
# Computed from this chapter's tables in this run (`mood.book.findings`):

# %% tags=["hide-input"]
Markdown(findings.say("15_ablation_results", results_dir))

# %% [markdown]
# Every call above comes from a contrast declared before the runs; a contrast that is inconclusive
# says how large a difference could have gone unseen (MDE).
#
# ## Exercises
#
# 1. Count the inconclusive contrasts. Which would become decisive with six seeds, given their MDE
#    and gap?
# 2. Why is testing only the declared contrasts, rather than the best against the runner-up, the
#    honest design?
# 3. Write down a new contrast for chapter 10 and its claimed direction before running it.
