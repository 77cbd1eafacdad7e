"""Choose keep-sets of the training players at a grid of kept fractions, for every method.

    python jobs/prune.py [prune.fractions=[1.0,0.5,0.25]] [prune.methods=[interactions,random]]

Reads the run's sweep and <run_dir>/fit/interactions.parquet; writes <run_dir>/prune/keep_sets.parquet.
"""

from pathlib import Path

import hydra
import pandas as pd
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from datamodels.cli import job
from datamodels.pruning import make_keep_sets
from datamodels.store import write_frame
from datamodels.sweep import SweepRun


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@job()
def main(cfg: DictConfig) -> None:
    run_dir = Path(to_absolute_path(cfg.run_dir))
    run = SweepRun.open(run_dir)
    fit_dir = run_dir / "fit"
    fit = None
    if (fit_dir / "fit_metrics.parquet").exists():
        fit = (pd.read_parquet(fit_dir / "interactions.parquet"), pd.read_parquet(fit_dir / "fit_metrics.parquet"))
    p = cfg.prune
    keep = make_keep_sets(run, fit, list(p.methods), list(p.fractions), fit_method=p.fit_method,
                          seed=p.seed, el2n_seeds=p.el2n_seeds, el2n_epochs=p.el2n_epochs)
    path = write_frame(run_dir / "prune" / "keep_sets.parquet", keep,
                       {"fingerprint": run.meta["fingerprint"], "n": run.n, "source_run": str(run_dir)})
    print(f"{path}: {len(keep)} keep-sets ({', '.join(p.methods)} at fractions {list(p.fractions)})")


if __name__ == "__main__":
    main()
