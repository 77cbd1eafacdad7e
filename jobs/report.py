"""The analysis views as a static HTML page with PNG figures: <run_dir>/report/index.html.

    python jobs/report.py run_dir=runs/demo

Skipped when the files it reads (the sweep's shards, fit and pruning tables) are those of its
last run (force=true redoes it). Ends with the list of the run's outputs.
"""

import hydra
from omegaconf import DictConfig

from datamodels.cli import job
from datamodels.report import outputs, run_report


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@job()
def main(cfg: DictConfig) -> None:
    page = run_report(cfg.run_dir, cfg.force)
    print(f"report: {page}" if page else "report: up to date with the run's files, skipped (force=true redoes it)")
    print(f"\noutputs of the run in {cfg.run_dir}:")
    print("\n".join(outputs(cfg.run_dir)))


if __name__ == "__main__":
    main()
