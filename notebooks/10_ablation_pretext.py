# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Ablation: the pretext task
#
# **What you will learn:** whether *reconstruction* pretext tasks (BEiT-style MIM, SimMIM, MAE)
# give better OOD features than *recognition* ones (supervised classification, SimCLR) — the
# central claim of MOOD (Li et al. 2023), who report MIM ahead of classification, and both ahead of
# contrastive pretraining, on their benchmarks — and how to tell a better representation from a
# model that merely trained longer or learned the classes better.
#
# Same ViT, same fine-tuning, same Mahalanobis score on the same feature as the main chapters; only
# the pretraining changes (and with it one fine-tuning setting: without pretraining there is no
# layer-wise lr decay, which would only slow the random lower layers, as for chapter 6's baselines). Every variant pretrains and fine-tunes on the same sample of ID training
# images (the profile's *ablation scale*: 20,000 images on `cpu`), each seed trains every stage
# anew, and the comparisons are paired by seed. Three things are read from each run:
#
# 1. what the pretrained features know about the classes *before* fine-tuning (linear-probe and
#    k-NN accuracy of the frozen mean token);
# 2. the fine-tuned model's ID accuracy and the training images it processed — OOD scores follow
#    closed-set accuracy (Vaze et al. 2022), so a variant that wins on AUROC only because it is
#    more accurate, or trained on more images, has not shown a better *pretext*;
# 3. the OOD AUROC, with a 95% interval over seeds and a paired test for every comparison.

# %% tags=["parameters"]
profile = "cpu"  # smoke (CI, seconds) | cpu (default) | gpu
seed = 0  # first seed; the profile's ablation_seeds are used
results_dir = "results/cpu"  # where this chapter's tables are written

# %% tags=["remove-cell"]
from mood.experiments.ablations import Variant, family_gap, ordering_verdict, pair_gaps, run_grid, save_grid, seed_intervals
from mood.experiments import tables
from mood.book.runner import chapter_setup
from mood.book.plots import ablation_tradeoff
from mood.experiments.verdicts import check

# %%
prof = chapter_setup(profile, seed)
seeds = [seed + s for s in prof.ablation_seeds]
protocols = list(prof.ablation_protocols)
variants = [Variant("BEiT MIM", pretext="beit"), Variant("SimMIM", pretext="simmim"), Variant("MAE", pretext="mae"),
            Variant("classification", pretext="classification"), Variant("SimCLR", pretext="simclr"),
            Variant("no pretraining", pretext="none")]
print(f"seeds {seeds}; protocols {protocols}; ablation scale: {prof.ablation}")

# %% [markdown]
# On `cpu` the ablations train on the multi-class protocol only: each protocol needs its own
# pretraining (its ID training set is what a variant pretrains on), and one protocol at a scale
# where the models learn their task answers more than three at a scale where they do not. The
# `gpu` profile does the same at its larger scale (a ViT-S on 4-pixel patches, 30 pretraining epochs),
# training six runs side by side on the one GPU; the profile's `ablation_protocols` name the protocols.

# %%
runs = run_grid(variants, protocols, seeds, prof, probe=True)
save_grid(runs, results_dir, "10_pretext")
intervals = seed_intervals(runs)
intervals["valid"] = [check(prof, a).ok for a in intervals["ID acc"]]
tables.save("10_pretext_intervals", intervals, results_dir)
intervals.round(2)

# %% [markdown]
# Mean AUROC over the protocol's OOD sets: mean, standard deviation and 95% t-interval over seeds,
# beside each variant's ID accuracy (`valid`: at or above the profile's accuracy floor), the
# training images its stages processed and their training time, and the frozen-feature probes.
#
# ## What the pretraining learned before any label
#
# The linear probe and the k-NN vote read the pretrained backbone's mean token with the ID labels
# only at read-out time. Supervised classification pretraining has already seen those labels (on
# the same images), so its probes are an upper reference, not a competitor; a random network's
# probes (no pretraining) are the floor any pretext should clear.

# %%
probe_cols = [c for c in ("linear probe acc", "kNN acc") if c in intervals]
intervals[probe_cols].round(2) if probe_cols else "no probes: the protocols here have one class"

# %% [markdown]
# ## AUROC against accuracy and against compute

# %%
for proto in protocols:
    fig = ablation_tradeoff(runs[runs["protocol"] == proto])
    fig.suptitle(proto, y=1.02)

# %% [markdown]
# ## Paired comparisons
#
# Each row is one variant minus another, seed by seed (both trained with the same seed on the same
# images), with the 95% t-interval of the mean difference and a paired t-test (5% false positives
# when there is no difference). That 5% holds for each row alone: six rows of true nulls would show
# at least one "significant" about a quarter of the time. `p (Holm)` adjusts the six for one
# another (Holm-Bonferroni): reading only the rows where it is below 0.05 keeps the chance of any
# false call among them at most 5%.

# %%
pairs = [("BEiT MIM", "classification"), ("classification", "SimCLR"), ("BEiT MIM", "SimCLR"),
         ("SimMIM", "classification"), ("MAE", "classification"), ("BEiT MIM", "no pretraining")]
gaps = pair_gaps(runs, pairs)
tables.save("10_pretext_gaps", gaps, results_dir)
gaps.round(3)

# %%
families = {"BEiT MIM": "reconstruction", "SimMIM": "reconstruction", "MAE": "reconstruction",
            "classification": "recognition", "SimCLR": "recognition"}
by_family = family_gap(runs, families, "reconstruction", "recognition")
tables.save("10_pretext_families", by_family, results_dir)
by_family.round(3)

# %% [markdown]
# ## Verdict
#
# MOOD's ordering, MIM > classification > contrastive, holds on a protocol when both links are
# positive and significant — an intersection-union test, so it is declared true with at most 5%
# probability when either link is false. It is judged only where every model in the chain passes
# the accuracy floor; otherwise the protocol gets no verdict.

# %%
chain = ["BEiT MIM", "classification", "SimCLR"]
for proto in protocols:
    result = ordering_verdict(gaps, intervals, chain, proto, prof.accuracy_floor)
    print(f"{proto}: MIM > classification > contrastive — {result['call']}")
    for line in result["evidence"]:
        print("   ", line)
    fam = by_family.loc[proto]
    print(f"    reconstruction − recognition (family means): {fam['gap']:+.2f} AUROC, 95% CI "
          f"[{fam['ci_lo']:+.2f}, {fam['ci_hi']:+.2f}] -> {fam['call']}")
