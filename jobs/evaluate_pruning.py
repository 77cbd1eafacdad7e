"""Retrain on every keep-set (fixed SGD-step budget, several seeds) and report holdout accuracy.

    python jobs/evaluate_pruning.py [prune.eval_seeds=3] [prune.keep_sets=path/to/keep_sets.parquet]

Writes <run_dir>/prune/evaluation.parquet, evaluation.csv (mean, std per method and fraction)
and evaluation.png (accuracy against fraction kept).
"""

from pathlib import Path

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from datamodels.analysis import RunView, plot_pruning, pruning_table
from datamodels.cli import job
from datamodels.pruning import load_keep_sets, evaluate_keep_sets
from datamodels.store import write_frame
from datamodels.sweep import SweepRun


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@job()
def main(cfg: DictConfig) -> None:
    run_dir = Path(to_absolute_path(cfg.run_dir))
    run = SweepRun.open(run_dir)
    keep, meta, source = load_keep_sets(run, cfg.prune.keep_sets and to_absolute_path(cfg.prune.keep_sets))
    evaluation = evaluate_keep_sets(run, keep, cfg.prune.eval_seeds, progress=cfg.progress)
    out = run_dir / "prune"
    write_frame(out / "evaluation.parquet", evaluation, meta | {"keep_sets": str(source)})
    view = RunView.open(run_dir)
    table = pruning_table(view)
    table.to_csv(out / "evaluation.csv", index=False)
    plot_pruning(view).savefig(out / "evaluation.png", dpi=120)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"written: {out / 'evaluation.parquet'}, {out / 'evaluation.csv'}, {out / 'evaluation.png'}")


if __name__ == "__main__":
    main()
