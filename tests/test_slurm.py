"""Sweeps on SLURM (hydra/launcher=slurm), per-model checkpoints, status and fit parts.

The ``slurm`` tests run against a real single-node cluster (tests/slurm_cluster.py) and skip
where its binaries are absent; every wait is bounded.
"""

import json
import shlex
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import ROOT, TINY, compose_config, run_job, wait_for
from datamodels.fit.outputs import merge_fit_parts
from datamodels.fit.stage import FitSettings, run_fit, run_fit_part
from datamodels.run.folder import partial_dir
from datamodels.store.shards import StoreError, collect, load_sweep, partial_models, shard_files
from datamodels.sweep.stage import SweepRun
from hydra_plugins.datamodels_slurm.launcher import chunks, resubmit_commands
from test_fit_job import write_sweep

# A shard slow enough to be cancelled while it runs.
SLOW = TINY + ["train.epochs=30"]


# --------------------------------------------------------------------------- without SLURM


class Killed(Exception):
    pass


def test_a_shard_resumes_from_its_checkpointed_models_and_merges_them(tiny_config, tmp_path):
    run = SweepRun(tiny_config, tmp_path / "run")
    train, trained = run.train_one, []

    def killed_after_first_model(i):
        if i > 3:
            raise Killed
        return train(i)
    run.train_one = killed_after_first_model
    with pytest.raises(Killed):
        run.run_shard(1, progress=False)
    assert partial_models(run.shard_dir) == {1: 1} and shard_files(run.shard_dir) == ([], [])
    run.train_one = lambda i: trained.append(i) or train(i)
    assert run.run_shard(1, progress=False)
    assert trained == [4, 5] and not partial_dir(run.shard_dir, 1).exists()
    clean = SweepRun(tiny_config, tmp_path / "clean")
    clean.run_shard(1, progress=False)
    resumed, uninterrupted = load_sweep(run.run_dir), load_sweep(clean.run_dir)
    np.testing.assert_array_equal(resumed.margins, uninterrupted.margins)
    np.testing.assert_array_equal(resumed.packed_masks, uninterrupted.packed_masks)


def test_a_checkpoint_of_another_sweep_is_refused(tiny_config, tmp_path):
    SweepRun(tiny_config, tmp_path).checkpointed_pass(0, [0])
    other = SweepRun(compose_config(TINY + ["train.epochs=3"]), tmp_path)
    with pytest.raises(StoreError, match=r"model-000000.parquet belongs to a different sweep: config_hash="):
        other.checkpointed_pass(0, [0])


def test_arrays_are_split_below_the_limit_and_failures_resubmitted_by_one_command():
    assert [len(c) for c in chunks(list(range(7)), 3)] == [3, 3, 1]
    with pytest.raises(ValueError, match="max_array_size must be >= 1, got 0"):
        chunks([1], 0)
    jobs = [[f"sweep.shard={k}", "run_dir=/r", "train.lr=0.1"] for k in range(5)]
    assert resubmit_commands("jobs/sweep.py", ["hydra/launcher=slurm", "hydra.mode=MULTIRUN"], jobs,
                             [jobs[1], jobs[4]]) == [
        "python jobs/sweep.py -m hydra/launcher=slurm run_dir=/r train.lr=0.1 sweep.shard=1,4"]
    grid = [["a=1", "b=1"], ["a=1", "b=2"], ["a=2", "b=1"]]
    assert resubmit_commands("x.py", [], grid, [grid[2]]) == ["python x.py -m a=2 b=1"]


