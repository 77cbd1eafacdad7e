"""Write one keep-set with its provenance, for a curation script to consume.

    python jobs/curate.py curate.method=interactions curate.fraction=0.5 [curate.export_arrays=true] [force=true]

Writes <out>/keep_set.parquet (player, example: indices into the train split and into the
dataset), <out>/card.json (method, fraction, source run, dataset fingerprint, sizes) and, with
export_arrays, <out>/dataset.npz (the kept examples' uint8 images and labels). The folder is written
whole; one already there is refused, and replaced with force=true.
"""

import hydra
from omegaconf import DictConfig, OmegaConf

from datamodels.cli import job, launch
from datamodels.pruning import CurateSettings, run_curate


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@job()
def main(cfg: DictConfig) -> None:
    settings = CurateSettings.from_config(OmegaConf.to_container(cfg.curate, resolve=True))
    result = run_curate(cfg.run_dir, settings, progress=cfg.progress, force=cfg.force)
    print("written: " + ", ".join(str(p) for p in result.written))


if __name__ == "__main__":
    launch(main)
