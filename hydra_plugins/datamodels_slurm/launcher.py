"""A subclass of hydra-submitit-launcher's ``SlurmLauncher`` that adds what a long sweep needs:

- jobs are submitted as several arrays when there are more than the cluster's MaxArraySize
  (``max_array_size``; null reads it from ``scontrol show config``), all before any waiting;
- with ``tasks_per_node=N`` (one process per GPU) each task of an array element runs its own
  Hydra job (shard): element ``e`` runs jobs ``e*N .. e*N+N-1``, task ``SLURM_LOCALID`` one each;
- every submission is recorded in ``<submitit_folder>/submission-<first job id>.json`` (job ids,
  the overrides of each task, its log files), which ``jobs/status.py`` reads;
- after waiting, every failed job is listed with its error text, followed by the command that
  resubmits exactly the failed jobs; the launch then fails as a whole.

The worker side (``__call__``: load the job's config, run it) and submitit's checkpointing
(``checkpoint``: on preemption or time limit, requeue the same call) are the parent's.
"""

import json
import logging
import os
import re
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf, SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import OmegaConf

log = logging.getLogger(__name__)

DEFAULT_MAX_ARRAY_SIZE = 1000
ERROR_LINES = 15  # of each failed job's error text


@dataclass
class DatamodelsSlurmConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.datamodels_slurm.launcher.DatamodelsSlurmLauncher"
    max_array_size: Optional[int] = None  # null: the cluster's MaxArraySize


ConfigStore.instance().store(group="hydra/launcher", name="datamodels_slurm", node=DatamodelsSlurmConf,
                             provider="datamodels")


class LaunchError(RuntimeError):
    """Some jobs of a launch failed; the message lists them and the command that resubmits them."""


def cluster_max_array_size() -> int:
    try:
        config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return DEFAULT_MAX_ARRAY_SIZE
    found = re.search(r"^MaxArraySize\s*=\s*(\d+)", config, re.MULTILINE)
    return int(found.group(1)) if found else DEFAULT_MAX_ARRAY_SIZE


def chunks(items: Sequence, size: int) -> list[Sequence]:
    if size < 1:
        raise ValueError(f"hydra.launcher.max_array_size must be >= 1, got {size}")
    return [items[i:i + size] for i in range(0, len(items), size)]


def resubmit_commands(argv0: str, hydra_overrides: Sequence[str], every_job: Sequence[Sequence[str]],
                      failed: Sequence[Sequence[str]]) -> list[str]:
    """The multirun command(s) that run exactly the ``failed`` jobs of a sweep of ``every_job``.

    When the jobs differ in one setting only (``sweep.shard``, ``fit.part``) that is one command
    listing its failed values; otherwise one command per failed job.
    """
    from datamodels.sweep.status import multirun_command  # lazily: plugin discovery stays fast

    def key(override: str) -> str:
        return override.split("=", 1)[0]

    varying = {key(o) for job in every_job for o in job} - {key(o) for o in set.intersection(
        *(set(job) for job in every_job))}
    if len(varying) == 1:
        (name,) = varying
        values = [o.split("=", 1)[1] for job in failed for o in job if key(o) == name]
        common = [o for o in failed[0] if key(o) != name]
        return [multirun_command(argv0, hydra_overrides, common + [f"{name}={','.join(values)}"])]
    return [multirun_command(argv0, hydra_overrides, job) for job in failed]


class DatamodelsSlurmLauncher(SlurmLauncher):
    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.max_array_size = self.params.pop("max_array_size")

    def __call__(self, *per_task: tuple) -> Optional[JobReturn]:
        """Run the Hydra job of this task (SLURM_LOCALID) among the array element's jobs."""
        task = int(os.environ.get("SLURM_LOCALID", 0))
        if task >= len(per_task):
            return None  # the last element of an array may have fewer jobs than tasks
        result = super().__call__(*per_task[task])
        error = _job_error(result)
        if error is not None:  # Hydra keeps it in the result; the job's log must say it too (jobs/status.py)
            traceback.print_exception(error)
        return result

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit  # lazily, as the parent does: plugin discovery stays fast

        params = dict(self.params)
        folder = Path(params.pop("submitit_folder"))
        executor = submitit.AutoExecutor(cluster="slurm", folder=folder,
                                         slurm_max_num_timeout=params.pop("max_num_timeout"))
        generic = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in generic else f"slurm_{k}": v for k, v in params.items()})

        state = Singleton.get_state()
        calls = [(list(overrides), "hydra.sweep.dir", initial_job_idx + i, f"job_id_for_{initial_job_idx + i}", state)
                 for i, overrides in enumerate(job_overrides)]
        groups = chunks(calls, params["tasks_per_node"])  # one array element per group, one task per call
        arrays = chunks(groups, self.max_array_size or cluster_max_array_size())
        jobs = []
        for array in arrays:
            with executor.batch():
                jobs += [executor.submit(self, *group) for group in array]
        self._record(folder, jobs, groups)
        log.info(f"submitted {len(calls)} jobs as {len(arrays)} array(s) of {len(groups)} elements in all; "
                 f"logs in {folder}")

        returns, failed, reports = [], [], []
        for job, group in zip(jobs, groups):
            try:
                results = job.results()
            except Exception as err:  # died without results: cancelled, killed, out of memory, node failure
                results = [err] * len(group)
            for call, result in zip(group, results):
                error = result if isinstance(result, Exception) else _job_error(result)
                if error is None:
                    returns.append(result)
                    continue
                failed.append(call[0])
                text = "\n    ".join(_excerpt(f"{type(error).__name__}: {error}"))
                reports.append(f"  job {job.job_id} ({' '.join(filter_overrides(call[0]))}):\n    {text}")
        if failed:
            hydra = OmegaConf.to_container(self.config.hydra.overrides.hydra)
            commands = resubmit_commands(sys.argv[0], hydra, job_overrides, failed)
            raise LaunchError(f"{len(failed)} of {len(calls)} jobs failed (logs in {folder}):\n"
                              + "\n".join(reports) + "\nto resubmit exactly these:\n  " + "\n  ".join(commands))
        return returns

    def _record(self, folder: Path, jobs: list, groups: list) -> None:
        from submitit.core.utils import JobPaths

        from datamodels.run.folder import submission_path
        from datamodels.tables import write_atomic

        record = {
            "argv0": sys.argv[0],
            "hydra_overrides": OmegaConf.to_container(self.config.hydra.overrides.hydra),
            "jobs": [{"job_id": job.job_id, "tasks": [call[0] for call in group],
                      "stderr": [str(JobPaths(folder, job.job_id, t).stderr) for t in range(len(group))]}
                     for job, group in zip(jobs, groups)],
        }
        path = submission_path(folder, jobs[0].job_id.split('_')[0])
        write_atomic(path, lambda tmp: tmp.write_text(json.dumps(record, indent=1)))


def _excerpt(text: str) -> list[str]:
    """The first lines of an error (submitit puts the job's state there) and its last ones."""
    lines = text.strip().splitlines()
    return lines if len(lines) <= ERROR_LINES else lines[:3] + ["..."] + lines[3 - ERROR_LINES:]


def _job_error(result: JobReturn) -> Optional[BaseException]:
    try:
        result.return_value  # re-raises the job's exception
    except Exception as err:
        return err
    return None
