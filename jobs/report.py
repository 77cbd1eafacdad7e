"""The analysis views as a static HTML page with PNG figures: <run_dir>/report/index.html.

    python jobs/report.py run_dir=runs/demo

Skipped when the files it reads (the sweep's shards, fit and pruning tables) are those of its
last run (force=true redoes it). Prints the page's conclusion of each section (the strongest
synergy and redundancy pair among them, as the fit's summary names them), then the list of the
run's outputs.
"""

import hydra
from omegaconf import DictConfig

from datamodels.cli import job, launch
from datamodels.views.report import conclusions, outputs, run_report


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@job()
def main(cfg: DictConfig) -> None:
    result = run_report(cfg.run_dir, progress=cfg.progress, force=cfg.force)
    print("report: up to date with the run's files, skipped (force=true redoes it)" if result.up_to_date
          else f"report: {result.written[0]}")
    if lines := conclusions(cfg.run_dir):  # the page's own sentences: the terminal and the page agree
        print("\nwhat the report concludes, section by section:")
        print("\n".join(f"  {line}" for line in lines))
    print(f"\noutputs of the run in {cfg.run_dir}:")
    print("\n".join(outputs(cfg.run_dir)))


if __name__ == "__main__":
    launch(main)
