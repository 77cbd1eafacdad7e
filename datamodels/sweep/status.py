"""Progress of a sweep: shards done, queued or running, failed (with their error), missing, and
the models checkpointed in unfinished shards; then the command that trains exactly what is missing.

Jobs are those recorded by ``hydra/launcher=slurm`` in ``<run_dir>/logs/slurm/submission-*.json``;
their states come from ``sacct``. Without SLURM (a local sweep) only the files are read.
"""

import shlex
import subprocess
from pathlib import Path
from typing import Sequence

import numpy as np

from ..run.claims import ShardClaim
from ..run.folder import RunFolder
from ..store.shards import collect_run, compact_ranges, partial_models

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


def multirun_command(argv0: str, hydra_overrides: Sequence[str], overrides: Sequence[str]) -> str:
    """The command that runs ``overrides`` as a multirun of ``argv0`` with a submission's
    ``hydra_overrides``: what status prints, and the SLURM launcher for its failed jobs."""
    # -m already says multirun; the recorded hydra.mode would repeat it
    hydra = [o for o in hydra_overrides if not o.startswith("hydra.mode=")]
    return shlex.join(["python", argv0, "-m", *hydra, *overrides])


def error_tail(stderr: str) -> str:
    path = Path(stderr)
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()] if path.exists() else []
    return "\n      ".join(lines[-ERROR_LINES:]) or "(no error output)"


def sweep_status(run_dir) -> list[str]:
    """The lines ``jobs/status.py`` prints for a run folder."""
    lines = []
    folder = RunFolder(run_dir)
    run_dir = folder.root
    expected, report = collect_run(run_dir)
    per_shard, num_shards = expected["models_per_shard"], -(-expected["num_models"] // expected["models_per_shard"])
    missing = report.missing_shards(per_shard)
    lines.append(f"{run_dir}: {num_shards - len(missing)} of {num_shards} shards done "
                 f"({len(report.present)} of {report.num_models} models)")

    # the latest job of every shard, from the launcher's submission records (of this stage only:
    # a sharded fit logs there too)
    submissions = [record for record in folder.submissions()
                   if any(o.startswith("sweep.shard=") for o in record["jobs"][0]["tasks"][0])]
    latest: dict[int, tuple[str, str]] = {}
    for record in submissions:
        for job in record["jobs"]:
            for overrides, stderr in zip(job["tasks"], job["stderr"]):
                shard = next((o.split("=", 1)[1] for o in overrides if o.startswith("sweep.shard=")), None)
                if shard is not None:
                    latest[int(shard)] = (job["job_id"], stderr)
    states = job_states(sorted({latest[s][0] for s in missing if s in latest}))
    claims = {s: ShardClaim(folder, s) for s in missing if folder.claim(s).exists()}
    # A claim whose holder on this host has exited, or whose lifetime has passed, holds nothing:
    # the next sweep takes it over (ShardClaim.acquire).
    dead = {s: claim.exited_holder() for s, claim in claims.items()}
    dead = {s: (f"claimed by pid {pid} on this host, which has exited" if pid is not None
                else f"its claim by {claims[s].holder.split(', claimed until')[0]} has expired")
            for s, pid in dead.items() if pid is not None or claims[s].expired()}
    claimed = [s for s in claims if s not in dead]  # being trained by a process, SLURM's or not
    active = [s for s in missing if states.get(latest.get(s, ("",))[0]) in ACTIVE or s in claimed]
    failed = [s for s in missing if s in latest and s not in active and latest[s][0] in states]
    if active:
        lines.append(f"  queued or running: {len(active)} shards ({compact_ranges(np.array(active))})")
    for shard in claimed:
        lines.append(f"  shard {shard}: being trained by {claims[shard].holder}")
    for shard, why in dead.items():
        if shard not in active:  # else SLURM runs (or will run) a job for it
            lines.append(f"  shard {shard}: {why}: free to train")
    for shard in failed:
        job_id, stderr = latest[shard]
        lines.append(f"  failed: shard {shard}, job {job_id} {states[job_id]}:\n      {error_tail(stderr)}")
    checkpointed = partial_models(folder.shards)
    if checkpointed:
        lines.append("  models checkpointed in unfinished shards: "
                     + ", ".join(f"shard {s}: {k}" for s, k in sorted(checkpointed.items())))
    todo = [s for s in missing if s not in active]
    if todo:
        lines.append(f"  missing, not queued: {len(todo)} shards ({compact_ranges(np.array(todo))})")
        # The run folder holds the sweep's settings: its run_dir is all the command needs, with
        # the launcher of the last SLURM submission if there was one.
        if submissions:
            script, hydra_overrides = submissions[-1]["argv0"], submissions[-1]["hydra_overrides"]
        else:
            script, hydra_overrides = "jobs/sweep.py", ["hydra/launcher=joblib"]
        command = multirun_command(script, hydra_overrides, [f"run_dir={run_dir}",
                                                              f"sweep.shard={','.join(map(str, todo))}"])
        lines.append(f"to train exactly these shards:\n  {command}")
    return lines
