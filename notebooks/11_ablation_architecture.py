
# %% [markdown]
# # Ablation: the architecture
#
# **What you will learn:** whether the ViT matters, or whether a convolutional network trained the
# same way does as well. MOOD pairs MIM with ViTs; a ResNet has no patch tokens, so it cannot take
# BEiT's masked-token pretraining, and is compared on the pretext tasks both can run.

# %% tags=["parameters"]
profile = "cpu"  # smoke (CI, seconds) | cpu (default) | gpu
seed = 0  # first seed; the profile's ablation_seeds are used
results_dir = "results/cpu"  # where this chapter's tables are written
resnet = "resnet10_narrow"  # resnet10_narrow (CPU), resnet10_small or resnet18_small

# %% tags=["remove-cell"]
from mood.ablations import Variant, run_grid, save_grid, verdict
from mood.artifacts import save_results
from mood.book import chapter_setup
from mood.plots import ablation_bars

# %%
prof = chapter_setup(profile, seed)
seeds = [seed + s for s in prof.ablation_seeds]
# classification pretraining needs two classes or more; the ViT rows are chapter 10's models, from the cache
protocols = [p for p in prof.ablation_protocols if not p.startswith("one-class")]
variants = [Variant("ViT + BEiT MIM", pretext="beit"),
            Variant("ViT + classification", pretext="classification"),
            Variant("ViT, no pretraining", pretext="none"),
            Variant("ResNet + classification", pretext="classification", model=resnet),
            Variant("ResNet, no pretraining", pretext="none", model=resnet)]

# %%
runs = run_grid(variants, protocols, seeds, prof)
table = save_grid(runs, results_dir, "11_architecture")
table

# %%
ablation_bars(runs);

# %% [markdown]
# ## Verdict

# %%
print(verdict(runs, floor=prof.accuracy_floor))
acc = runs.groupby("variant", sort=False)[["ID acc", "train s"]].mean().round(1)  # training time from the logs
save_results(acc, results_dir, "11_architecture_cost")
acc
