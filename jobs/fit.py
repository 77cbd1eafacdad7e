"""Fit a sparse surrogate of every target's margin and judge it on held-out models.

    python jobs/fit.py                        # ProxySPEX on every target of run_dir's sweep
    python jobs/fit.py fit=linear             # the linear datamodel baseline
    python jobs/fit.py fit.start=0 fit.stop=100 fit.workers=2
    python jobs/fit.py fit.alpha=0.2          # only the masks drawn at alpha 0.2 (sweep.alpha=[...] grid)
    python jobs/fit.py -m 'fit.part=range(0,4)' fit.parts=4 hydra/launcher=slurm   # then jobs/fit_merge.py

Writes <run_dir>/fit/interactions.parquet and fit_metrics.parquet (datamodels.fitting); with
fit.part, the part's tables under <run_dir>/fit/parts/; with fit.alpha=A, under <run_dir>/fit/alpha-A/ (make fit-slurm PARTS=4 does both steps).
A whole fit whose fit-ready layout and settings are those of its last run is skipped (force=true redoes it).
"""

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from datamodels.cli import job
from datamodels.errors import UserError
from datamodels.fitting import FILES, fit_dir, fit_inputs, run_fit, run_fit_part, summary


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@job()
def main(cfg: DictConfig) -> None:
    fit = OmegaConf.to_container(cfg.fit, resolve=True)
    settings = (fit["method"], fit["params"], fit["targets"], fit["start"], fit["stop"], fit["heldout_fraction"],
                fit["split_seed"], fit["workers"], cfg.progress)
    if fit["part"] is not None:
        if fit["parts"] is None:
            raise UserError(f"fit.part={fit['part']} needs fit.parts, the number of parts the targets are split into")
        paths = run_fit_part(to_absolute_path(cfg.run_dir), fit["part"], fit["parts"], *settings, alpha=fit["alpha"])
        print(f"part {fit['part']} of {fit['parts']}: " + (f"wrote {', '.join(map(str, paths))}" if paths
                                                          else "already written, skipped"))
        return
    run_dir = to_absolute_path(cfg.run_dir)
    inputs = fit_inputs(run_dir, fit["method"], {k: fit[k] for k in ("params", "targets", "start", "stop",
                                                                      "heldout_fraction", "split_seed", "alpha")},
                        fit["alpha"], cfg.progress)
    if not cfg.force and inputs.unchanged(fit_dir(run_dir, fit["alpha"]) / name for name in FILES):
        print(f"fit={fit['method']}: its inputs and settings are unchanged since the last fit, skipped "
              f"(force=true redoes it)")
        return
    interactions, metrics, paths = run_fit(run_dir, *settings, alpha=fit["alpha"])
    inputs.save()
    print(summary(interactions, metrics))
    print(f"wrote {', '.join(map(str, paths))}")


if __name__ == "__main__":
    main()
