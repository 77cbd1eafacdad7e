"""Where the surrogate-driven keep-sets' gain comes from, on a pruning-study run (docs/pruning.md).

    .venv/bin/python -m benchmarks.prune_ablation --run runs/prune-study-clusters

Re-chooses the `interactions` and `linear` keep-sets at fractions 0.5, 0.3 and 0.2 twice, once
without class quotas and once with the surrogate fitted at alpha 0.5 for every fraction (what a
sweep at one alpha gives), retrains them with the study's seeds and prints them beside the
study's own evaluation (`<run>/prune/evaluation.parquet`, same seeds).
"""

import argparse

import pandas as pd

from benchmarks.harness import pin_threads, save_results
from datamodels.pruning import load_surrogates, make_keep_sets, player_classes, summarize
from datamodels.pruning.retraining import evaluate_keep_sets
from datamodels.run.folder import RunFolder
from datamodels.sweep.stage import SweepRun

FRACTIONS = [0.5, 0.3, 0.2]
FITS = {"interactions": "proxyspex", "linear": "linear"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/prune-study-clusters")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    pin_threads()
    run = SweepRun.open(args.run)
    matched = load_surrogates(run.run_dir, FITS, FRACTIONS, "matched")
    at_half = {m: dict.fromkeys(FRACTIONS, by_fraction[0.5]) for m, by_fraction in matched.items()}
    classes = player_classes(run.groups, run.data.labels("train"))
    variants = {"no quotas": make_keep_sets(list(FITS), FRACTIONS, run.n, classes, matched, quotas=False,
                                            progress=False),
                "alpha-0.5 surrogate": make_keep_sets(list(FITS), FRACTIONS, run.n, classes, at_half, progress=False)}
    keep = pd.concat([k.assign(method=k["method"] + " / " + name) for name, k in variants.items()], ignore_index=True)
    evaluation = evaluate_keep_sets(run, keep, args.seeds, args.workers, progress=True)
    study = pd.read_parquet(RunFolder(run.run_dir).evaluation)
    table = summarize(pd.concat([study[study["fraction"].isin(FRACTIONS)], evaluation]))
    print(table.round(4).to_string(index=False))
    save_results("prune_ablation", table.to_dict("records"))


if __name__ == "__main__":
    main()
