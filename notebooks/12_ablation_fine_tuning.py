# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Ablation: fine-tuning
#
# **What you will learn:** what fine-tuning on the ID labels adds to MIM-pretrained features, and
# what label smoothing does to them. The `fine-tuned` arm is chapter 7's model (read from the cache);
# `pretrained only` scores the same pretrained backbone before any label, so on `cpu` this chapter
# trains nothing new. Label smoothing (MOOD's recipe, 0.1) is the `gpu` profile's question; chapter 3
# shows on one class why smoothing matters for a single label.
#
# **Why it matters.** MIM learns what the images look like; fine-tuning learns what separates the ID
# classes. For far OOD both may help; for held-out classes of the same domain, a feature shaped only
# by the known labels may map an unknown class onto a known one. **Limits.** Both arms share one
# pretrained backbone, so the seeds cover fine-tuning only; the pretrained-only arm has no classifier
# and so no accuracy to gate it by.

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
Markdown(studies.get("fine_tuning", prof).declaration(prof))

# %%
result = studies.run_chapter("fine_tuning", prof, results_dir, seed)
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
Markdown(findings.say("12_ablation_fine_tuning", results_dir))

# %% [markdown]
# Fine-tuning seeds share one pretrained backbone: the pretrained-only arm has no seed spread of its
# own, so its interval comes from the fine-tuned arm.
#
# ## Exercises
#
# 1. Predict whether fine-tuning helps detection of the held-out classes more than it helps far
#    OOD (chapter 6).
# 2. Add label smoothing 0.1 to the cpu plan and run at `smoke`.
# 3. Why can the pretrained-only model not be gated by the accuracy floor?