@pytest.mark.slow
def test_status_lists_done_missing_and_checkpointed_shards_with_the_command(tmp_path):
    run_dir = tmp_path / "run"
    run_job("sweep.py", "sweep.shard=1", *TINY, f"run_dir={run_dir}")
    SweepRun(compose_config(TINY), run_dir).checkpointed_pass(0, [0])
    out = run_job("status.py", *TINY, f"run_dir={run_dir}").stdout
    assert f"{run_dir}: 1 of 2 shards done (3 of 6 models)" in out
    assert "models checkpointed in unfinished shards: shard 0: 1" in out
    assert "missing, not queued: 1 shards (0)" in out
    command = out.split("to train exactly these shards:\n")[1].strip()
    assert command.startswith("python jobs/sweep.py -m ") and command.endswith("sweep.shard=0")
    assert f"run_dir={run_dir}" in command and "train.epochs" not in command  # the run folder holds them


def test_fit_parts_merge_into_the_fit_of_all_targets(tmp_path):
    write_sweep(tmp_path)
    for part in (2, 0):
        run_fit_part(tmp_path, FitSettings("linear", part=part, parts=3, workers=1), progress=False)
    with pytest.raises(StoreError, match=r"fit parts 1 of 3 \(linear\) are missing .* fit.part=1 fit.parts=3"):
        merge_fit_parts(tmp_path, "linear", 3)
    assert run_fit_part(tmp_path, FitSettings("linear", part=1, parts=3, workers=1), progress=False).written
    again = run_fit_part(tmp_path, FitSettings("linear", part=1, parts=3, workers=1), progress=False)
    assert again.up_to_date and not again.written  # written parts are not redone
    merge_fit_parts(tmp_path, "linear", 3)
    merged = pd.read_parquet(tmp_path / "fit" / "fit_metrics.parquet")
    whole = run_fit(tmp_path, FitSettings("linear", workers=1), progress=False).outputs["metrics"]
    assert list(merged["target"]) == [0, 1, 2]
    np.testing.assert_allclose(merged["r2"], whole["r2"])
    with pytest.raises(StoreError, match="is part 0 of 3 parts, not of fit.parts=2"):
        merge_fit_parts(tmp_path, "linear", 2)
    other = tmp_path / "other"
    write_sweep(other)
    run_fit_part(other, FitSettings("linear", part=0, parts=2, workers=1), progress=False)
    run_fit_part(other, FitSettings("linear", part=1, parts=2, targets=[0, 1], workers=1), progress=False)  # target 1 again
    with pytest.raises(StoreError, match=r"target 1 is fitted in both .*part-0000.* and .*part-0001"):
        merge_fit_parts(other, "linear", 2)
    with pytest.raises(ValueError, match=r"fit.part=3 must lie in 0..1 \(fit.parts=2\)"):
        run_fit_part(other, FitSettings("linear", part=3, parts=2, workers=1))


# --------------------------------------------------------------------------- on SLURM


