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
# **What you will learn:** whether the ViT matters, or whether a convolutional network trained the
# same way does as well. MOOD pairs MIM with ViTs; a ResNet has no patch tokens, so it cannot take
# BEiT's masked-token pretraining, and is compared on the pretext tasks both can run.
#
# **At equal compute.** Both architectures see the same images for the same epochs, so what each one
# costs is its training step. A ResNet that keeps the full 28 px resolution is expensive: at half
# width (`resnet10_narrow`) a step costs 4.5x the FLOPs of the CPU profile's ViT, and a comparison
# at equal epochs would hand it 4.5x the compute. The chapter therefore takes the ResNet preset
# whose training FLOPs per image are nearest the profile's ViT (`mood.core.models.nearest_in_flops`) and
# prints both costs, in FLOPs and in seconds, in the last table.

# %% tags=["parameters"]
profile = "cpu"  # smoke (CI, seconds) | cpu (default) | gpu
seed = 0  # first seed; the profile's ablation_seeds are used
results_dir = "results/cpu"  # where this chapter's tables are written
resnet = None  # None: the ResNet preset nearest the profile's ViT in training FLOPs; or a preset name

# %% tags=["remove-cell"]
from mood.experiments.ablations import (Variant, pair_gaps, pair_verdict, run_grid, save_grid, seed_intervals, training_cost,
                            verdict)
from mood.experiments import tables
from mood.book.runner import chapter_setup
from mood.core.models import nearest_in_flops, resnet_presets
from mood.book.plots import ablation_bars

# %%
prof = chapter_setup(profile, seed)
seeds = [seed + s for s in prof.ablation_seeds]
# classification pretraining needs two classes or more; the ViT rows are chapter 10's models, from the cache
protocols = [p for p in prof.ablation_protocols if not p.startswith("one-class")]
resnet = resnet or nearest_in_flops(prof.model, resnet_presets())
print(f"ViT: {prof.model.name}; ResNet: {resnet}")
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

# %% [markdown]
# The best variant overall is one question; the chapter's is narrower: with the same pretext, the
# same images and the same seed, does the ViT detect OOD better than the ResNet? Each row below is
# that difference seed by seed, with its 95% interval and a paired t-test; `p (Holm)` adjusts the
# two rows for each other, so the calls printed under the table are wrong with at most 5%
# probability when the architectures are equal. A call needs both models above the accuracy floor.

# %%
pairs = [("ViT + classification", "ResNet + classification"), ("ViT, no pretraining", "ResNet, no pretraining")]
gaps = pair_gaps(runs, pairs)
tables.save("11_architecture_gaps", gaps, results_dir)
intervals = seed_intervals(runs)
for proto in protocols:
    for a, b in pairs:
        print(f"{proto}: {pair_verdict(gaps, intervals, a, b, proto, prof.accuracy_floor)}")
gaps.round(3)

# %% [markdown]
# What each variant cost: the model's FLOPs per training image, the images its pretraining and
# fine-tuning saw, their product, and the training seconds the logs measured on this machine
# (seconds also reflect how well each kind of layer runs on the device, FLOPs do not).

# %%
cost = training_cost(runs, variants, prof).round(2)
tables.save("11_architecture_cost", cost, results_dir)
cost
