"""Fit a sparse surrogate of every target's margin and judge it on held-out models.

    python jobs/fit.py                        # ProxySPEX on every target of run_dir's sweep
    python jobs/fit.py fit=linear             # the linear datamodel baseline
    python jobs/fit.py fit.start=0 fit.stop=100 fit.workers=2
    python jobs/fit.py fit.alpha=0.2          # only the masks drawn at alpha 0.2 (sweep.alpha=[...] grid)
    python jobs/fit.py -m 'fit.part=range(0,4)' fit.parts=4 hydra/launcher=slurm   # then jobs/fit_merge.py

Writes <run_dir>/fit/interactions.parquet and fit_metrics.parquet (datamodels.fit.stage; with
fit.part, the part's tables under fit/parts/; with fit.alpha=A, under fit/alpha-A/). A whole fit
whose fit-ready layout and settings are those of its last run is skipped (force=true redoes it).
"""

import hydra
from omegaconf import DictConfig, OmegaConf

from datamodels.cli import job, launch
from datamodels.fit.outputs import summary
from datamodels.fit.stage import FitSettings, run_fit, run_fit_part


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@job()
def main(cfg: DictConfig) -> None:
    settings = FitSettings.from_config(OmegaConf.to_container(cfg.fit, resolve=True))
    if settings.part is not None:
        part = run_fit_part(cfg.run_dir, settings, progress=cfg.progress, force=cfg.force, announce=print)
        print(f"part {settings.part} of {settings.parts}: "
              + ("already written, skipped (force=true redoes it)" if part.up_to_date
                 else f"wrote {', '.join(map(str, part.written))}"))
    elif (result := run_fit(cfg.run_dir, settings, progress=cfg.progress, force=cfg.force, announce=print)).up_to_date:
        print(f"fit={settings.engine}: its inputs and settings are unchanged since the last fit, skipped "
              f"(force=true redoes it)")
    else:
        from datamodels.fit.results import FitView  # the margins' sd: pairs ranked as the report ranks them

        print(summary(result.outputs["interactions"], result.outputs["metrics"], FitView.open(cfg.run_dir).margin_sd))
        print(f"wrote {', '.join(map(str, result.written))}")


if __name__ == "__main__":
    launch(main)
