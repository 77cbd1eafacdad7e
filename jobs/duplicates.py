"""Find a run's duplicates: pairs of players whose pair terms cancel their main effects.

    python jobs/duplicates.py run_dir=runs/demo [duplicates.min_fraction=0.5] [duplicates.engine=proxyspex]

Writes <run_dir>/duplicates/pairs.parquet (every candidate pair: the fraction of its members'
main effect its pair term cancels over the targets, 1 for exact duplicates, with its standard
error and test) and <run_dir>/duplicates/candidates.parquet (the duplicate pairs joined into
groups, best first: members, score, size, pairs, targets, best_pair; datamodels.pruning.duplicates).
Needs a fit with pair terms (jobs/fit.py fit=proxyspex); works on an imported run without
images. The report shows the top groups (jobs/report.py).
"""

import hydra
from omegaconf import DictConfig, OmegaConf

from datamodels.cli import job, launch
from datamodels.pruning.duplicates import DuplicatesSettings, run_duplicates


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@job()
def main(cfg: DictConfig) -> None:
    settings = DuplicatesSettings.from_config(OmegaConf.to_container(cfg.duplicates, resolve=True))
    result = run_duplicates(cfg.run_dir, settings, progress=cfg.progress, force=cfg.force)
    pairs, groups = result.outputs["pairs"], result.outputs["candidates"]
    print(f"{len(pairs)} candidate pairs, {int(pairs['duplicate'].sum())} duplicates; {len(groups)} candidate groups "
          f"({int(groups['size'].sum()) if len(groups) else 0} players); best: "
          f"{groups['members'].iloc[0] if len(groups) else 'none'}; written: {result.written[-1]}")


if __name__ == "__main__":
    launch(main)
