"""Rank a run's candidate duplicate groups: players its fit finds redundant for many targets.

    python jobs/duplicates.py run_dir=runs/demo [duplicates.min_score=1.0] [duplicates.method=proxyspex]

Writes <run_dir>/duplicates/candidates.parquet: one row per group, best first, with members
(list of players), score (redundancy summed over the targets, in units of each target's residual
sd), size, pairs, targets, best_pair (datamodels.duplicates). Needs a fit with pair terms
(jobs/fit.py fit=proxyspex); works on an imported run without images. The report shows the top
groups (jobs/report.py).
"""

import hydra
from omegaconf import DictConfig

from datamodels.cli import job
from datamodels.duplicates import read_candidates, run_duplicates


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@job()
def main(cfg: DictConfig) -> None:
    path = run_duplicates(cfg.run_dir, cfg.duplicates.method, cfg.duplicates.min_score)
    groups = read_candidates(cfg.run_dir)
    print(f"{len(groups)} candidate groups ({int(groups['size'].sum()) if len(groups) else 0} players); "
          f"best: {groups['members'].iloc[0] if len(groups) else 'none'}; written: {path}")


if __name__ == "__main__":
    main()
