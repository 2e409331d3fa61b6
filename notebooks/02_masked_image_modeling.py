# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Masked image modeling
#
# **What you will learn:** how BEiT-style masked image modeling (MIM) pretrains a ViT — blockwise
# masks, a discrete visual vocabulary, predicting the token of every hidden patch — and what the
# pretrained model gets right.
#
# MOOD's central claim is that this *reconstruction* pretext task teaches the features of the ID
# data as a whole, where recognition pretext tasks (classification, contrastive) learn shortcuts
# that suffice to tell classes apart. Here we pretrain on Fashion-MNIST's training images only.

# %% tags=["parameters"]
profile = "cpu"  # smoke (CI, seconds) | cpu (default) | gpu
seed = 0  # seed of every stage
results_dir = "results/cpu"  # where this chapter's tables are written

# %% tags=["remove-cell"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown

from mood.book import findings
from mood.book.plots import codebook_figure, curves, mim_figure
from mood.book.runner import chapter_setup
from mood.core.images import to_tensor
from mood.core.masking import mask_batch
from mood.core.models import Backbone
from mood.core.pretext import MASK_DEFAULTS
from mood.experiments import tables
from mood.experiments.pipeline import pretrain
from mood.experiments.resolve import resolve

# %%
prof = chapter_setup(profile, seed)
run = resolve(prof, "multi-class")
protocol, prof = run.protocol, run.profile
grid = Backbone(prof.model).grid  # the profile's ViT: its patch grid
side = prof.format.size // grid[0]
ratio, kind = MASK_DEFAULTS["beit"]
hidden = round(ratio * grid[0] * grid[1])

# %% [markdown]
# ## Masks
#
# The image is cut into a grid of square patches, one token each; BEiT hides about 40% of them in
# rectangular blocks (top) rather than scattered (bottom): neighbouring patches are too easy to copy
# from, blocks force the model to reason about shape. The grid is the profile's model's:

# %% tags=["hide-input"]
Markdown(f"A {prof.format.size}x{prof.format.size} image, {side}x{side}-pixel patches: a {grid[0]}x{grid[1]} grid "
         f"of {grid[0] * grid[1]} tokens, of which {kind} masking at ratio {ratio} hides {hidden}.")

# %% tags=["hide-input"]
rng = np.random.default_rng(seed)
fig, axes = plt.subplots(2, 8, figsize=(10, 2.8))
for row, mask_kind in zip(axes, ("block", "random")):
    for ax, m in zip(row, mask_batch(8, grid, ratio, mask_kind, rng)):
        ax.imshow(m.reshape(grid), cmap="Greys", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
    row[0].set_ylabel(mask_kind, rotation=0, ha="right")
fig.suptitle(f"masked patches in black, {hidden} of {grid[0] * grid[1]} each");

# %% [markdown]
# ## Pretraining
#
# The tokenizer (a k-means codebook over the model's patches, standing in for BEiT's DALL-E dVAE, which
# cannot be downloaded here) is fitted on the pretraining images first; then the ViT learns to
# predict the token of each masked patch. Trained backbones are cached: later chapters reuse this one.

# %%
pre = pretrain(protocol.train, prof.model, prof.pretrain, prof.format)
history = pd.DataFrame(pre.history).set_index("epoch")
tables.save("02_pretrain_history", history, results_dir)
print(f"pretraining: {len(pre.history)} epochs on {prof.pretrain.max_images or len(protocol.train):,} images, "
      f"{history['seconds'].sum():.0f} s of training (0 when loaded from the cache)")
curves({"BEiT MIM": pre.history}, keys=("loss", "token_acc"));

# %% [markdown]
# ## The visual vocabulary
#
# The most frequent codes are flat background and edges at every orientation — the vocabulary of
# clothing silhouettes.

# %%
tokenizer, task = pre.extras["tokenizer"], pre.extras["task"]
x = to_tensor(protocol.id_test.sample(512, seed), prof.format)
counts = torch.bincount(tokenizer.encode(x).reshape(-1), minlength=tokenizer.vocab_size)
print(f"codes used by the test images: {(counts > 0).sum().item()} of {tokenizer.vocab_size}; "
      f"mean squared quantisation error {tokenizer.quantisation_error(x):.3f} (normalised pixels)")
codebook_figure(tokenizer, counts, n=64, fmt=prof.format);

# %% [markdown]
# ## Predictions at masked positions
#
# Test images the model never saw; the bottom row pastes the predicted token into every hidden
# patch. Exact-token accuracy is a harsh measure (neighbouring codes look alike), yet the
# silhouettes come back: the encoder has learned what Fashion-MNIST looks like.

# %%
mim_figure(task, x[:8], prof.format, seed=seed);

# %% [markdown]
# ## What we found
#
# Computed from this chapter's tables in this run (`mood.book.findings`):

# %% tags=["hide-input"]
Markdown(findings.say("02_masked_image_modeling", results_dir))

# %% [markdown]
# More pretraining epochs (`--set pretrain.epochs=8`) or a finer patch grid (`vit_tiny_p4`) would
# change the curves; chapter 14 asks whether the masking pattern matters.
#
# ## Exercises
#
# 1. Set `--set pretrain.mask_ratio=0.75` and run this chapter at `smoke`. Predict the token
#    accuracy against 0.4 before you look.
# 2. The tokenizer has `vocab_size` codes. What exact-token accuracy would a model that always
#    predicts the most frequent code reach? Compute it from the codebook figure's counts.
# 3. Why does BEiT hide blocks rather than scattered patches? Draw the answer on the mask figure.
