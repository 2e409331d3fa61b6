# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Ablation: the architecture
#
# **What you will learn:** whether the ViT matters, or whether a convolutional network given the same
# images and optimiser steps detects OOD as well. MOOD pairs MIM with ViTs; a convolutional network
# has no patch tokens, so it cannot take BEiT's masked-token pretraining. On `cpu` the question is
# MOOD's model (chapter 7's, read from the cache) against a small CNN trained from scratch for as many
# optimiser steps as MOOD's pretraining and fine-tuning together — the equal-compute baseline of
# chapters 6-7, now with the same three seeds as MOOD's. Both are scored on the same kind of feature:
# the ViT on its last block's patch tokens, flattened; the CNN on its last feature map, flattened (the
# `tokens` pool of a network without patch tokens), so both keep where a pattern sits. The `gpu` profile
# adds a ResNet and the ViT under classification pretraining, the
# comparison of the paper. The last table gives each model's training cost in FLOPs and seconds.
#
# **Why it matters.** A detector is only as good as the feature it reads. A ViT's patch tokens keep
# where each pattern sits; a CNN's pooled feature keeps what is there. If a CNN trained as long did as
# well, MOOD's gain would come from compute, not from MIM with a transformer. **Limits.** Two models of
# similar cost, one small dataset and three seeds: a gap smaller than the MDE goes unseen, and a
# different CNN (or a ResNet with MIM) could change the answer.

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
from mood.experiments.ablations import training_cost

# %% tags=["hide-input"]
prof = chapter_setup(profile, seed)
Markdown(studies.get("architecture", prof).declaration(prof))

# %%
result = studies.run_chapter("architecture", prof, results_dir, seed)
result.intervals.round(2)

# %% [markdown]
# The endpoint per variant: mean, standard deviation and 95% t-interval over seeds (clipped to
# [0, 100]), beside the model's ID accuracy, the training images it processed and its training time.

# %% tags=["hide-input"]
for proto, runs in result.runs.groupby("protocol", sort=False):
    ablation_tradeoff(runs).suptitle(proto, y=1.02)

# %% [markdown]
# ## What each model cost

# %%
cost = training_cost(result.runs, list(result.study.variants), prof)
tables.save("11_architecture_cost", cost, results_dir)
cost.round(2)

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
# ## What we found
#
# Computed from this chapter's tables in this run (`mood.book.findings`):

# %% tags=["hide-input"]
Markdown(findings.say("11_ablation_architecture", results_dir))

# %% [markdown]
# A ResNet with MIM would need a pretext it can run (SimMIM-style); the CNN here has no pretraining,
# so this is MOOD against a convolutional network at the same compute, not ViT against CNN under the
# same recipe.
#
# ## Exercises
#
# 1. Both models are scored on their last feature map, flattened. Run the CNN with `--pool mean`
#    (global average pooling, what a classifier's head reads) at `smoke`: what does pooling discard?
# 2. Compare the two models' ID accuracy. Would a gap in accuracy explain a gap in AUROC (Vaze et
#    al. 2022)?
# 3. Read the cost table: which model used more FLOPs per image?
