"""Retrain on every keep-set (fixed SGD-step budget, several seeds) and report holdout accuracy.

    python jobs/evaluate_pruning.py [prune.eval_seeds=5] [prune.workers=2] [prune.keep_sets=path/to/keep_sets.parquet]

Writes <run_dir>/prune/evaluation.parquet (one row per model), evaluation.csv (mean and 95%
interval per method and fraction), paired.csv (each method minus the best baseline, paired by
seed, with its interval) and evaluation.png. Skipped when the keep-sets and settings are those
of its last run (force=true redoes it).
"""

import hydra
from omegaconf import DictConfig, OmegaConf

from datamodels.cli import job, launch
from datamodels.pruning import PruneSettings, run_evaluation


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@job()
def main(cfg: DictConfig) -> None:
    settings = PruneSettings.from_config(OmegaConf.to_container(cfg.prune, resolve=True))
    result = run_evaluation(cfg.run_dir, settings, progress=cfg.progress, force=cfg.force,
                            threads=cfg.torch_threads)
    if result.up_to_date:
        print("evaluate: the evaluation is up to date with the keep-sets, skipped (force=true redoes it)")
        return
    print(result.outputs["summary"].round(4).to_string(index=False))
    print("\neach method minus the best baseline at that fraction, paired by seed:")
    print(result.outputs["paired"].round(4).to_string(index=False))
    print(f"written: {', '.join(map(str, result.written))}")


if __name__ == "__main__":
    launch(main)
