"""The analysis views as a static HTML page with PNG figures: <run_dir>/report/index.html.

    python jobs/report.py run_dir=runs/demo

Skipped when the files it reads (the sweep's shards, fit and pruning tables) are those of its
last run (force=true redoes it). Ends with the list of the run's outputs.
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from datamodels.analysis import RunView, write_report
from datamodels.cli import job
from datamodels.stage_inputs import StageInputs
from datamodels.store import shard_files

READS = ("run.json", "fit/interactions.parquet", "fit/fit_metrics.parquet", "prune/keep_sets.parquet",
         "prune/evaluation.parquet")
OUTPUTS = (("shards/shard-*.parquet", "margins of every model (pandas, pyarrow, DuckDB)"),
           ("fit/interactions.parquet", "main effects, synergy and redundancy per target"),
           ("fit/fit_metrics.parquet", "held-out R^2 and Spearman (LDS) per target and method"),
           ("prune/evaluation.csv", "holdout accuracy of pruned training sets (and .png)"),
           ("report/index.html", "all of it as a page; notebooks in analysis/"))


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@job()
def main(cfg: DictConfig) -> None:
    run_dir = Path(cfg.run_dir)
    out = run_dir / "report"
    # shards by name, size and time (as the fit-ready layout tracks them): reading them all is the sweep's size
    shards = {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in shard_files(run_dir / "shards")[0]}
    inputs = StageInputs(out / ".inputs.json", {name: run_dir / name for name in READS}, {"shards": shards})
    if not cfg.force and inputs.unchanged([out / "index.html"]):
        print(f"report: {out / 'index.html'} is up to date with the run's files, skipped (force=true redoes it)")
    else:
        print(f"report: {write_report(RunView.open(run_dir), out)}")
        inputs.save()
    print(f"\noutputs of the run in {run_dir}:")
    for pattern, what in OUTPUTS:
        if any(run_dir.glob(pattern)):
            print(f"  {pattern:<28} {what}")


if __name__ == "__main__":
    main()
