"""Issue 19, item 3: pruning the duplicates experiment. Does an interaction-aware pruner keep one
of each twin pair where the others keep both or neither, and does it retrain better?

    .venv/bin/python -m benchmarks.duplicates_pruning --run runs/duplicates   # after make duplicates-study

Reads the run's keep-sets (``jobs/prune.py``), their retraining (``jobs/evaluate_pruning.py``)
and its known twins (``twins.csv``). Per kept fraction and method: holdout accuracy (mean and
95% t-interval over seeds and draws, the repo's paired protocol), the twin pairs with both
members removed and with both kept (mean over the method's draws), and, per fraction,
``interactions - linear`` paired by training seed with its 95% interval. Goals of the issue:
interactions above linear (interval above 0) at two or more fractions, and fewer twin pairs
lost entirely than every other surrogate method at every fraction.
"""

import argparse
import json

import pandas as pd

from benchmarks.harness import pin_threads, save_results
from datamodels.pruning import paired_differences, summarize
from datamodels.run.folder import RunFolder
from datamodels.sweep.twins import twin_outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="runs/duplicates")
    args = parser.parse_args()
    pin_threads()
    folder = RunFolder(args.run)
    keep, evaluation = pd.read_parquet(folder.keep_sets_file), pd.read_parquet(folder.evaluation)
    twins = pd.read_csv(folder.twins)
    outcomes = twin_outcomes(keep, twins).groupby(["method", "fraction"])[["both_removed", "both_kept"]].mean()
    table = summarize(evaluation).join(outcomes, on=["method", "fraction"])
    n = json.loads(folder.run_json.read_text())["n"]
    print(f"{len(twins)} twin pairs among {n} players; accuracy over seeds (and draws):")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\ninteractions - linear, paired by seed:")
    paired = paired_differences(evaluation, against=("linear",))
    paired = paired[paired["method"] == "interactions"].drop(columns=["method", "baseline"])
    print(paired.to_string(index=False, float_format=lambda v: f"{v:+.4f}"))
    save_results("duplicates_pruning", table.to_dict("records"), interactions_minus_linear=paired.to_dict("records"))


if __name__ == "__main__":
    main()
