
# %% [markdown]
# # Ablation: the pretext task
#
# **What you will learn:** whether *reconstruction* pretext tasks (BEiT-style MIM, SimMIM, MAE)
# give better OOD features than *recognition* ones (supervised classification, SimCLR) — the
# central claim of MOOD (Li et al. 2023), who found MIM ahead of both contrastive and
# classification pretraining on their benchmarks.
#
# Same ViT, same fine-tuning, same Mahalanobis score; only the pretraining changes. Every run uses
# the profile's *ablation scale* (fewer images and epochs than the main chapters) so that all
# ablations fit the book's time budget, and is repeated over several seeds.

# %% tags=["parameters"]
profile = "cpu"  # smoke (CI, seconds) | cpu (default) | gpu
seed = 0  # first seed; the profile's ablation_seeds are used
results_dir = "results/cpu"  # where this chapter's tables are written
one_class = 0  # the normal class of the one-class protocol

# %% tags=["remove-cell"]
from mood.ablations import Variant, family_gap, run_grid, save_grid, verdict
from mood.artifacts import save_results
from mood.book import chapter_setup
from mood.plots import ablation_bars

# %%
prof = chapter_setup(profile, seed)
seeds = [seed + s for s in prof.ablation_seeds]
protocols = [f"one-class:{one_class}", "multi-class", "near-split"]
variants = [Variant("BEiT MIM", pretext="beit"), Variant("SimMIM", pretext="simmim"), Variant("MAE", pretext="mae"),
            Variant("classification", pretext="classification"), Variant("SimCLR", pretext="simclr"),
            Variant("no pretraining", pretext="none")]
print(f"seeds {seeds}; ablation scale: {prof.ablation}")

# %%
runs = run_grid(variants, protocols, seeds, prof)
table = save_grid(runs, results_dir, "10_pretext")
table

# %% [markdown]
# Mean AUROC over each protocol's OOD sets, mean ± standard deviation over seeds. On the one-class
# protocol, "classification" pretraining sees a single label and so learns nothing: it is the
# recognition task's best case only on the other two protocols.

# %%
ablation_bars(runs);

# %%
families = {"BEiT MIM": "reconstruction", "SimMIM": "reconstruction", "MAE": "reconstruction",
            "classification": "recognition", "SimCLR": "recognition"}
by_family = family_gap(runs, families, "reconstruction", "recognition")
save_results(by_family, results_dir, "10_pretext_families")
by_family.round(2)

# %% [markdown]
# ## Verdict
#
# Computed from the runs above: which pretraining leads on each protocol and whether its lead over
# the runner-up survives a paired t-test over seeds, then whether reconstruction beats recognition as MOOD claims — the
# family gap is taken seed by seed and called only when a paired t-test over seeds rejects "no
# difference" at 5% (so it calls a difference where there is none 5% of the time).

# %%
print(verdict(runs))
for proto, row in by_family.iterrows():
    stance = {"reconstruction": "agrees with MOOD", "recognition": "disagrees with MOOD"}.get(row["call"], "too close to call")
    print(f"{proto}: reconstruction {row['reconstruction']:.2f} vs recognition {row['recognition']:.2f} "
          f"(gap {row['gap']:+.2f} ± {row['gap std']:.2f} over seeds) -> {stance}")
