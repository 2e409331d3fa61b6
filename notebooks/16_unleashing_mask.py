# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

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
# The mechanism needs a model that *memorises*: training accuracy near 100% and training
# cross-entropy near 0, reached by fitting the atypical samples last. This chapter trains in that
# regime — at the `cpu` profile a CNN with a dense layer (`cnn_dense`) on a few thousand Fashion-MNIST
# images (the first cell prints the profile's settings), no augmentation, SGD with momentum and a
# cosine schedule (the official code's optimiser), every epoch kept — under two conditions: clean
# labels, and 20% symmetric label noise, where atypical (mislabelled) samples exist by
# construction and memorising them is known to hurt.
#
# What is chosen, and on what: the epoch ("intermediate stage") and UM's floor `b` are picked on a
# **validation OOD set** that is none of the test OOD sets — held-out Fashion-MNIST training images
# with their 7x7 tiles shuffled (same pixels and strokes, no garment) — against held-out ID images,
# as the paper tunes on a held-out OOD set. The test OOD sets (MNIST, digits, textures, photos,
# noise: the multi-class chapter's) are only scored. Beside the paper's methods run:
#
# - **early stopping** on the ID validation loss (no OOD data at all);
# - the **plain-CE control** (`+CE`): the same extra epochs as UM, without the floor, so that a gain
#   of UM is told apart from a gain of training on at a small learning rate;
# - where the profile asks for it (`gpu`), a **sweep of b**: UM at 0.5x and 2x the estimate beside the
#   estimate, and UM with the `b` the validation OOD set prefers.
#
# Every table gives the ID accuracy of the model beside its OOD numbers. Comparisons are paired by
# seed (the same seed's models, the same test images) with a t-test over seeds. **Declared before the
# results**, the chapter's primary tests are three, on Energy AUROC (the paper's headline score), per
# label condition: the epoch picked on validation data minus the last (the paper's first claim), UM
# minus the last (its second), and UM minus the plain-CE control; Holm adjusts over these six. Every
# other comparison (other scores, early stopping, UMAP, FPR95) is secondary: described, not called.
#
# Reference (quoted, not run here): on CIFAR-10 with a DenseNet-101 the paper reports Energy at
# 92.07 AUROC / 42.69 FPR95, and Energy + UM at 93.73 / 33.29 (Zhu et al. 2023, Table 1).
# Note from the official code: its shipped configs set `criterion: CrossEntropyLoss` and `UM: 0.`,
# i.e. plain cross-entropy unless the UM criterion is chosen; here `+UM` always applies the floor.

# %% tags=["parameters"]
profile = "cpu"  # smoke (CI, seconds) | cpu (default) | gpu
seed = 0  # first seed; the profile's unleash.seeds are offsets from it
results_dir = "results/cpu"  # where this chapter's tables are written
models = None  # backbones to study; None means those of the profile

# %% tags=["remove-cell"]
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from mood.book import findings
from mood.book.plots import auroc_points, floor_climb, image_grid, loss_histogram, stage_figure
from mood.book.runner import chapter_setup
from mood.core.data import FMNIST_CLASSES
from mood.experiments import tables
from mood.experiments.resolve import resolve, seeds_of
from mood.experiments.unleash_study import beside_mood, run_study, summarize

# %%
prof = chapter_setup(profile, seed)
cfg = prof.unleash
seeds = list(seeds_of(prof, seed, "unleash"))
print(f"models {list(models or cfg.models)}, seeds {seeds}, label noise {list(cfg.noise)}; train {cfg.train.epochs} "
      f"epochs on {cfg.train.max_images or 'all'} images ({cfg.train.optimizer}, lr {cfg.train.lr}, augmentation "
      f"{'on' if cfg.augment else 'off'}), tune {cfg.tune.epochs} epochs; validation {cfg.val_id} ID + {cfg.val_ood} "
      f"tile-shuffled images; floor keeps {cfg.estimate_keep:.1%}, UMAP keeps {cfg.umap_keep:.0%}")
study = run_study(prof, models, seeds)
study.save(results_dir)  # wall times: the compute appendix

# %% [markdown]
# ## Did it memorise, and where does b sit?
#
# Per condition: the final training accuracy and cross-entropy, UM's estimated floor `b`, the
# epochs picked by early stopping and on the validation OOD set, and what the final model's
# per-image training losses show (mean over seeds).

# %%
floors = study.floors.groupby(["condition", "model"], sort=False).mean(numeric_only=True).drop(columns="seed")
floors.round(3)

# %% [markdown]
# ## UM's climb to its floor
#
# UM starts from the memorised final model, whose training loss lies far below `b`; below the floor
# the loss `|CE − b| + b` turns gradient descent into ascent, so the training loss climbs back to `b`
# and should hold there, within the band that the column `UM held b ±…` of the table above names.
# The figure shows each seed's training cross-entropy over `b`, epoch by epoch; `UM loss / b` in
# the table above is its last value, and the headline records its mean over the clean-label seeds
# (`um_loss_to_floor_ratio`). With noisy labels `b` is large for a
# reason the table shows: the mask breaks the memorised wrong labels first (`masked loss,
# mislabelled` against `masked loss, clean`), and `b from mislabelled images` is their share of `b`.
# Climbing to that `b` means raising the loss of every image towards it, correct labels included —
# which is how UM with noisy labels can send the model back towards chance.

