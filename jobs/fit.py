"""Fit a sparse surrogate of every target's margin and judge it on held-out models.

    python jobs/fit.py                        # ProxySPEX on every target of run_dir's sweep
    python jobs/fit.py fit=linear             # the linear datamodel baseline
    python jobs/fit.py fit.start=0 fit.stop=100 fit.workers=2

Writes <run_dir>/fit/interactions.parquet and fit_metrics.parquet (datamodels.fitting).
"""

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from datamodels.fitting import run_fit, summary


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    fit = OmegaConf.to_container(cfg.fit, resolve=True)
    interactions, metrics, paths = run_fit(
        to_absolute_path(cfg.run_dir), fit["method"], fit["params"], fit["targets"], fit["start"],
        fit["stop"], fit["heldout_fraction"], fit["split_seed"], fit["workers"], cfg.progress)
    print(summary(interactions, metrics))
    print(f"wrote {', '.join(map(str, paths))}")


if __name__ == "__main__":
    main()
