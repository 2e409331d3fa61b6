# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Ablation: masking and pretraining length
#
# **What you will learn:** how the BEiT-style pretraining depends on how much is hidden (mask ratio
# 0.2 to 0.75), how it is hidden (blocks, as BEiT, or scattered patches) and how long it runs.
# Scored on the near-distribution protocol, the one where the representation matters most, where
# the profile's ablations train on it (`gpu`); on `cpu`, on the multi-class protocol, whose block
# 0.4 row is chapter 10's BEiT model. Each setting pretrains anew for every seed, so `cpu` runs a
# small sweep (BEiT's ratio, MAE's 0.75, random instead of block masking) and `gpu` the full one
# (ratios 0.2 to 0.75, and half and twice the pretraining).

# %% tags=["parameters"]
profile = "cpu"  # smoke (CI, seconds) | cpu (default) | gpu
seed = 0  # first seed; the profile's ablation_seeds are used
results_dir = "results/cpu"  # where this chapter's tables are written

# %% tags=["remove-cell"]
import seaborn as sns

from mood.experiments.ablations import Variant, run_grid, save_grid, verdict
from mood.book.runner import chapter_setup

# %%
prof = chapter_setup(profile, seed)
seeds = [seed + s for s in prof.ablation_seeds]
protocol = "near-split" if "near-split" in prof.ablation_protocols else prof.ablation_protocols[0]
epochs = prof.ablation.pretrain["epochs"]
full = prof.name != "cpu"  # the sweep the cpu budget cannot hold (see above)
variants = [*(Variant(f"block, ratio {r}", pretext="beit", mask_ratio=r, mask_kind="block")
              for r in ((0.2, 0.4, 0.6, 0.75) if full else (0.4, 0.75))),
            Variant("random, ratio 0.4", pretext="beit", mask_ratio=0.4, mask_kind="random")]
if full:
    variants += [Variant(f"block 0.4, {max(1, epochs // 2)} epochs", pretext="beit", mask_ratio=0.4,
                         pretrain_epochs=max(1, epochs // 2)),
                 Variant(f"block 0.4, {2 * epochs} epochs", pretext="beit", mask_ratio=0.4, pretrain_epochs=2 * epochs)]
print(f"protocol {protocol}; seeds {seeds}; {len(variants)} settings")

# %%
runs = run_grid(variants, [protocol], seeds, prof)
table = save_grid(runs, results_dir, "14_masking")
table

# %%
ax = sns.pointplot(data=runs, y="variant", x="AUROC", errorbar="sd", linestyles="none")
ax.set_xlabel(f"mean AUROC on {protocol}");

# %% [markdown]
# ## Verdict

# %%
print(verdict(runs, floor=prof.accuracy_floor))
