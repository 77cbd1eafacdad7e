"""Validate a sweep's shards and report missing or duplicated model indices.

    python jobs/collect.py [run_dir=...]

Exits 1 when models are missing, and prints the command that trains exactly the missing shards.
Never deletes or rewrites a shard.
"""

import sys
from pathlib import Path

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from datamodels.store import collect_run


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_dir = Path(to_absolute_path(cfg.run_dir))
    expected, report = collect_run(run_dir)
    print(report.summary())
    if not report.complete:
        shards = report.missing_shards(expected["models_per_shard"])
        if shards:
            print(f"to train the missing shards: python jobs/sweep.py -m sweep.shard={','.join(map(str, shards))} "
                  f"run_dir={run_dir} (plus the sweep's other settings)")
        sys.exit(1)


if __name__ == "__main__":
    main()
