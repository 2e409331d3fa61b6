# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Fine-tuning
#
# **What you will learn:** how MOOD fine-tunes the pretrained ViT on the ID labels — cross-entropy
# with label smoothing 0.1 and layer-wise learning-rate decay — what label smoothing does to the
# features a distance-based detector reads, and what it does when every label is the same
# (one-class).

# %% tags=["parameters"]
profile = "cpu"  # smoke (CI, seconds) | cpu (default) | gpu
seed = 0  # seed of every stage
results_dir = "results/cpu"  # where this chapter's tables are written
one_class = 0  # the normal class of the label-smoothing experiment

# %% tags=["remove-cell"]
import pandas as pd
from IPython.display import Markdown

from mood.book import findings
from mood.book.plots import curves
from mood.book.runner import chapter_setup
from mood.core.data import FMNIST_CLASSES
from mood.core.metrics import auroc
from mood.experiments import tables
from mood.experiments.config import StageOverrides
from mood.experiments.pipeline import extract_protocol, finetune, id_accuracy, pretrain, score, training_sample
from mood.experiments.resolve import resolve

# %%
prof = chapter_setup(profile, seed)

# %% [markdown]
# ## Multi-class fine-tuning
#
# A fresh 10-way head on the pretrained backbone. Layer-wise decay gives the last block the full
# learning rate and each earlier block 0.75 times the next one's, so the pretrained lower layers
# move least.

# %%
run = resolve(prof, "multi-class")
protocol, p = run.protocol, run.profile
pre = pretrain(protocol.train, p.model, p.pretrain, p.format)
fine = finetune(pre, protocol.train, p.finetune, protocol.num_classes, p.format)
tables.save("03_finetune_history", pd.DataFrame(fine.history).set_index("epoch"), results_dir)
feats = extract_protocol(fine, protocol, p.eval, p.format, train=training_sample(protocol.train, p.finetune))
print(f"ID test accuracy after fine-tuning: {id_accuracy(feats):.2f}%")
curves({"multi-class": fine.history}, keys=("loss", "acc"));

# %% [markdown]
# ## Label smoothing and the features MOOD scores
#
# MOOD fine-tunes with label smoothing 0.1 (BEiT's recipe). Smoothing pulls every training feature
# of a class towards one point and away from the others by a fixed margin (Müller et al. 2019): good
# for calibration, but it erases the spread within a class that a distance-based detector reads —
# in the pooled feature the head sees. How much of that reaches the detector depends on the feature
# it scores: a pooled feature is what smoothing shapes, while the last block's tokens side by side
# (the `cpu` profile's feature, chapter 6) keep where each pattern sits. At the `gpu` profile chapter 12
# fine-tunes with and without smoothing and scores both; the `cpu` profile fine-tunes without it (its
# docstring gives the measurements behind that choice).
#
# ## One-class fine-tuning and label smoothing
#
# With a single normal class, every label is the same. Plain cross-entropy is then minimised by
# pushing one logit to infinity — the network can do that by inflating its features without
# learning anything about the class. Label smoothing (target 0.91 for the class, 0.01 for each of
# the nine others) makes the optimum a finite logit gap, so training settles. We compare the
# Mahalanobis AUROC of the pretrained features, and of fine-tuning with and without smoothing.

# %%
head = StageOverrides(eval={"pool": "mean"})  # the head's feature, whose norm can grow
one = resolve(prof, f"one-class:{one_class}", changes=head)
plain = resolve(prof, one.protocol, changes=head.then(StageOverrides(finetune={"label_smoothing": 0.0})))
oc, q = one.protocol, one.profile
oc_pre = pretrain(oc.train, q.model, q.pretrain, q.format)
rows, histories = [], {}
for name, trained in [("pretrained only", oc_pre),
                      ("fine-tuned, label smoothing 0.1", finetune(oc_pre, oc.train, q.finetune, 10, q.format)),
                      ("fine-tuned, no label smoothing",
                       finetune(oc_pre, oc.train, plain.profile.finetune, 10, q.format))]:
    feats = extract_protocol(trained, oc, q.eval,
                             q.format,  # fitted on the images that stage trained on
                             train=training_sample(oc.train, q.pretrain if trained is oc_pre else q.finetune))
    id_s, ood_s = score(feats, "mahalanobis")
    logits = feats.id.logits
    rows.append({"setting": name, "AUROC": 100 * auroc(id_s.numpy(), ood_s["other classes"].numpy()),
                 "mean feature norm": feats.id.features.norm(dim=1).mean().item(),
                 "mean top-logit gap": (logits.max(1).values - logits.median(1).values).mean().item()})
    if trained.history:
        histories[name] = trained.history
table = pd.DataFrame(rows).set_index("setting")
tables.save("03_label_smoothing", table, results_dir)
print(f"one-class, normal class: {FMNIST_CLASSES[one_class]}")
table.round(2)

# %%
curves(histories, keys=("loss",));

# %% [markdown]
# Read the table from the top: the AUROC of the pretrained features, then what each fine-tuning
# does to it. Without smoothing the logit gap (and usually the feature norm) grows — the model
# inflates its outputs to drive the loss towards zero; with smoothing the gap stays bounded. Whether
# that changes the AUROC, and in which direction, is what this run measured (the findings below
# say it). Chapter 5 scores the pretrained features, MOOD's one-class setting, so this is the one
# place the book fine-tunes on a single class.

# %% [markdown]
# ## What we found
#
# Computed from this chapter's tables in this run (`mood.book.findings`):

# %% tags=["hide-input"]
Markdown(findings.say("03_fine_tuning", results_dir))

# %% [markdown]
# The one-class comparison is one class and one seed: a description, not a test. Chapter 5 repeats
# it on every class.
#
# ## Exercises
#
# 1. Change `one_class` to 9 (Ankle boot) and run at `smoke`: does the order of the three settings
#    stay?
# 2. Label smoothing 0.1 puts 0.91 on the true class and 0.01 on each other. What logit gap
#    minimises that loss with ten classes? Compare with the table's `mean top-logit gap`.
# 3. Fine-tune without layer-wise decay (`--set finetune.layer_decay=None`) and predict the ID
#    accuracy.
