"""Write one keep-set with its provenance, for a curation script to consume.

    python jobs/curate.py curate.method=interactions curate.fraction=0.6 [curate.export_arrays=true]

Writes <out>/keep_set.parquet (player, example: indices into the train split and into the
dataset), <out>/card.json (method, fraction, source run, dataset fingerprint, sizes) and, with
export_arrays, <out>/dataset.npz (the kept examples' uint8 images and labels).
"""

from pathlib import Path

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from datamodels.cli import job
from datamodels.pruning import load_keep_sets, curate
from datamodels.sweep import SweepRun


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@job()
def main(cfg: DictConfig) -> None:
    run_dir = Path(to_absolute_path(cfg.run_dir))
    run = SweepRun.open(run_dir)
    keep, _, source = load_keep_sets(run, cfg.prune.keep_sets and to_absolute_path(cfg.prune.keep_sets))
    c = cfg.curate
    out = Path(to_absolute_path(c.out)) if c.out else run_dir / "curated" / f"{c.method}-{c.fraction}"
    written = curate(run, keep, c.method, float(c.fraction), out, source=str(source), export_arrays=c.export_arrays)
    print("written: " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    main()
