# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Summary: the paper's claims beside this book's measurements
#
# **What you will learn:** which of MOOD's main claims this book replicated on Fashion-MNIST, at
# the profile it was built with, and how to read a call. Every "measured here" cell is read from
# the result files chapters 5-8 wrote in this run (`results/<profile>/*.csv`); every "paper
# reported" cell is quoted from Li et al. (2023). The results page at the front of the book adds the
# ablation studies, Unleashing Mask and MOODv2.

# %% tags=["parameters"]
profile = "cpu"  # smoke (CI, seconds) | cpu (default) | gpu
seed = 0  # seed of every stage
results_dir = "results/cpu"  # where the chapters wrote their tables

# %% tags=["remove-cell"]
from IPython.display import Markdown

from mood.book import claims
from mood.book.runner import chapter_setup
from mood.book.summary import headline, headline_table
from mood.experiments import tables

# %% [markdown]
# Each claim gets one of three calls. **Replicated**: the paired effect in the paper's direction,
# its 95% interval clear of zero. **Contradicted**: the interval clear of zero the other way.
# **Inconclusive**: anything else — the interval includes zero (then the MDE column says how large
# an effect the design could have missed), the models are under the accuracy floor (a linear model
# on the raw pixels of the same training images), or the profile does not ask the question. A
# comparison against several baselines must beat every one of them (an intersection-union test).
# Where a chapter declares a family of comparisons, each one's Holm-adjusted p must also be below
# the 5% level before it counts, so the family's chance of any false call stays at 5%. The
# one-class claim is tested against the raw-pixel nearest neighbour, paired over the ten classes;
# the published state of the art it is quoted beside used other datasets.

# %% tags=["hide-input"]
prof = chapter_setup(profile, seed)
main = claims.table(results_dir, chapters=("05_one_class", "06_multi_class", "07_near_distribution",
                                           "08_few_shot_outlier_exposure"))
tables.save("09_claims", main, results_dir)
Markdown(claims.markdown(main))

# %% [markdown]
# ## Figures of record
#
# The headline figures as `results/<profile>/headline.csv` records them: the multi-class ones are
# means over the profile's fine-tuning seeds, with their standard deviation and 95% t-interval
# (clipped to [0, 100]). Wall times are in the compute appendix.

# %% tags=["hide-input"]
headline_table(headline(results_dir, whole_book=False),
               keep=lambda f: not f.endswith("_seconds") and f != "train_img_per_s").round(2)

# %% [markdown]
# ## What we found
#
# The calls above, in the order of the chapters; each chapter's own "What we found" says why.

# %% tags=["hide-input"]
Markdown("\n".join(f"- **{claim}**: {r['call']}" + (f" — {r['why']}" if r["why"] else "") for claim, r in main.iterrows()))

# %% [markdown]
# ## Exercises
#
# 1. Run chapters 5-9 at `smoke` (`python -m mood book run --profile smoke --until 9`) and read this
#    table: why is every call inconclusive, and which column says so?
# 2. A claim against three baselines is replicated only when all three are beaten. With three seeds
#    per comparison, how does the chance of a false "replicated" compare with one comparison alone?
# 3. Chapter 6's MDE is the smallest effect its design detects at 80% power. Predict how it changes
#    with five fine-tuning seeds instead of three (`mood.core.stats.mde`), then compute it.
