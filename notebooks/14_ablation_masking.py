# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Ablation: masking
#
# **What you will learn:** whether how the BEiT-style pretraining hides patches matters: in blocks
# (BEiT's choice) or scattered at random, at BEiT's ratio 0.4. The block arm is chapter 7's
# pretrained backbone; the random arm pretrains anew on the same images and is fine-tuned with the
# same seeds. The `gpu` profile adds the ratios 0.2 and 0.6.
#
# **Why it matters.** Scattered masks leave neighbours to copy from; blocks force the model to infer
# shapes, which is the knowledge MOOD argues OOD detection needs. **Limits.** On the `cpu` model's
# 4x4 grid a block of 40% is 6 of 16 patches, one and a half quadrants, so blocks and scattered masks
# differ less than on BEiT's 14x14 grid; one pretraining per arm.

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
Markdown(studies.get("masking", prof).declaration(prof))

# %%
result = studies.run_chapter("masking", prof, results_dir, seed)
result.intervals.round(2)

# %% [markdown]
# The endpoint per variant: mean, standard deviation and 95% t-interval over seeds (clipped to
# [0, 100]), beside the model's ID accuracy, the training images it processed and its training time.

# %% tags=["hide-input"]
for proto, runs in result.runs.groupby("protocol", sort=False):
    ablation_tradeoff(runs).suptitle(proto, y=1.02)

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
Markdown(findings.say("14_ablation_masking", results_dir))

# %% [markdown]
# One ratio, two patterns, three seeds; the ratio sweep is the `gpu` profile's.
#
# ## Exercises
#
# 1. On a 4x4 grid, how many distinct block masks of 6 patches are there? Why does blockwise
#    masking matter less on small grids?
# 2. Run ratio 0.75 (MAE's) at `smoke` by adding a variant.
# 3. Predict the ID accuracy difference between the two arms.
