"""Retrain on every keep-set (fixed SGD-step budget, several seeds) and report holdout accuracy.

    python jobs/evaluate_pruning.py [prune.eval_seeds=5] [prune.workers=2] [prune.keep_sets=path/to/keep_sets.parquet]

Writes <run_dir>/prune/evaluation.parquet (one row per model), evaluation.csv (mean and 95%
interval per method and fraction), paired.csv (each method minus the best baseline, paired by
seed, with its interval) and evaluation.png.
"""

from pathlib import Path

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from datamodels.analysis import RunView, plot_pruning
from datamodels.cli import job
from datamodels.pruning import evaluate_keep_sets, load_keep_sets, paired_differences, summarize
from datamodels.stage_inputs import StageInputs
from datamodels.store import write_frame
from datamodels.sweep import SweepRun


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@job()
def main(cfg: DictConfig) -> None:
    run_dir = Path(to_absolute_path(cfg.run_dir))
    out = run_dir / "prune"
    written = [out / name for name in ("evaluation.parquet", "evaluation.csv", "paired.csv", "evaluation.png")]
    source = Path(to_absolute_path(cfg.prune.keep_sets)) if cfg.prune.keep_sets else out / "keep_sets.parquet"
    inputs = StageInputs(out / ".inputs-evaluation.json", {"keep_sets": source, "run.json": run_dir / "run.json"},
                         {"eval_seeds": cfg.prune.eval_seeds})
    if not cfg.force and inputs.unchanged(written):
        print(f"evaluate: {out / 'evaluation.parquet'} is up to date with {source}, skipped (force=true redoes it)")
        return
    run = SweepRun.open(run_dir)
    keep, meta, source = load_keep_sets(run, source)
    evaluation = evaluate_keep_sets(run, keep, cfg.prune.eval_seeds, cfg.prune.workers, cfg.progress,
                                    cfg.torch_threads)
    write_frame(out / "evaluation.parquet", evaluation, meta | {"keep_sets": str(source)})
    table, paired = summarize(evaluation), paired_differences(evaluation)
    table.to_csv(out / "evaluation.csv", index=False)
    paired.to_csv(out / "paired.csv", index=False)
    plot_pruning(RunView.open(run_dir)).savefig(out / "evaluation.png", dpi=120)
    print(table.round(4).to_string(index=False))
    print("\neach method minus the best baseline at that fraction, paired by seed:")
    print(paired.round(4).to_string(index=False))
    inputs.save()
    print(f"written: {', '.join(map(str, written))}")


if __name__ == "__main__":
    main()
