"""Progress of a sweep: shards done, queued or running, failed (with their error), missing, and
the models checkpointed in unfinished shards; then the command that trains exactly what is missing.

    python jobs/status.py run_dir=runs/demo        (make status ARGS=run_dir=runs/demo)

Jobs are those recorded by ``hydra/launcher=slurm`` in ``<run_dir>/logs/slurm/submission-*.json``;
their states come from ``sacct`` (datamodels.sweep.status). Without SLURM only the files are read.
"""

import hydra
from omegaconf import DictConfig

from datamodels.cli import job, launch
from datamodels.sweep.status import sweep_status


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@job()
def main(cfg: DictConfig) -> None:
    print("\n".join(sweep_status(cfg.run_dir)))


if __name__ == "__main__":
    launch(main)
