
# %% [markdown]
# # Ablation results in one place
#
# **What you will learn:** the tables of the five ablation chapters side by side, read from the
# files they wrote in this run (`results/<profile>/1?_*.csv`): mean AUROC over each protocol's OOD
# sets, mean ± standard deviation over seeds, at the profile's ablation scale.

# %% tags=["parameters"]
profile = "cpu"  # smoke (CI, seconds) | cpu (default) | gpu
seed = 0  # seed of every stage
results_dir = "results/cpu"  # where the chapters wrote their tables

# %% tags=["remove-cell"]
from pathlib import Path

from IPython.display import Markdown, display

from mood.ablations import verdict
from mood.artifacts import load_table
from mood.book import chapter_setup

# %% tags=["hide-input"]
prof = chapter_setup(profile, seed)
res = Path(results_dir)
chapters = {"10_pretext": "Pretext task", "11_architecture": "Architecture", "12_fine_tuning": "Fine-tuning",
            "13_ood_metric": "OOD score", "14_masking": "Masking and pretraining length"}
missing = [k for k in chapters if not (res / f"{k}.csv").exists()]
assert not missing, f"run chapters {missing} first (make book runs them in order)"

# %% tags=["hide-input"]
for stem, title in chapters.items():
    display(Markdown(f"### {title}"))
    display(load_table(res / f"{stem}.csv"))
    runs = load_table(res / f"{stem}_runs.csv").reset_index()
    display(Markdown("```\n" + verdict(runs) + "\n```"))
