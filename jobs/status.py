"""Progress of a sweep: shards done, queued or running, failed (with their error), missing, and
the models checkpointed in unfinished shards; then the command that trains exactly what is missing.

    python jobs/status.py run_dir=runs/demo        (make status ARGS=run_dir=runs/demo)

Jobs are those recorded by ``hydra/launcher=slurm`` in ``<run_dir>/logs/slurm/submission-*.json``;
their states come from ``sacct``. Without SLURM (a local sweep) only the files are read.
"""

import subprocess
from pathlib import Path

import hydra
import numpy as np
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from datamodels.cli import job
from datamodels.store import collect_run, compact_ranges, partial_models
from hydra_plugins.datamodels_slurm.launcher import multirun_command, read_submissions

ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED", "REQUEUE_HOLD"}
ERROR_LINES = 6


def job_states(job_ids: list[str]) -> dict[str, str]:
    """SLURM state of each job (array task ids like 12_3); empty where sacct is unavailable."""
    if not job_ids:
        return {}
    try:
        out = subprocess.run(["sacct", "-X", "-n", "--parsable2", "-o", "JobID,State", "-j", ",".join(job_ids)],
                             capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    rows = (line.split("|") for line in out.splitlines() if "|" in line)
    return {row[0]: row[1].split()[0] for row in rows if row[0] != "JobID"}  # "CANCELLED by 0" -> CANCELLED


def error_tail(stderr: str) -> str:
    path = Path(stderr)
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()] if path.exists() else []
    return "\n      ".join(lines[-ERROR_LINES:]) or "(no error output)"


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@job()
def main(cfg: DictConfig) -> None:
    run_dir = Path(to_absolute_path(cfg.run_dir))
    expected, report = collect_run(run_dir)
    per_shard, num_shards = expected["models_per_shard"], -(-expected["num_models"] // expected["models_per_shard"])
    missing = report.missing_shards(per_shard)
    print(f"{run_dir}: {num_shards - len(missing)} of {num_shards} shards done "
          f"({len(report.present)} of {report.num_models} models)")

    # the latest job of every shard, from the launcher's submission records (of this stage only:
    # a sharded fit logs there too)
    submissions = [record for record in read_submissions(run_dir / "logs" / "slurm")
                   if any(o.startswith("sweep.shard=") for o in record["jobs"][0]["tasks"][0])]
    latest: dict[int, tuple[str, str]] = {}
    for record in submissions:
        for job in record["jobs"]:
            for overrides, stderr in zip(job["tasks"], job["stderr"]):
                shard = next((o.split("=", 1)[1] for o in overrides if o.startswith("sweep.shard=")), None)
                if shard is not None:
                    latest[int(shard)] = (job["job_id"], stderr)
    states = job_states(sorted({latest[s][0] for s in missing if s in latest}))
    active = [s for s in missing if states.get(latest.get(s, ("",))[0]) in ACTIVE]
    failed = [s for s in missing if s in latest and s not in active and latest[s][0] in states]
    if active:
        print(f"  queued or running: {len(active)} shards ({compact_ranges(np.array(active))})")
    for shard in failed:
        job_id, stderr = latest[shard]
        print(f"  failed: shard {shard}, job {job_id} {states[job_id]}:\n      {error_tail(stderr)}")
    checkpointed = partial_models(run_dir / "shards")
    if checkpointed:
        print("  models checkpointed in unfinished shards: "
              + ", ".join(f"shard {s}: {k}" for s, k in sorted(checkpointed.items())))
    todo = [s for s in missing if s not in active]
    if todo:
        print(f"  missing, not queued: {len(todo)} shards ({compact_ranges(np.array(todo))})")
        # The run folder holds the sweep's settings: its run_dir is all the command needs, with
        # the launcher of the last SLURM submission if there was one.
        if submissions:
            script, hydra_overrides = submissions[-1]["argv0"], submissions[-1]["hydra_overrides"]
        else:
            script, hydra_overrides = "jobs/sweep.py", ["hydra/launcher=joblib"]
        command = multirun_command(script, hydra_overrides, [f"run_dir={run_dir}",
                                                              f"sweep.shard={','.join(map(str, todo))}"])
        print(f"to train exactly these shards:\n  {command}")


if __name__ == "__main__":
    main()