def slurm_run(cluster, args, timeout=120, check=True):
    proc = subprocess.run(args, cwd=ROOT, env=cluster.env | {"OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def make_sweep(cluster, shards, overrides, check=True, timeout=120):
    return slurm_run(cluster, ["make", "sweep", f"SHARDS={shards}", "CPUS=1", "MEM=1",
                               f"ARGS={' '.join(overrides)} progress=false"], timeout, check)


def status(cluster, overrides):
    return slurm_run(cluster, [sys.executable, "jobs/status.py", *overrides]).stdout


def job_of(run_dir, shard, timeout=60, proc=None):
    """The SLURM job id that runs ``shard``, from the launcher's submission record (written while
    ``proc``, the launching command, runs)."""
    found = {}

    def recorded():
        for path in (run_dir / "logs" / "slurm").glob("submission-*.json"):
            for job in json.loads(path.read_text())["jobs"]:
                if f"sweep.shard={shard}" in job["tasks"][0]:
                    found["id"] = job["job_id"]
        return "id" in found
    wait_for(f"the submission record of shard {shard}", recorded, timeout, proc)
    return found["id"]


def state(cluster, job_id):
    return slurm_run(cluster, ["squeue", "-h", "-r", "--states=all", "-j", job_id, "-o", "%T"]).stdout.strip()


def job_logs(run_dir):
    return "".join(p.read_text() for p in (run_dir / "logs" / "slurm").glob("*_log.*"))


@pytest.mark.slurm
@pytest.mark.slow
def test_make_sweep_on_slurm_gives_the_local_sweep(slurm_cluster, tmp_path):
    overrides = TINY + ["sweep.num_models=3", "sweep.models_per_shard=1", f"run_dir={tmp_path / 'run'}"]
    proc = make_sweep(slurm_cluster, 3, overrides)
    assert "submitted 3 jobs as 2 array(s) of 3 elements in all" in proc.stdout + proc.stderr  # MaxArraySize is 2
    assert sorted(p.name for p in (tmp_path / "run" / "logs").iterdir())[-1] == "slurm"
    assert not [p for p in (tmp_path / "run" / "logs").glob("multirun-*/*") if p.is_dir() and p.name != ".hydra"]
    local = SweepRun(compose_config(overrides[:-1]), tmp_path / "local")
    for shard in range(3):
        local.run_shard(shard, progress=False)
    on_slurm, here = load_sweep(tmp_path / "run"), load_sweep(tmp_path / "local")
    np.testing.assert_array_equal(on_slurm.model_index, np.arange(3))
    np.testing.assert_array_equal(on_slurm.packed_masks, here.packed_masks)
    np.testing.assert_array_equal(on_slurm.margins, here.margins)


@pytest.mark.slurm
@pytest.mark.slow
def test_a_cancelled_job_is_reported_and_the_resubmission_fills_exactly_the_gap(slurm_cluster, tmp_path):
    run_dir = tmp_path / "run"
    overrides = SLOW + [f"run_dir={run_dir}"]
    sweep = subprocess.Popen(["make", "sweep", "SHARDS=2", "CPUS=1", "MEM=1", f"ARGS={' '.join(overrides)}"],
                             cwd=ROOT, env=slurm_cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    try:
        victim = job_of(run_dir, 1, proc=sweep)
        wait_for(f"job {victim} to run", lambda: state(slurm_cluster, victim) == "RUNNING", 60, sweep)
        slurm_run(slurm_cluster, ["scancel", victim])
        out, _ = sweep.communicate(timeout=120)
    finally:
        sweep.kill()
    assert sweep.returncode != 0
    assert "1 of 2 jobs failed" in out and f"job {victim} (sweep.shard=1" in out and "CANCELLED" in out
    assert "sweep.shard=1\n" in out.split("to resubmit exactly these:")[1]
    report = status(slurm_cluster, overrides)
    assert "1 of 2 shards done" in report and f"failed: shard 1, job {victim} CANCELLED" in report
    command = report.split("to train exactly these shards:\n")[1].strip()
    assert command.endswith("sweep.shard=1") and "hydra/launcher=slurm" in command
    before = {p.name: p.stat().st_mtime_ns for p in (run_dir / "shards").glob("shard-*")}
    assert sorted(before) == ["shard-000000.parquet"]
    slurm_run(slurm_cluster, [sys.executable, *shlex.split(command)[1:]], timeout=120)
    after = {p.name: p.stat().st_mtime_ns for p in (run_dir / "shards").glob("shard-*")}
    assert after == before | {"shard-000001.parquet": after["shard-000001.parquet"]}
    assert collect(run_dir / "shards").complete
    assert "2 of 2 shards done" in status(slurm_cluster, overrides)


@pytest.mark.slurm
@pytest.mark.slow
def test_a_failing_shard_surfaces_its_error(slurm_cluster, tmp_path):
    overrides = TINY + ["sweep.num_models=3", "train.lr=1e30", "train.weight_decay=0", f"run_dir={tmp_path / 'run'}"]
    proc = make_sweep(slurm_cluster, 1, overrides, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "1 of 1 jobs failed" in out and "DivergedError" in out and "lower train.lr" in out
    assert "to resubmit exactly these:" in out and "sweep.shard=0" in out
    report = status(slurm_cluster, overrides)
    assert "failed: shard 0" in report and "lower train.lr" in report


@pytest.mark.slurm
@pytest.mark.slow
def test_a_requeued_job_resumes_from_its_checkpointed_models(slurm_cluster, tmp_path):
    run_dir = tmp_path / "run"
    # models of at least 6 s (4,000 epochs of the tiny data; 1.6 s a model at 1,000 on an idle
    # 2-core machine): the job is still training its 4 models when it is killed, KillWait (2 s)
    # plus srun's grace (4 s) after the requeue; it ignores the SIGTERM
    overrides = TINY + ["train.epochs=4000", "sweep.num_models=4", "sweep.models_per_shard=4", f"run_dir={run_dir}"]
    sweep = subprocess.Popen(["make", "sweep", "SHARDS=1", "CPUS=1", "MEM=1", f"ARGS={' '.join(overrides)}"],
                             cwd=ROOT, env=slurm_cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    try:
        job = job_of(run_dir, 0, proc=sweep)
        wait_for("a checkpointed model", lambda: partial_models(run_dir / "shards").get(0, 0) >= 1, 240, sweep)
        slurm_run(slurm_cluster, ["scontrol", "requeue", job])
        # a requeued job waits before it may start again; let it start now
        wait_for(f"job {job} to be requeued", lambda: state(slurm_cluster, job) == "PENDING", 60)
        slurm_run(slurm_cluster, ["scontrol", "update", f"JobId={job}", "StartTime=now"])
        out, _ = sweep.communicate(timeout=480)
    finally:
        sweep.kill()
    assert sweep.returncode == 0, out
    assert "shard 0: resuming, " in job_logs(run_dir)
    assert not partial_dir(run_dir / "shards", 0).exists()
    resumed = load_sweep(run_dir)
    np.testing.assert_array_equal(resumed.model_index, np.arange(4))
    fresh = SweepRun(compose_config(overrides[:-1]), tmp_path / "fresh")
    torch.set_num_threads(fresh.threads)  # as in the job: bit-identical margins need the same thread count
    np.testing.assert_array_equal(resumed.margins[0], fresh.train_one(0).margins)


@pytest.mark.slurm
@pytest.mark.slow
def test_several_tasks_per_node_run_one_shard_each(slurm_cluster, tmp_path):
    run_dir = tmp_path / "run"
    make_sweep(slurm_cluster, 2, TINY + ["hydra.launcher.tasks_per_node=2", f"run_dir={run_dir}"])
    (record,) = [json.loads(p.read_text()) for p in (run_dir / "logs" / "slurm").glob("submission-*.json")]
    (job,) = record["jobs"]
    assert [t[0] for t in job["tasks"]] == ["sweep.shard=0", "sweep.shard=1"]
    assert collect(run_dir / "shards").complete


@pytest.mark.slurm
@pytest.mark.slow
def test_a_retraining_check_trains_as_a_slurm_array_then_measures(slurm_cluster, tmp_path):
    from test_ablation import EXHAUSTIVE

    run_dir = tmp_path / "run"
    run_job("sweep.py", *EXHAUSTIVE, f"run_dir={run_dir}")
    run_job("fit.py", "fit=linear", "fit.workers=1", *EXHAUSTIVE, f"run_dir={run_dir}")
    check = [f"run_dir={run_dir}", "ablate.fit_engine=linear", "ablate.pairs=[[0,0,1],[1,2,3]]",
             "ablate.controls=false", "ablate.backgrounds=3", "ablate.models_per_shard=8", "progress=false"]
    slurm_run(slurm_cluster, [sys.executable, "jobs/ablate.py", "-m", "ablate.shard=range(0,3)",
                              "hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
                              *check], timeout=300)
    assert collect(run_dir / "ablations" / "pairs" / "shards").complete  # the array trained every shard
    out = run_job("ablate.py", *check).stdout  # measures what the array trained, trains nothing
    assert "written:" in out and "ablation shards" not in out
    assert len(load_sweep(run_dir / "ablations" / "pairs").model_index) == 24
