# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Summary: the paper's claims beside this book's measurements
#
# **What you will learn:** which of MOOD's claims this book replicated on Fashion-MNIST, at the
# profile it was built with. Every "measured" cell is read from the result files the earlier
# chapters wrote in this run (`results/<profile>/*.csv`); every "paper" cell is quoted from
# Li et al. (2023).

# %% tags=["parameters"]
profile = "cpu"  # smoke (CI, seconds) | cpu (default) | gpu
seed = 0  # seed of every stage
results_dir = "results/cpu"  # where the chapters wrote their tables

# %% tags=["remove-cell"]
from pathlib import Path

from mood.core.io import load_table
from mood.experiments import tables
from mood.book.runner import chapter_setup
from mood.book.summary import claims_table, headline

# %% [markdown]
# A claim gets a verdict only where this setting could have replicated it: the model behind the
# numbers classifies the ID data at least as well as the profile's accuracy floor (a linear model on
# raw pixels of the same training images reaches 84.5% on the ten classes), and the one-class detector beats the raw-pixel nearest-neighbour
# baseline. Below either, the numbers measure how little the model was trained, and the cell says so
# instead of "not replicated". Where the profile trains equal-compute baselines in chapters 6 and 7
# (`gpu`: the same ViT from scratch and a small CNN, for as many optimiser steps, scored four ways),
# the multi-class and near-distribution claims are tested against them: "replicated" needs MOOD ahead
# of every one of them, each difference significant in a paired test at 5%, and the cell names the
# test and the closest baseline with the difference's 95% interval. On `cpu` those baselines are
# the equal-compute arms of chapters 10 and 11, with MOOD's three seeds, and the cell says so.

# %%
prof = chapter_setup(profile, seed)
claims = claims_table(results_dir)
tables.save("09_claims", claims, results_dir)
claims

# %% [markdown]
# ## Figures of record
#
# The headline figures as `results/<profile>/headline.csv` records them: the multi-class ones are
# means over the profile's fine-tuning seeds, with their standard deviation and 95% t-interval.

# %%
figures = headline(results_dir, whole_book=False)
figures[~figures["figure"].str.endswith("_seconds")].set_index("figure").round(2)

# %% [markdown]
# ## Wall time of each chapter
#
# Written by `python -m mood book run` after the previous full run (missing on the first one).

# %% tags=["hide-input"]
timings = Path(results_dir) / f"{tables.TIMINGS}.csv"
load_table(timings) if timings.exists() else "no timings yet: they are written when a full book run ends"
