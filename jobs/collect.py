"""Validate a sweep's shards, report missing or duplicated model indices, and lay them out for the fit.

    python jobs/collect.py [run_dir=...]

Exits 1 when models are missing, and prints the command that trains exactly the missing shards;
the fit-ready layout (``<run_dir>/fit_ready/``, :mod:`datamodels.store.fit_ready`) is still built from
the models present, as partial sweeps are fitted too. A layout built from other shards than
the run holds now is rebuilt. Never deletes or rewrites a shard.
"""

import sys

import hydra
from omegaconf import DictConfig

from datamodels.cli import job, launch
from datamodels.store.fit_ready import refresh_fit_ready
from datamodels.store.shards import collect_run


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@job()
def main(cfg: DictConfig) -> None:
    expected, report = collect_run(run_dir := cfg.run_dir)
    print(report.summary())
    if len(report.present):
        layout, changes = refresh_fit_ready(run_dir, progress=cfg.progress)
        if changes:
            print(f"the fit-ready layout was stale ({changes}): rebuilt")
        size = sum(p.stat().st_size for p in layout.path.iterdir())
        print(f"fit-ready layout: {layout.path} ({len(layout.model_index)} models, {size / 1e6:,.1f} MB)")
    if not report.complete:
        shards = report.missing_shards(expected["models_per_shard"])
        if shards:
            print(f"to train the missing shards: python jobs/sweep.py -m sweep.shard={','.join(map(str, shards))} "
                  f"run_dir={run_dir} hydra/launcher=joblib")
        sys.exit(1)


if __name__ == "__main__":
    launch(main)
