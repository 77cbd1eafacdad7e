"""Choose keep-sets of the training players at a grid of kept fractions, for every method.

    python jobs/prune.py [prune.fractions=[0.5,0.2]] [prune.methods=[interactions,stratified]]
    python jobs/prune.py prune.surrogates=matched     # a sweep over an alpha grid, fitted per alpha

Reads the run's sweep and its fits (<run_dir>/fit, or <run_dir>/fit/alpha-F for matched
surrogates); writes <run_dir>/prune/keep_sets.parquet. datamodels/pruning/ defines the methods.
Without prune.methods, a run without its dataset (planted, imported with dataset=none) leaves
out el2n and ccs, which train on its images, and says so in one line; named, they are refused.
Skipped when the fits and settings are those of its last run (force=true redoes it).
"""

import hydra
from omegaconf import DictConfig, OmegaConf

from datamodels.cli import job, launch
from datamodels.pruning import PruneSettings, run_prune


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@job()
def main(cfg: DictConfig) -> None:
    settings = PruneSettings.from_config(OmegaConf.to_container(cfg.prune, resolve=True))
    result = run_prune(cfg.run_dir, settings, progress=cfg.progress, force=cfg.force, announce=print)
    if result.up_to_date:
        print("prune: the keep-sets are up to date with the fits and settings, skipped (force=true redoes it)")
        return
    keep, path = result.outputs["keep_sets"], result.written[0]
    print(f"{path}: {len(keep)} keep-sets ({', '.join(keep['method'].unique())} at fractions {settings.fractions}; "
          f"{settings.draws} draws of each randomised method)")


if __name__ == "__main__":
    launch(main)
