# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Few-shot outlier exposure
#
# **What you will learn:** whether a few labelled OOD images beat MOOD, which uses none. MOOD
# claims its detector "even defeats the 10-shot-per-class outlier exposure OOD detection, although
# we do not include any OOD samples" (Li et al. 2023, abstract; the baseline is Fort et al. 2021).
#
# The outlier-exposure (OE) baseline starts from MOOD's own fine-tuned backbone and trains it
# `oe_epochs` more with an 11-way head: the ten clothing classes plus an "outlier" class made of k
# images from each OOD source (repeated so that they weigh as much as one clothing class). The paper's
# baseline has k images per OOD *class*; an OOD source here (MNIST, textures, ...) is one class of
# the outlier head, so k per source is the closest match. It gets
# all of MOOD's compute and more, so a MOOD win is conservative. Its score is the probability
# of the outlier class. The k images come from one part of each OOD set and every method is scored
# on the other part (so MOOD's figures here differ a little from chapter 6's, which score every image);
# texture and photo crops are split by the picture they were cut from, so no
# test crop overlaps an exposed one. One source, `digits`, gives no exposure images at all: its
# row shows whether outlier exposure carries over to OOD data it never saw.

# %% tags=["parameters"]
profile = "cpu"  # smoke (CI, seconds) | cpu (default) | gpu
seed = 0  # seed of every stage
results_dir = "results/cpu"  # where this chapter's tables are written
shots = None  # OOD images per source given to the OE baseline; None: the profile's plan (cpu: [10], gpu: [1, 5, 10])
oe_epochs = 2  # the OE baseline's extra epochs on top of MOOD's fine-tuning

# %% tags=["remove-cell"]
from IPython.display import Markdown

from mood.book import claims, findings
from mood.book.plots import auroc_points, image_grid
from mood.book.runner import chapter_setup
from mood.experiments import tables
from mood.experiments.baselines import MOOD_NO_OOD, compare_outlier_exposure, versus_baselines
from mood.experiments.resolve import resolve, seeds_of

# %% [markdown]
# Each of the profile's fine-tuning seeds (`prof.seeds`, as in chapter 6) gives one MOOD model and,
# from it, one OE model per k: the spread over seeds is training noise, which a single run cannot
# show. The table is the mean over seeds, with every model's ID accuracy in its last row (an
# argmax on the outlier class counts as an error: the 11-way models' accuracy on the ten ID classes).

# %%
prof = chapter_setup(profile, seed)
shots = list(shots or prof.plan.oe_shots)
seeds = seeds_of(prof, seed)
compared = compare_outlier_exposure(prof, tuple(shots), oe_epochs, seeds=seeds)
labels = {(MOOD_NO_OOD, "mahalanobis"): MOOD_NO_OOD}
for k in shots:
    labels |= {(f"OE {k}-shot", "outlier_class"): f"OE {k}-shot (outlier prob.)",
               (f"OE {k}-shot", "mahalanobis"): f"OE {k}-shot + Mahalanobis"}
table = compared.mean_table(labels)
tables.save("08_few_shot", table, results_dir)
table.round(2)

# %% [markdown]
# Per seed, the mean AUROC over the six OOD sets, the ID accuracy and the training seconds behind
# each model (an OE model's include the MOOD model it starts from):

# %% tags=["hide-input"]
per_seed = compared.table[["model", "score", "seed", "run key", "ID acc", "mean", "train s"]]
tables.save("08_few_shot_seeds", per_seed, results_dir)
per_seed.pivot_table(index=["model", "score"], columns="seed", values="mean", sort=False).round(2)

# %% [markdown]
# The images the 10-shot (or largest) baseline was given:

# %%
image_grid(resolve(prof, f"few-shot:{max(shots)}").protocol.ood_train, n=min(10, max(shots)), seed=seed);

# %% tags=["hide-input"]
per_model = per_seed.assign(model=[f"{m} ({s})" for m, s in zip(per_seed["model"], per_seed["score"])])
auroc_points(per_model.rename(columns={"mean": "mean AUROC"}), y="model", x="mean AUROC");

# %% [markdown]
# A difference between two means is a verdict only with a test. MOOD minus each OE variant is
# paired by seed (the OE model of a seed starts from that seed's MOOD model) on the mean AUROC over
# all six sets, and tested with a two-sided paired t-test over the seeds: when the two detectors are
# equally good (and the per-seed differences are roughly normal) it declares a difference with
# probability 5%. With three seeds the test has two degrees of freedom, so its interval is wide
# (about 2.5 standard deviations of the per-seed difference on each side): it can confirm a gap that
# is large against training noise, not a small one. With one seed (the `smoke` profile) it falls back
# to a paired bootstrap of that seed's test images, which covers the test sample only; the `test`
# column says which ran. The paper's claim is against 10-shot OE: MOOD must beat each 10-shot
# variant significantly (an intersection-union test, false-positive rate at most 5%).

# %% tags=["hide-input"]
versus = versus_baselines(compared, MOOD_NO_OOD, "mahalanobis", "mean")
tables.save("08_versus_oe", versus, results_dir)
largest = f"OE {max(shots)}-shot"
print(f"MOOD without OOD data minus {largest}: "
      + "; ".join(f"{s}: {r['mean']:+.2f} [{r['ci_lo']:+.2f}, {r['ci_hi']:+.2f}]"
                  for (_, s), r in versus.loc[[largest]].iterrows()))
versus.round(3)

# %% [markdown]
# The call on the paper's claim, by the book's one rule (`mood.book.claims`; the results page gives
# every claim's): *replicated* needs MOOD ahead of every largest-shot variant with the interval above
# 0; *contradicted*, a variant significantly ahead of MOOD; otherwise *inconclusive*, with the
# smallest gap the design could detect (`MDE`).

# %% tags=["hide-input"]
claims.table(results_dir, chapters=("08_few_shot_outlier_exposure",))[["measured here", "MDE", "ID accuracy", "call", "why"]]

# %% [markdown]
# ## What we found
#
# Computed from this chapter's tables in this run (`mood.book.findings`):

# %% tags=["hide-input"]
Markdown(findings.say("08_few_shot_outlier_exposure", results_dir))

# %% [markdown]
# The OE baseline sees OOD images from five of six sources; a source it never saw (`digits`) is the
# test of whether exposure generalises. More shots would not help there.
#
# ## Exercises
#
# 1. Predict the OE model's AUROC on `digits` with 50 shots per source (`shots = [50]`), then run
#    it at `smoke`.
# 2. Score the OE model by Mahalanobis instead of its outlier class (the `+ Mahalanobis` columns).
#    Why does the `digits` gap close?
# 3. Design a fair comparison in which MOOD also sees the k exposed images. What would it do with
#    them?
