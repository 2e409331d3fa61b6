# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Ablation: the OOD score
#
# **What you will learn:** how much the score matters once the features are fixed. Chapter 7's
# fine-tuned ViTs (one per seed, read from the cache), scored by Mahalanobis (MOOD's choice), the
# nearest neighbour, MSP and Energy on the same features and logits; the `gpu` profile adds ODIN and
# ViM. MOOD reports Mahalanobis ahead of the others (Li et al. 2023, ablation on the OOD metric): the
# contrasts below test that claim.
#
# **Why it matters.** Logit scores (MSP, Energy) read the classifier's confidence, which a held-out class
# that resembles a known one can share; feature scores (Mahalanobis, KNN) read how far the image lies
# from the training features. Which one wins says what the fine-tuned feature keeps. **Limits.** One
# backbone per seed, scored several ways: the contrasts share the models, so they are not independent
# (Holm keeps the family's error rate regardless).

# %% tags=["parameters"]
profile = "cpu"  # smoke (CI, seconds) | cpu (default) | gpu
seed = 0  # first seed; the profile's seeds are used
results_dir = "results/cpu"  # where this chapter's tables are written

# %% tags=["remove-cell"]
from IPython.display import Markdown

from mood.book import findings
from mood.book.plots import ablation_tradeoff
from mood.book.runner import chapter_setup
from mood.experiments import studies, tables
from mood.experiments.ablations import mean_std

# %% tags=["hide-input"]
prof = chapter_setup(profile, seed)
Markdown(studies.get("ood_metric", prof).declaration(prof))

# %%
result = studies.run_chapter("ood_metric", prof, results_dir, seed)
result.intervals.round(2)

# %% [markdown]
# The endpoint per variant: mean, standard deviation and 95% t-interval over seeds (clipped to
# [0, 100]), beside the model's ID accuracy, the training images it processed and its training time.

# %% tags=["hide-input"]
for proto, runs in result.runs.groupby("protocol", sort=False):
    ablation_tradeoff(runs).suptitle(proto, y=1.02)

# %% [markdown]
# FPR95 (%, lower is better), mean ± std over seeds:

# %%
fpr = mean_std(result.runs, "FPR95")
tables.save("13_ood_metric_fpr95", fpr, results_dir)
fpr

# %% [markdown]
# ## Where the scores part: each held-out class
#
# The mean hides where a score wins. Each score's AUROC on each OOD set (mean over seeds), and what
# the score reads: `features` (a distance in the backbone's feature space) or `logits` (the head's
# confidence). Chapter 7 shows which known classes the head takes each held-out class for.

# %%
sets = studies.per_set(result.runs, result.study)
tables.save("13_ood_metric_sets", sets, results_dir)
sets.round(2)

# %% [markdown]
# ## The declared contrasts
#
# One variant minus another, seed by seed, with the 95% t-interval, `p`, `p (Holm)` over this
# chapter's contrasts and `MDE` (the smallest true gap detected with 80% probability, from the
# measured spread of the per-seed gap). A call needs the interval to exclude 0 and Holm p < 0.05;
# an inconclusive contrast says no difference larger than its MDE was detectable.

# %%
result.gaps[["gap", "ci_lo", "ci_hi", "p", "p (Holm)", "MDE", "ID acc a", "ID acc b", "call"]].round(3)

# %% tags=["hide-input"]
print("\n".join(studies.verdict_lines(result.gaps)))

# %% [markdown]
# ## MOODv2: does reconstruction pretraining make the score matter less?
#
# MOODv2 (Li et al. 2024) reports that features from reconstruction pretraining leave less to the
# choice of score: the AUROC of MSP, Energy, KNN, Mahalanobis and the rest sits closer together on
# MIM features than on classification features. Here: for the BEiT-pretrained models and the
# classification-pretrained models of chapter 10 (read from the cache; nothing trains), every score
# above, seed by seed; a seed's spread is its best minus its worst AUROC over the scores, the table
# gives its mean over seeds (not the best minus the worst of the seed means), and the
# contrast is classification's spread minus BEiT's, paired by seed (positive: MIM narrower, the claim).

# %%
spread = studies.score_spread(prof, seed)
tables.save("13_score_spread", spread, results_dir)
spread[["spread a", "spread b", "gap", "ci_lo", "ci_hi", "p", "MDE", "ID acc a", "ID acc b", "call"]].round(3)

# %% [markdown]
# ## What we found
#
# Computed from this chapter's tables in this run (`mood.book.findings`):

# %% tags=["hide-input"]
Markdown(findings.say("13_ablation_ood_metric", results_dir))

# %% [markdown]
# Two ways to fail, one per kind of score. A logit score (MSP, Energy) reads only how confident the
# head is: the head has six outputs and was never shown the held-out classes, so a held-out image it
# puts in a known class with confidence scores as ID however far its features lie from that class's
# training images. A feature score (Mahalanobis, KNN) reads that distance: a held-out image whose
# features sit among a known class's scores as ID however unsure the head is. Which failure a
# held-out class meets depends on the class: the per-class table above and the line on it in "What
# we found" say which, in this run, and chapter 7 shows which known classes the head takes each
# held-out class for. A mean over the held-out classes averages the two failures away.
#
# ## Exercises
#
# 1. Predict which score is worst on the held-out classes, then read the table.
# 2. Run `vim` at `smoke` (the `gpu` profile's arm): why does it score the head's input and not
#    the tokens?
# 3. MOODv2's spread compares two pretexts. What would the spread be for a model whose scores were
#    all equal?
