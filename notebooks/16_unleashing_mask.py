
# %% [markdown]
# # Unleashing Mask: the OOD ability a classifier has mid-training
#
# **What you will learn:** Zhu et al. (*Unleashing Mask: Explore the Intrinsic Out-of-Distribution
# Detection Capability*, ICML 2023) observe that a classifier trained on ID data detects OOD inputs
# better at an *intermediate* epoch than at its last one: late training memorises atypical ID
# samples and the logits of OOD inputs drift with them. They propose to get that stage back from the
# final model without any OOD data:
#
# - **UM** estimates the training loss of that stage, `b`, as the mean training cross-entropy of the
#   final model with a small random fraction of its weights masked out (the official code keeps
#   96.5% of each layer), then fine-tunes with the floored loss `|CE − b| + b`: gradient descent
#   lowers the CE while it is above `b` and raises it below, so training hovers at `b` instead of
#   memorising further.
# - **UMAP** freezes the weights and learns a mask over them with the same loss (edge-popup scores,
#   ~80% of each layer kept), a pruned model instead of an updated one.
#
# This chapter runs the whole study in `mood` (`mood/unleash.py`) on Fashion-MNIST, with the
# multi-class chapter's OOD sets, for a small ResNet and the ViT, over several seeds. Beside the
# paper's methods it runs a **control**: the same extra epochs with plain cross-entropy (`+CE`), so
# that a gain of UM can be told apart from a gain of simply training on at a small learning rate.
#
# Reference (quoted, not run here): on CIFAR-10 with a DenseNet-101 the paper reports Energy at
# 92.07 AUROC / 42.69 FPR95, and Energy + UM at 93.73 / 33.29 (Zhu et al. 2023, Table 1).
# Note from the official code: its shipped configs set `criterion: CrossEntropyLoss` and `UM: 0.`,
# i.e. plain cross-entropy unless the UM criterion is chosen; here `+UM` always applies the floor.

# %% tags=["parameters"]
profile = "cpu"  # smoke (CI, seconds) | cpu (default) | gpu
seed = 0  # first seed; the profile's unleash.seeds are offsets from it
results_dir = "results/cpu"  # where this chapter's tables are written
models = None  # backbones to study; None means those of the profile (a small ResNet and the ViT)

# %% tags=["remove-cell"]
from pathlib import Path

import seaborn as sns
from IPython.display import display

from mood.artifacts import load_table, save_results
from mood.book import chapter_setup
from mood.plots import stage_figure
from mood.unleash import METHOD_LABELS, run_study, summarize

# %%
prof = chapter_setup(profile, seed)
cfg = prof.unleash
seeds = [seed + s for s in cfg.seeds]
print(f"models {list(models or cfg.models)}, seeds {seeds}; train {cfg.train.epochs} epochs on "
      f"{cfg.train.max_images or 'all'} images, tune {cfg.tune.epochs} epochs; floor keeps {cfg.estimate_keep:.1%}, "
      f"UMAP keeps {cfg.umap_keep:.0%}")
study = run_study(prof, models, seeds)
study.save(results_dir)
study.timings.set_index(["model", "seed"])

# %% [markdown]
# ## The intermediate stage
#
# Mean AUROC over the OOD sets at every epoch of training from scratch (top), training loss and ID
# accuracy (bottom). The dotted line marks the epoch where MSP detects OOD best, the dashed one the
# last epoch; the red line is UM's estimated floor `b`. The best epoch is picked on the test OOD
# sets, so it is an oracle: it shows what the intermediate stage holds, not a usable method.

# %%
stage_figure(study.curve, study.floors.groupby("model")["floor b"].mean().to_dict(), scores=study.curve_scores);

# %%
study.stage_gap().round(2)

# %% [markdown]
# `gap` is how many AUROC points the best epoch holds over the last one (mean and std over seeds).
# A gap near zero with the best epoch at the end means this run shows no intermediate stage worth
# recovering: the paper's premise then does not hold at this scale.
#
# ## Baseline, control, UM and UMAP
#
# Mean over the OOD sets, mean ± std over seeds. `baseline` is the last epoch; `+CE (control)`,
# `+UM` and `+UMAP` all start from it and train for the same number of extra epochs.

# %%
summarize(study.runs)

# %% tags=["hide-input"]
runs = study.runs
ax = sns.barplot(data=runs, y="method", x="AUROC", hue="score", errorbar="sd", order=list(METHOD_LABELS.values()))
ax.set_xlim(max(0, runs["AUROC"].min() - 5), 100)
ax.legend(fontsize=8, loc="lower left")
ax.set_title("mean AUROC over the OOD sets, all backbones and seeds");

# %% [markdown]
# ## Does it reproduce?
#
# Paired differences over seeds (each seed's tuned model against the same seed's baseline, or
# against the same seed's plain-CE control), per backbone and score: the mean change `Δ`, its 95%
# t-interval over seeds (`ci_lo`, `ci_hi`) and a paired t-test (`p`; `significant` at 5%, which is
# how often it calls a difference when there is none). With one seed there is no test.

# %%
study.effects.round(2)  # Δ: AUROC points, except FPR95 points in the last comparison

# %% [markdown]
# ## Beside MOOD
#
# MOOD's multi-class table (MIM pretraining, fine-tuning, Mahalanobis) on the same OOD sets, read
# from the file the multi-class chapter wrote in this run. The sample sizes differ (that chapter
# scores more images per set), so compare levels, not decimals.

# %% tags=["hide-input"]
mood_file = Path(results_dir) / "06_multi_class.csv"
if mood_file.exists():
    best_here = runs.groupby(["model", "method", "score"])[["AUROC", "FPR95"]].mean().sort_values("AUROC").iloc[-1]
    beside = load_table(mood_file).loc[["mean"], ["AUROC", "FPR95"]].T.rename(columns={"mean": "MOOD (chapter 6, Mahalanobis)"})
    beside[f"best here: {' / '.join(best_here.name)}"] = best_here
    save_results(beside, results_dir, "16_unleash_vs_mood")
    display(beside.round(2))
else:
    print("chapter 6 has not written its table in this results folder yet: run `make book`")

# %% [markdown]
# ## Verdict
#
# Printed from the numbers above, not written in advance. Two things decide whether UM can help:
# whether training reached a late, memorising stage at all (a best epoch well before the last), and
# where the estimated floor `b` lies against the final training loss. A small network that masking
# 3.5% of its weights already cripples gives a `b` far above the final loss, and UM then undoes
# training instead of stopping it at the right stage.

# %%
print(study.verdict())
