"""Retrain on every keep-set (fixed SGD-step budget, several seeds) and report holdout accuracy.

    python jobs/evaluate_pruning.py [prune.eval_seeds=5] [prune.workers=2] [prune.keep_sets=path/to/keep_sets.parquet]

Writes <run_dir>/prune/evaluation.parquet (one row per model), evaluation.csv (mean and 95%
interval per method and fraction), paired.csv (each method minus the best baseline, paired by
seed, with its interval) and evaluation.png.
"""

from pathlib import Path

import hydra
import torch
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from datamodels.analysis import RunView, plot_pruning
from datamodels.pruning import evaluate_keep_sets, load_keep_sets, paired_differences, summarize
from datamodels.store import write_frame
from datamodels.sweep import SweepRun


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    torch.set_num_threads(cfg.torch_threads)
    run_dir = Path(to_absolute_path(cfg.run_dir))
    run = SweepRun.open(run_dir)
    keep, meta, source = load_keep_sets(run, cfg.prune.keep_sets and to_absolute_path(cfg.prune.keep_sets))
    evaluation = evaluate_keep_sets(run, keep, cfg.prune.eval_seeds, cfg.prune.workers, cfg.progress,
                                    cfg.torch_threads)
    out = run_dir / "prune"
    write_frame(out / "evaluation.parquet", evaluation, meta | {"keep_sets": str(source)})
    table, paired = summarize(evaluation), paired_differences(evaluation)
    table.to_csv(out / "evaluation.csv", index=False)
    paired.to_csv(out / "paired.csv", index=False)
    plot_pruning(RunView.open(run_dir)).savefig(out / "evaluation.png", dpi=120)
    print(table.round(4).to_string(index=False))
    print("\neach method minus the best baseline at that fraction, paired by seed:")
    print(paired.round(4).to_string(index=False))
    print(f"written: {', '.join(str(out / f) for f in ('evaluation.parquet', 'evaluation.csv', 'paired.csv', 'evaluation.png'))}")


if __name__ == "__main__":
    main()
