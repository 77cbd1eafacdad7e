"""Train the models of one shard (``sweep.shard=K``) or of every shard, and write their margins.

    python jobs/sweep.py                                          # every shard, one after another
    python jobs/sweep.py -m sweep.shard='range(0,8)' hydra/launcher=joblib   # 8 shards in parallel

Shards already written and valid are skipped, so re-running resumes a sweep; a shard another
process is training is skipped too. A multirun reports once, at its end.
"""

import hydra
from omegaconf import DictConfig, OmegaConf

from datamodels.cli import in_joblib_worker, in_multirun, job, launch
from datamodels.processes import worker_slot
from datamodels.sweep.stage import SweepRun


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@job(creates_run=True)
def main(cfg: DictConfig) -> None:
    run = SweepRun(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True), cfg.run_dir)
    shards = range(run.num_shards) if cfg.sweep.shard is None else [int(cfg.sweep.shard)]
    for shard in shards:
        run.shard_models(shard)  # refuse a bad shard number before any work
    # the workers of a parallel sweep share the terminal: one progress line each
    line = worker_slot() if in_joblib_worker() else None
    outcomes = [run.run_shard(shard, progress=cfg.progress, progress_line=line) for shard in shards]
    if not in_multirun():  # a multirun reports once, at its end (datamodels.cli.SweepSummary)
        print(f"{run.shard_dir}: {outcomes.count('written')} shards written, {outcomes.count('present')} already "
              f"present, {outcomes.count('claimed')} being trained by another process "
              f"({run.num_models} models in {run.num_shards} shards of {run.models_per_shard})")


if __name__ == "__main__":
    launch(main)
