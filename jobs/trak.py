"""TRAK scores of every target as a linear surrogate over the players: a fit of engine trak.

    python jobs/trak.py run_dir=runs/demo [trak.models=20 trak.proj_dim=512]

Needs the optional extra 'trak' (dattri). Retrains the fit split's first trak.models models of
the sweep, writes their TRAK fit beside the other fits (<run_dir>/fit, datamodels.fit.trak), which
the pruning method trak reads (prune.methods=[trak,...]). Skipped when the fit-ready layout and
settings are those of its last run (force=true redoes it).
"""

import hydra
from omegaconf import DictConfig, OmegaConf

from datamodels.cli import job, launch
from datamodels.fit.outputs import summary
from datamodels.fit.trak import TrakSettings, run_trak


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@job()
def main(cfg: DictConfig) -> None:
    settings = TrakSettings.from_config(OmegaConf.to_container(cfg.trak, resolve=True))
    result = run_trak(cfg.run_dir, settings, progress=cfg.progress, force=cfg.force)
    if result.up_to_date:
        print("trak: its inputs and settings are unchanged since the last run, skipped (force=true redoes it)")
        return
    print(summary(result.outputs["interactions"], result.outputs["metrics"]))
    print(f"wrote {', '.join(map(str, result.written))}")


if __name__ == "__main__":
    launch(main)
