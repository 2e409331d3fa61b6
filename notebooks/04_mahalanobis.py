# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Scoring with the Mahalanobis distance
#
# **What you will learn:** how MOOD turns features into an OOD score, what ID and OOD look like in
# feature space, and how to read score histograms and ROC curves.
#
# Each image's feature is the one the profile scores (`eval.pool`): at `cpu`, the last block's patch
# tokens flattened into one vector (16 tokens x 128 = 2,048 numbers); in MOOD's paper, the mean of the
# final, normalised patch tokens (chapters 5 and 6 score both, side by side). MOOD fits one
# Gaussian to the ID training features — a mean $\mu$ and a covariance $\Sigma$ — and scores
# $s(x) = (f(x)-\mu)^\top \Sigma^{-1} (f(x)-\mu)$. `mood` computes it by Cholesky whitening:
# $\Sigma = LL^\top$, $s(x) = \lVert L^{-1}(f(x)-\mu)\rVert^2$, one matrix product for a whole batch.

# %% tags=["parameters"]
profile = "cpu"  # smoke (CI, seconds) | cpu (default) | gpu
seed = 0  # seed of every stage
results_dir = "results/cpu"  # where this chapter's tables are written

# %% tags=["remove-cell"]
import pandas as pd
from IPython.display import Markdown

from mood.book import findings
from mood.book.plots import feature_scatter, roc_figure, score_histograms
from mood.book.runner import chapter_setup
from mood.core.metrics import results_table
from mood.experiments import tables
from mood.experiments.pipeline import run_mood, score

# %%
prof = chapter_setup(profile, seed)
run = run_mood("multi-class", prof)  # cached: chapters 2 and 3 trained this backbone
feats = run.features

# %% [markdown]
# ## Feature space
#
# The two main directions of variation of the ID training features, with ID test and OOD features
# projected on them. Two dimensions out of many hide most of the separation — the score uses all.

# %%
feature_scatter(feats.fit.features, feats.id.features, {k: v.features for k, v in feats.ood.items()}, seed=seed);

# %% [markdown]
# ## Scores
#
# Histograms of $\log_{10} s(x)$: the black ID curve should sit left of every OOD curve. Overlap is
# where errors happen; FPR95 measures the overlap at the threshold that keeps 95% of ID images.

# %%
id_s, ood_s = score(feats, "mahalanobis")
score_histograms(id_s, ood_s, xlabel="Mahalanobis distance", log_x=True);

# %%
roc_figure(id_s, ood_s);

# %% [markdown]
# ## One Gaussian or one per class?
#
# MOOD uses a single Gaussian over all ID features; Lee et al. (2018) fit one mean per class with
# a shared covariance and take the nearest. Both from the same features:

# %%
auroc_by_detector = {}
for det in ("mahalanobis", "mahalanobis_cc"):
    i, o = score(feats, det)
    auroc_by_detector[det] = results_table(i.numpy(), {k: v.numpy() for k, v in o.items()})["AUROC"]
compare = pd.DataFrame(auroc_by_detector)
tables.save("04_mahalanobis_variants", compare, results_dir)
compare.round(2)

# %% [markdown]
# ## What we found
#
# Computed from this chapter's tables in this run (`mood.book.findings`):

# %% tags=["hide-input"]
Markdown(findings.say("04_mahalanobis", results_dir))

# %% [markdown]
# One model, no seeds: the two Gaussians are compared as a description; chapter 13 tests scores over
# seeds.
#
# ## Exercises
#
# 1. Fit the Gaussian on 2,000 training images instead of 20,000 (`--set eval.max_fit=2000`). Why
#    does the covariance need about ten images per dimension?
# 2. The ROC here takes OOD as positive while FPR95 keeps 95% of ID images. Which of the two
#    numbers changes if you swap the positive class?
# 3. Predict where MNIST images fall on the feature-space scatter before running it at `smoke`.
