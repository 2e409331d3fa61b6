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
# **What you will learn:** how much the score matters once the features are fixed. One BEiT-pretrained,
# fine-tuned ViT per protocol and seed; every score of `mood` computed on the same features and
# logits: Mahalanobis (one Gaussian, MOOD's choice; class-conditional), KNN, ViM, MSP, MaxLogit,
# Energy, Entropy and ODIN (which re-runs the network on perturbed inputs), all on the profile's
# feature at this scale — except ViM, which is built from the linear head and so reads the head's
# own input, the mean patch token. Then the feature under Mahalanobis: the mean patch token (what the head
# reads), the same L2-normalised, the CLS token, and MOOD's own feature (a LayerNorm on the mean of
# the patch tokens, then L2 normalisation).
# MOOD reports Mahalanobis ahead of the logit-based scores (Li et al. 2023, ablation on the OOD metric).

# %% tags=["parameters"]
profile = "cpu"  # smoke (CI, seconds) | cpu (default) | gpu
seed = 0  # first seed; the profile's ablation_seeds are used
results_dir = "results/cpu"  # where this chapter's tables are written

# %% tags=["remove-cell"]
from mood.experiments.ablations import Variant, mean_std, run_grid, save_grid, verdict
from mood.experiments import tables
from mood.book.runner import chapter_setup
from mood.book.plots import ablation_bars
from mood.core.scores import SCORES

# %%
prof = chapter_setup(profile, seed)
seeds = [seed + s for s in prof.ablation_seeds]
protocols = list(prof.ablation_protocols)  # the models of chapter 10's BEiT row: only the score changes
scores = [Variant(name, detector=name) for name in SCORES if name != "outlier_class"]  # no outlier class here
# the score rows use the profile's feature at this scale (resolve(prof, scale="ablation").profile.eval.pool; ViM the mean token); these vary it
features = [Variant("mahalanobis, mean token", pool="mean"),
            Variant("mahalanobis, mean token L2-normalised", pool="mean", normalize=True),
            Variant("mahalanobis, CLS token", pool="cls"),
            Variant("mahalanobis, MOOD's feature", pool="mood")]  # norm of the mean token, then L2 (MOOD's code)

# %%
runs = run_grid(scores + features, protocols, seeds, prof)
table = save_grid(runs, results_dir, "13_ood_metric")
table

# %%
ablation_bars(runs);

# %%
fpr = mean_std(runs, "FPR95")
tables.save("13_ood_metric_fpr95", fpr, results_dir)
fpr

# %% [markdown]
# ## Verdict

# %%
print(verdict(runs, floor=prof.accuracy_floor))