# %% tags=["hide-input"]
floor_climb(study.climb);

# %% [markdown]
# ## The intermediate stage
#
# Mean AUROC over the test OOD sets at every epoch (top), training and validation loss and ID test
# accuracy (bottom), per condition. Dotted: the epoch with the best test AUROC — an oracle, picked
# on the test sets; dash-dotted: the epoch picked on the validation OOD set, a usable method;
# red: UM's estimated floor `b`.

# %%
floor_of = study.floors.groupby(["condition", "model"])["floor b"].mean().to_dict()
stage_figure(study.curve, floor_of, scores=study.curve_scores);

# %%
study.stage_gap().round(2)

# %% [markdown]
# `gap`: oracle best minus last epoch; `val gap`: validation-picked minus last (AUROC points, mean
# and std over seeds). A `val gap` near zero means the validation set found no better stage than
# the last one.
#
# ## What late training memorises
#
# The final model's training loss per image (log scale). With clean labels the tail holds the
# atypical images of each class; with noisy labels it holds the mislabelled ones, which the model
# fits last. UM's floor `b` (red) is the loss it will not go below.

# %%
loss_histogram(study.losses, floor_of);

# %%
proto = resolve(prof, "multi-class").protocol
where = pd.Series(np.arange(len(proto.train)), index=proto.train.ids)
first = study.losses[study.losses["seed"] == seeds[0]]
hardest = {cond: proto.train.subset(where[g.nlargest(8, "loss")["id"]].to_numpy())
           for cond, g in first.groupby("condition", sort=False)}
image_grid(hardest, n=8);

# %% [markdown]
# The eight training images of the first seed with the highest final loss, per condition, shown
# with their true class below (under noise most of them carry a wrong label in training):

# %% tags=["hide-input"]
for cond, s in hardest.items():
    print(f"{cond}: " + ", ".join(FMNIST_CLASSES[k] for k in s.labels))

# %% [markdown]
# ## Every method
#
# Mean over the test OOD sets, mean ± std over seeds. `baseline (last epoch)` is the final model;
# the two picked epochs are earlier checkpoints of the same training; `+CE`, `+UM` (at the estimated
# `b`, and on `gpu` also at 0.5x and 2x) and `+UMAP` start from the final model and train the same
# number of extra epochs.

# %%
summarize(study.runs)

# %% tags=["hide-input"]
runs = study.runs
energy = runs[runs["score"] == "energy"]
auroc_points(energy, y="method", hue="condition").set_title("Energy: mean AUROC over the test OOD sets");

# %% [markdown]
# ## Does it reproduce?
#
# Paired differences over seeds, per condition, backbone and score: the mean change `Δ`, its 95%
# t-interval over seeds (`ci_lo`, `ci_hi`), a paired t-test (`p`), the `family` (primary or
# secondary) and, for the primary tests, `p (Holm)`, which the verdict and the results page read.

# %%
study.effects.round(2)  # Δ: AUROC points, except FPR95 points where the comparison says so

# %% [markdown]
# ## Beside MOOD
#
# MOOD's multi-class detector (chapter 6 of this run: mean AUROC over the same OOD sets, mean over
# its seeds) beside this chapter's, each as it would be deployed: for each label condition, the
# method whose Energy AUROC on the *validation* OOD set is highest, never the best on the test sets.
# Read the ID accuracy beside each: the CNN here and MOOD's ViT are different models trained on
# different numbers of images, and the sample sizes differ (chapter 6 scores more images per set), so
# compare levels, not decimals.

# %% tags=["hide-input"]
if tables.exists("06_multi_class_seeds", results_dir):
    beside = beside_mood(runs, tables.load("06_multi_class_seeds", results_dir))
    tables.save("16_unleash_beside_mood", beside, results_dir)
    display(beside.round(2))
else:
    print("chapter 6 has not written its table in this results folder yet: run `make book`")

# %% [markdown]
# ## Verdict
#
# Printed from the numbers above, not written in advance. Three things decide whether the paper's
# mechanism acts here: whether training reached a memorising stage (final training accuracy near
# 100%), whether an earlier epoch detects OOD better *as judged on validation data*, and where the
# estimated floor `b` lies against the final training loss.

# %%
print(study.verdict())

# %% [markdown]
# ## What we found
#
# Computed from this chapter's tables in this run (`mood.book.findings`):

# %% tags=["hide-input"]
Markdown(findings.say("16_unleashing_mask", results_dir))

# %% [markdown]
# UM's effect depends on where b sits: with noisy labels the mask breaks the memorised wrong labels
# first, so b is large and climbing to it un-trains the model.
#
# ## Exercises
#
# 1. Predict UM's ID accuracy with noisy labels at `b/2`, then run `python -m mood unleash --noise
#    0.2 --floor ...` at `smoke`.
# 2. Why does the plain-CE control matter for reading UM's effect?
# 3. With clean labels the intermediate stage is picked on tile-shuffled images. Why not on MNIST?
