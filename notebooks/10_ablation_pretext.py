# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Ablation: the pretext task
#
# **What you will learn:** whether *reconstruction* pretext tasks (BEiT-style MIM, SimMIM, MAE)
# give better OOD features than *recognition* ones (supervised classification, SimCLR) — the
# central claim of MOOD (Li et al. 2023), who report MIM ahead of classification, and both ahead of
# contrastive pretraining, on their benchmarks — and how to tell a better representation from a
# model that merely trained longer or learned the classes better.
#
# Same ViT, same fine-tuning, same Mahalanobis score on the same feature as the main chapters; only
# the pretraining changes. The design is declared below before any result: the question, the
# endpoint, the variants this profile trains and the contrasts that carry a verdict
# (`mood.experiments.studies`). On `cpu` every study runs on the near-distribution split at the main
# chapters' scale: each variant's fine-tuning seeds fine-tune one pretrained backbone, the BEiT arm is
# chapter 7's model (read from the cache, not trained again), and the endpoint — the mean AUROC over
# the four held-out classes — leaves room to move, where the multi-class mean (98-99) does not. The
# "no pretraining" arm trains from a random init for as many optimiser steps as MOOD's pretraining and
# fine-tuning together: the equal-compute baseline of chapters 6-7. SimMIM, MAE and SimCLR are the
# `gpu` profile's questions. Three things are read from each run:
#
# 1. what the pretrained features know about the classes *before* fine-tuning (linear-probe and
#    k-NN accuracy of the frozen mean token);
# 2. the fine-tuned model's ID accuracy and the training images it processed — OOD scores follow
#    closed-set accuracy (Vaze et al. 2022), so a variant that wins on AUROC only because it is
#    more accurate, or trained on more images, has not shown a better *pretext*;
# 3. the OOD AUROC, with a 95% interval over seeds, and a paired test for each declared contrast
#    beside the smallest gap the design could detect (MDE).

# %% tags=["parameters"]
profile = "cpu"  # smoke (CI, seconds) | cpu (default) | gpu
seed = 0  # first seed; the profile's seeds are used
results_dir = "results/cpu"  # where this chapter's tables are written

# %% tags=["remove-cell"]
from IPython.display import Markdown

from mood.book import findings
from mood.book.plots import ablation_tradeoff
from mood.book.runner import chapter_setup
from mood.experiments import studies

# %% tags=["hide-input"]
prof = chapter_setup(profile, seed)
Markdown(studies.get("pretext", prof).declaration(prof))

# %%
result = studies.run_chapter("pretext", prof, results_dir, seed, probe=True)
result.intervals.round(2)

# %% [markdown]
# Mean AUROC over the protocol's OOD sets: mean, standard deviation and 95% t-interval over seeds
# (clipped to [0, 100]), beside each variant's ID accuracy, the training images its stages
# processed and their training time, and the frozen-feature probes.
#
# ## What the pretraining learned before any label
#
# The linear probe and the k-NN vote read the pretrained backbone's mean token with the ID labels
# only at read-out time. Supervised classification pretraining has already seen those labels (on
# the same images), so its probes are an upper reference, not a competitor; a random network's
# probes (no pretraining) are the floor any pretext should clear.

# %%
probe_cols = [c for c in ("linear probe acc", "kNN acc") if c in result.intervals]
result.intervals[probe_cols].round(2) if probe_cols else "no probes: the protocols here have one class"

# %% [markdown]
# ## AUROC against accuracy and against compute

# %% tags=["hide-input"]
for proto, runs in result.runs.groupby("protocol", sort=False):
    ablation_tradeoff(runs).suptitle(proto, y=1.02)

# %% [markdown]
# ## The declared contrasts
#
# Each row is one variant minus another, seed by seed (both fine-tuned with the same seed), with the
# 95% t-interval of the mean difference, the paired t-test's `p`, `p (Holm)` adjusted over this
# chapter's contrasts, and `MDE`: the smallest true gap this design detects with 80% probability,
# from the measured spread of the per-seed gap. A contrast is `replicated` (or `contradicted`) only
# when its interval excludes 0 and its Holm p is below 0.05; otherwise it is inconclusive, and the
# MDE says how large a difference could have gone unseen. No call where a model classifies below
# the profile's accuracy floor.

# %%
result.gaps[["gap", "ci_lo", "ci_hi", "p", "p (Holm)", "MDE", "ID acc a", "ID acc b", "call"]].round(3)

# %% tags=["hide-input"]
print("\n".join(studies.verdict_lines(result.gaps)))

# %% [markdown]
# ## What we found
#
# Computed from this chapter's tables in this run (`mood.book.findings`):

# %% tags=["hide-input"]
Markdown(findings.say("10_ablation_pretext", results_dir))

# %% [markdown]
# Three seeds detect only gaps of several times the seed spread (the MDE column); SimMIM, MAE and
# SimCLR are the `gpu` profile's arms.
#
# ## Exercises
#
# 1. Predict the sign of `BEiT MIM − classification` on the held-out classes before reading the
#    table. Why might classification pretraining on the six known classes hurt detection of the other
#    four?
# 2. Add `"SimMIM"` to the cpu plan's pretext variants (`CPU_PLAN` in `mood/experiments/profiles.py`) and run at
#    `smoke`.
# 3. How many seeds would make the MDE half of what it is here? Use `mood.core.stats.mde`.
