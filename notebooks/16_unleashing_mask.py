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

# %%
from pathlib import Path

import pandas as pd
import seaborn as sns
from IPython.display import display

from mood.book import chapter_setup
from mood.metrics import load_table, save_results
from mood.plots import stage_figure
from mood.unleash import METHOD_LABELS, best_epoch, effect, run_unleash, summarize

prof = chapter_setup(profile, seed)
cfg = prof.unleash
models = list(models or cfg.models)
seeds = [seed + s for s in cfg.seeds]
print(f"models {models}, seeds {seeds}; train {cfg.train.epochs} epochs on {cfg.train.max_images or 'all'} images, "
      f"tune {cfg.tune.epochs} epochs; floor keeps {cfg.estimate_keep:.1%}, UMAP keeps {cfg.umap_keep:.0%}")

# %%
curves, tables, floors, timings = [], [], [], []
for model in models:
    for s in seeds:
        run = run_unleash(model, prof, seed=s)
        curves.append(run.curve.assign(model=model, seed=s))
        tables.append(run.table)
        floors.append({"model": model, "seed": s, "floor b": run.floor, "last-epoch train CE": run.final_loss})
        timings.append({"model": model, "seed": s, **{k: round(v, 1) for k, v in run.timings.items()}})
curve, runs = pd.concat(curves, ignore_index=True), pd.concat(tables, ignore_index=True)
floors, timings = pd.DataFrame(floors), pd.DataFrame(timings)
save_results(curve.set_index("model"), results_dir, "16_unleash_curve")
save_results(runs.set_index("model"), results_dir, "16_unleash_runs")
save_results(floors.set_index("model"), results_dir, "16_unleash_floors")
timings.set_index(["model", "seed"])

# %% [markdown]
# ## The intermediate stage
#
# Mean AUROC over the OOD sets at every epoch of training from scratch (top), training loss and ID
# accuracy (bottom). The dotted line marks the epoch where MSP detects OOD best, the dashed one the
# last epoch; the red line is UM's estimated floor `b`. The best epoch is picked on the test OOD
# sets, so it is an oracle: it shows what the intermediate stage holds, not a usable method.

# %%
stage_figure(curve, floors.groupby("model")["floor b"].mean().to_dict(), scores=cfg.curve_scores);

# %%
rows = []
for (model, s), c in curve.groupby(["model", "seed"], sort=False):
    last = c.iloc[-1]
    for score in cfg.curve_scores:
        best = best_epoch(c, score)
        rows.append({"model": model, "seed": s, "score": score, "best epoch": int(best["epoch"]),
                     "best AUROC": best[f"{score} AUROC"], "last epoch": int(last["epoch"]),
                     "last AUROC": last[f"{score} AUROC"]})
stages = pd.DataFrame(rows)
stages["gap"] = stages["best AUROC"] - stages["last AUROC"]
stage_gap = stages.groupby(["model", "score"], sort=False)[["best epoch", "gap"]].agg(["mean", "std"]).round(2)
save_results(stages.set_index("model"), results_dir, "16_unleash_stages")
stage_gap

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
table = summarize(runs)
save_results(table, results_dir, "16_unleash")
table

# %%
ax = sns.barplot(data=runs, y="method", x="AUROC", hue="score", errorbar="sd",
                 order=list(METHOD_LABELS.values()))
ax.set_xlim(max(0, runs["AUROC"].min() - 5), 100)
ax.legend(fontsize=8, loc="lower left")
ax.set_title("mean AUROC over the OOD sets, all backbones and seeds");

# %% [markdown]
# ## Does it reproduce?
#
# Paired differences over seeds (each seed's tuned model against the same seed's baseline, or
# against the same seed's plain-CE control), per backbone and score. `beyond 2·std` says whether
# the mean change is larger than twice the seeds' spread.

# %%
effects = pd.concat({
    "UM vs baseline": effect(runs, "+UM"),
    "UM vs CE control": effect(runs, "+UM", against=METHOD_LABELS["ce"]),
    "UMAP vs baseline": effect(runs, "+UMAP"),
    "UM vs baseline, FPR95": effect(runs, "+UM", metric="FPR95"),
}, names=["comparison"]).round(2)  # Δ: AUROC points, except FPR95 points in the last comparison
save_results(effects, results_dir, "16_unleash_effect")
effects

# %% [markdown]
# ## Beside MOOD
#
# MOOD's multi-class table (MIM pretraining, fine-tuning, Mahalanobis) on the same OOD sets, read
# from the file the multi-class chapter wrote in this run. The sample sizes differ (that chapter
# scores more images per set), so compare levels, not decimals.

# %%
res = Path(results_dir)
mood_file = res / "06_multi_class.csv"
if mood_file.exists():
    m = load_table(mood_file).loc["mean"]
    best_here = runs.groupby(["model", "method", "score"])[["AUROC", "FPR95"]].mean().sort_values("AUROC").iloc[-1]
    beside = pd.DataFrame({"MOOD (chapter 6, Mahalanobis)": m[["AUROC", "FPR95"]],
                           f"best here: {' / '.join(best_here.name)}": best_here})
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
for model in models:
    g = stages[(stages["model"] == model) & (stages["score"] == "energy")]
    e = effects.loc[("UM vs baseline", model, "energy")]
    c = effects.loc[("UM vs CE control", model, "energy")]
    p = effects.loc[("UMAP vs baseline", model, "energy")]
    print(f"{model}: best Energy epoch {g['best epoch'].mean():.1f} of {int(g['last epoch'].iloc[0])}, "
          f"{g['gap'].mean():.2f} AUROC above the last epoch.")
    verdict = ("improves on" if e["Δ"] > 0 else "falls below") + " the baseline"
    sure = "beyond" if e["beyond 2·std"] else "within"
    print(f"  Energy + UM {verdict} by {e['Δ']:+.2f} AUROC ({sure} twice the seeds' spread {e['std']:.2f}); "
          f"against the plain-CE control {c['Δ']:+.2f}. Energy + UMAP: {p['Δ']:+.2f}.")
    f = floors[floors["model"] == model][["floor b", "last-epoch train CE"]].mean()
    side = ("above the final loss, so UM trains the loss back up to it"
            if f["floor b"] > f["last-epoch train CE"] else "below the final loss, so UM goes on lowering it to b")
    print(f"  UM floor b {f['floor b']:.3f} vs last-epoch train CE {f['last-epoch train CE']:.3f}: {side}.")
print("Paper (CIFAR-10, DenseNet-101): Energy + UM +1.66 AUROC, -9.40 FPR95.")
