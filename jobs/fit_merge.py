"""Merge the parts of a sharded fit into the run's fit tables.

    python jobs/fit.py -m 'fit.part=range(0,4)' fit.parts=4 [hydra/launcher=slurm]   # the parts
    python jobs/fit_merge.py fit.parts=4                                             # then this

Writes <run_dir>/fit/interactions.parquet and fit_metrics.parquet from
<run_dir>/fit/parts/<engine>/; refuses missing parts and targets fitted twice.
"""

import hydra
from omegaconf import DictConfig

from datamodels.cli import job, launch
from datamodels.errors import UserError
from datamodels.fit.outputs import merge_fit_parts


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@job()
def main(cfg: DictConfig) -> None:
    if cfg.fit.parts is None:
        raise UserError("jobs/fit_merge.py needs fit.parts=P, the number of parts the fit was split into")
    paths = merge_fit_parts(cfg.run_dir, cfg.fit.engine, int(cfg.fit.parts), cfg.fit.alpha)
    print(f"merged {cfg.fit.parts} parts of {cfg.fit.engine} into {', '.join(map(str, paths))}")


if __name__ == "__main__":
    launch(main)
