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
# **What you will learn:** what each fine-tuning choice adds to MIM-pretrained features: none
# (pretrained features only), fine-tuning with and without label smoothing, and an *intermediate*
# stage — MOOD pretrains on ImageNet-21k and fine-tunes on it before the ID data; here the analogue
# pretrains and fine-tunes on a broader offline corpus (the protocol's images plus MNIST and
# texture/photo patches) before the ID fine-tuning. On the one-class protocol, fine-tuning means
# one-class fine-tuning (one label); elsewhere, multi-class.
#
# Multi-class runs at the main chapters' scale: chapter 2's pretrained backbone, fine-tuned as in
# chapter 3 with the profile's training seeds, scored with the profile's feature — the fine-tuning
# that matches the profile is chapter 6's own model, loaded from the cache; only the other
# smoothing is trained here. One-class and near-distribution run at the ablation scale where the
# profile's ablations train on them (`gpu`; `cpu` keeps its ablation budget for the multi-class
# protocol, chapter 10).
#
# The intermediate corpus contains MNIST and image patches, which are OOD test sets of the
# multi-class protocol, so that stage is only run where the OOD images are Fashion-MNIST classes.

# %% tags=["parameters"]
profile = "cpu"  # smoke (CI, seconds) | cpu (default) | gpu
seed = 0  # first seed; the profile's ablation_seeds are used
results_dir = "results/cpu"  # where this chapter's tables are written

# %% tags=["remove-cell"]
import pandas as pd

from mood.experiments.ablations import Variant, run_grid, save_grid, verdict
from mood.book.runner import chapter_setup
from mood.book.plots import ablation_bars

# %%
prof = chapter_setup(profile, seed)
seeds = [seed + s for s in prof.ablation_seeds]
base = [Variant("pretrained only", finetune=False),
        Variant("fine-tuned, label smoothing 0.1", label_smoothing=0.1),
        Variant("fine-tuned, no label smoothing", label_smoothing=0.0)]
intermediate = [Variant("intermediate + fine-tuned", intermediate=True)]
# the protocols whose OOD images are Fashion-MNIST classes, among those the profile's ablations train on
clean = [p for p in prof.ablation_protocols if p != "multi-class"]
print(f"ablation-scale protocols: {clean or 'none at this profile (gpu runs one-class and near-split)'}")

# %%
grids = [run_grid(base, ["multi-class"], list(prof.seeds), prof, scale="main")]
if clean:
    grids += [run_grid(base, clean, seeds, prof), run_grid(intermediate, clean, seeds, prof)]
runs = pd.concat(grids)
table = save_grid(runs, results_dir, "12_fine_tuning")
table

# %%
ablation_bars(runs);

# %% [markdown]
# ## Verdict

# %%
print(verdict(runs, floor=prof.accuracy_floor))
