import json
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, TINY, compose_config, run_job, wait_for
from datamodels.sweep.data import DataError
from datamodels.sweep.masks import MaskError
from datamodels.run.folder import RunFolder
from datamodels.store.shards import StoreError, load_sweep
from datamodels.sweep.stage import SweepRun, SweepSettings
from datamodels.sweep.train import DivergedError


def test_a_model_is_a_pure_function_of_seed_and_index(tiny_config, tmp_path):
    run = SweepRun(tiny_config, tmp_path / "a")
    again = SweepRun(tiny_config, tmp_path / "b")
    first, second = run.train_one(4), again.train_one(4)
    np.testing.assert_array_equal(first.margins, second.margins)
    np.testing.assert_array_equal(first.mask, second.mask)
    assert first.seed == second.seed and first.holdout_acc == second.holdout_acc
    assert not np.array_equal(run.train_one(5).margins, first.margins)


def test_repeats_share_a_mask_and_differ_in_seed(tmp_path):
    run = SweepRun(compose_config(TINY + ["sweep.repeats=3"]), tmp_path)
    assert run.num_models == 6 and run.meta["repeats"] == 3
    np.testing.assert_array_equal(run.mask_of(3), run.mask_of(5))
    assert not np.array_equal(run.mask_of(2), run.mask_of(3))
    records = [run.train_one(i) for i in (3, 4)]
    assert records[0].mask_id == records[1].mask_id == 1 and records[0].seed != records[1].seed
    assert not np.array_equal(records[0].margins, records[1].margins)


@pytest.mark.parametrize("overrides,error,message", [
    (["dataset.name=mnist"], DataError, "unknown dataset 'mnist'"),
    (["model.name=vgg"], ValueError, "unknown model 'vgg'"),
    (["sweep.alpha=1.5"], MaskError, r"strictly between 0 and 1 \(one value or a list\), got 1.5"),
    (["sweep.design=exhaustive"], MaskError, "refused for n=60 > 20"),
    (["sweep.design=file", "sweep.mask_file=/nonexistent.npy"], MaskError, "does not exist"),
    (["train.schedule=cosine"], ValueError, "train.schedule must be one of"),
    (["sweep.num_models=0"], MaskError, r"^sweep.num_models=0 must be a positive integer$"),
    (["sweep.design=exhaustive", "players=class", "sweep.num_models=2000"], ValueError,
     r"sweep.num_models=2000 must lie in 1\.\.\d+ for design=exhaustive"),
])
def test_bad_config_values_are_clear_errors(overrides, error, message, tmp_path):
    with pytest.raises(error, match=message):
        SweepRun(compose_config(TINY + overrides), tmp_path)


@pytest.mark.parametrize("key,least", [("num_models", 1), ("models_per_shard", 1), ("repeats", 1), ("seed", 0),
                                       ("budget", 1), ("degree", 1), ("models_per_pass", 1), ("shard", 0)])
def test_a_bad_integer_sweep_setting_is_refused_naming_it_before_any_work(key, least, tmp_path, monkeypatch):
    words = "a positive integer" if least else "a non-negative integer"
    for bad in (least - 1, 2.0, True, "3"):
        with pytest.raises(MaskError, match=rf"^sweep\.{key}={bad!r} must be {words}$"):
            SweepSettings.from_config({key: bad})
    monkeypatch.setattr("datamodels.sweep.stage.prepare", lambda *a, **k: pytest.fail("data prepared"))
    with pytest.raises(MaskError, match=rf"^sweep\.{key}={least - 1} must be {words}$"):
        SweepRun(compose_config(TINY + [f"sweep.{key}={least - 1}"]), tmp_path)


def test_sweep_settings_take_an_older_config_and_refuse_an_unknown_design():
    old = {"design": "bernoulli", "alpha": [0.2, 0.5], "num_models": 6, "models_per_shard": 3, "repeats": 1,
           "seed": 0, "mask_file": None, "shard": None}  # before budget, degree and models_per_pass
    assert SweepSettings.from_config(old) == SweepSettings(num_models=6, models_per_shard=3, alpha=[0.2, 0.5])
    assert SweepSettings.from_config({"num_models": None}).num_models is None  # every mask of the design
    with pytest.raises(MaskError, match=r"^sweep\.design='bernouli'; choose one of bernoulli, fixed_size, "):
        SweepSettings.from_config({"design": "bernouli"})


def test_a_shard_beyond_the_model_count_is_refused(tiny_config, tmp_path):
    with pytest.raises(ValueError, match=r"sweep.shard=2 is outside 0..1: 6 models in shards of 3"):
        SweepRun(tiny_config, tmp_path).run_shard(2)


def test_class_players_with_the_exhaustive_design_give_every_subset(tmp_path):
    run = SweepRun(compose_config(["experiment=digits_classes_exhaustive", "dataset.train=300"]), tmp_path)
    assert run.n == 10 and run.num_models == 2 * 1024 and run.num_shards == 16
    np.testing.assert_array_equal(run.mask_of(2 * 6 + 1), (6 >> np.arange(10)) & 1 == 1)


def test_a_diverged_model_is_an_error_and_writes_nothing(tmp_path):
    run = SweepRun(compose_config(TINY + ["train.lr=1e30", "train.weight_decay=0"]), tmp_path)
    with pytest.raises(DivergedError, match="non-finite margins .* lower train.lr"):
        run.run_shard(0, progress=False)
    assert not (tmp_path / "shards").exists() or not any((tmp_path / "shards").iterdir())


@pytest.mark.slow
def test_end_to_end_sweep_through_hydra_with_the_joblib_launcher(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_job("sweep.py", "-m", "sweep.shard=range(0,2)", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                   *TINY, f"run_dir={run_dir}")
    assert sorted(p.name for p in (run_dir / "shards").iterdir()) == ["shard-000000.parquet", "shard-000001.parquet"]
    assert "shard 1: 100%" in proc.stderr  # a progress bar per shard
    assert proc.stdout.count("shards written") == 1 and "2 shards written now, 0 already present" in proc.stdout
    collected = run_job("collect.py", *TINY, f"run_dir={run_dir}")
    assert "6 of 6 models present, 0 missing, 0 duplicated" in collected.stdout
    sweep = load_sweep(run_dir)
    assert sweep.masks.shape == (6, 60) and sweep.margins.shape == (6, 20)
    assert (sweep.holdout_acc > 0).all() and np.isfinite(sweep.margins).all()
    # the same models as a library call in this process, with the job's one torch thread (more threads
    # sum in another order: the same model to float32 rounding, not bit for bit)
    torch.set_num_threads(1)
    np.testing.assert_array_equal(sweep.margins[4], SweepRun(compose_config(TINY), tmp_path / "x").train_one(4).margins)
    again = run_job("sweep.py", *TINY, f"run_dir={run_dir}")
    assert "0 shards written, 2 already present" in again.stdout


@pytest.mark.slow
def test_collect_names_missing_models_and_the_command_that_fills_them(tmp_path):
    run_dir = tmp_path / "run"
    run_job("sweep.py", "sweep.shard=1", *TINY, f"run_dir={run_dir}")
    proc = run_job("collect.py", *TINY, f"run_dir={run_dir}", check=False)
    assert proc.returncode == 1
    assert "missing model indices: 0-2" in proc.stdout and "sweep.shard=0 " in proc.stdout


@pytest.mark.slow
def test_a_killed_sweep_leaves_no_partial_shard_and_resumes_identically(tmp_path):
    slow = TINY + ["sweep.num_models=6", "sweep.models_per_shard=6", "train.epochs=10"]
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen([sys.executable, str(ROOT / "jobs" / "sweep.py"), *slow, f"run_dir={killed}"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=ROOT)
    # kill mid-shard, once the sweep has recorded its first model (its checkpoint), whatever it prints
    wait_for("the checkpoint of the first model", RunFolder(killed).checkpoint(0, 0).exists, proc=proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not list(killed.glob("shards/shard-*.parquet"))
    run_job("sweep.py", *slow, f"run_dir={killed}")
    run_job("sweep.py", *slow, f"run_dir={clean}")
    resumed, uninterrupted = load_sweep(killed), load_sweep(clean)
    np.testing.assert_array_equal(resumed.model_index, np.arange(6))  # every index exactly once
    np.testing.assert_array_equal(resumed.margins, uninterrupted.margins)
    np.testing.assert_array_equal(resumed.packed_masks, uninterrupted.packed_masks)


@pytest.mark.slow
def test_jobs_refuse_a_foreign_run_folder_and_keep_its_files(tmp_path):
    (tmp_path / "paper.tex").write_text("precious")
    proc = run_job("sweep.py", *TINY, f"run_dir={tmp_path}", check=False)
    assert proc.returncode != 0 and "not a run folder of this package" in proc.stderr
    assert (tmp_path / "paper.tex").read_text() == "precious"
    other = tmp_path / "other"
    run_job("sweep.py", "sweep.shard=0", *TINY, f"run_dir={other}")
    proc = run_job("sweep.py", "sweep.shard=0", *TINY, "train.epochs=3", f"run_dir={other}", check=False)
    assert proc.returncode == 1 and "was swept with train.epochs=2 (given: 3)" in proc.stderr


def test_an_existing_shard_of_another_sweep_is_refused_not_overwritten(tiny_config, tmp_path):
    SweepRun(tiny_config, tmp_path).run_shard(0, progress=False)
    shard = tmp_path / "shards" / "shard-000000.parquet"
    before = shard.read_bytes()
    other = SweepRun(compose_config(TINY + ["train.epochs=3"]), tmp_path)
    with pytest.raises(StoreError, match="shard-000000.parquet belongs to a different sweep: config_hash="):
        other.shard_is_done(0)
    assert shard.read_bytes() == before


@pytest.mark.slow
def test_a_shard_claimed_by_a_live_process_is_skipped_and_trained_once_released(tmp_path):
    """A resubmitted command while the first still runs: the second skips the claimed shard, in one
    line naming the holder, and writes nothing; once the claim is released, the shard is trained.
    The holder is this test process (alive for certain), so no race decides the outcome."""
    from datamodels.run.claims import ShardClaim

    run_dir = tmp_path / "run"
    settings = [*TINY, "sweep.num_models=6", "sweep.models_per_shard=6", "progress=false", f"run_dir={run_dir}"]
    first = ShardClaim(RunFolder(run_dir), 0)
    assert first.acquire()
    second = run_job("sweep.py", "sweep.shard=0", *settings)
    assert f"shard 0: skipped, process {os.getpid()} on" in second.stdout + second.stderr
    assert "0 shards written, 0 already present, 1 being trained by another process" in second.stdout
    assert not list((run_dir / "shards").glob("*.parquet"))
    first.release()
    third = run_job("sweep.py", "sweep.shard=0", *settings)
    assert "1 shards written" in third.stdout and not RunFolder(run_dir).claim(0).exists()
    assert "6 of 6 models present, 0 missing, 0 duplicated" in run_job("collect.py", f"run_dir={run_dir}").stdout


@pytest.mark.slow
def test_a_claim_whose_process_is_gone_is_taken_over(tiny_config, tmp_path):
    run = SweepRun(tiny_config, tmp_path)
    claim = RunFolder(tmp_path).claim(0)
    claim.parent.mkdir(parents=True)
    # a process that claimed shard 0 and died without letting go (kill -9, a crashed node's job)
    subprocess.run([sys.executable, "-c", f"import os; from flufl.lock import Lock; "
                    f"Lock({str(claim)!r}, separator='~').lock(); os._exit(0)"], check=True)
    assert claim.exists()
    assert run.run_shard(0, progress=False) == "written" and not claim.exists()


@pytest.mark.slow
def test_a_requeued_slurm_job_takes_over_its_own_claim(tmp_path, monkeypatch):
    from datamodels.run.claims import ShardClaim

    folder = RunFolder(tmp_path)
    # holds the claim until the test closes its stdin or kills it, however long the test takes
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from datamodels.run.folder import RunFolder; "
                               "from datamodels.run.claims import ShardClaim; c = ShardClaim(RunFolder(sys.argv[1]), 0); "
                               "assert c.acquire(); sys.stdin.read()", str(tmp_path)],
                              env=dict(os.environ, SLURM_JOB_ID="1234"), stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        assert _wait_for_claim(holder, tmp_path) == holder.pid
        monkeypatch.setenv("SLURM_JOB_ID", "999")  # another job: the live holder keeps the shard
        other = ShardClaim(folder, 0)
        assert not other.acquire() and f"process {holder.pid} on" in other.holder and "SLURM job 1234" in other.holder
        monkeypatch.setenv("SLURM_JOB_ID", "1234")  # the same job, requeued: its first run is over
        again = ShardClaim(folder, 0)
        assert again.acquire()
        again.release()
        assert not folder.claim(0).exists()
    finally:
        holder.kill()
        holder.communicate()


# About 3 s of training on 2 busy cores (40 epochs, 0.4 s, let a loaded CI machine finish the shard
# between seeing its claim and sending the signal)
_SLOW = ["sweep.num_models=3", "sweep.models_per_shard=3", "train.epochs=300", "progress=false"]


def _start_sweep(run_dir, *overrides):
    """A real sweep process on a shard slow enough (a few seconds) to be caught training it."""
    slow = [*TINY, *_SLOW, f"run_dir={run_dir}"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(ROOT / "jobs" / "sweep.py"), *overrides, *slow], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_claim(proc, run_dir):
    """The pid holding shard 0's claim, once ``proc`` (a sweep: then it is training the shard) has claimed it."""
    from datamodels.run.claims import ShardClaim

    folder = RunFolder(run_dir)

    def claimed():  # the lock, and beside it its holder's record: the claim is whole
        return folder.claim_holder(0).exists() and ShardClaim(folder, 0).holder_process()
    return wait_for("the claim of shard 0", claimed, proc=proc)[1]


@pytest.mark.slow
@pytest.mark.parametrize("sig,launch", [(signal.SIGTERM, []), (signal.SIGINT, []),
                                        (signal.SIGTERM, ["-m", "sweep.shard=0", "hydra/launcher=joblib"])],
                         ids=["sigterm", "ctrl-c", "sigterm-joblib"])
def test_an_interrupted_sweep_says_so_in_one_line_releases_its_claim_and_resumes(tmp_path, sig, launch):
    run_dir = tmp_path / "run"
    proc = _start_sweep(run_dir, *launch)
    holder = _wait_for_claim(proc, run_dir)
    assert holder != proc.pid or not launch  # a joblib sweep trains in a worker
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, stderr
    assert "Traceback" not in stderr and "[flufl.lock]" not in stderr
    assert stderr.strip().splitlines()[-1].startswith(f"interrupted ({sig.name}): shard 0 was not finished")
    assert stderr.strip().endswith("its claim is released; run the same command to resume")
    assert not RunFolder(run_dir).claim(0).exists() and not list(run_dir.glob("shards/shard-*.parquet"))
    status = run_job("status.py", f"run_dir={run_dir}").stdout
    assert "being trained" not in status and "missing, not queued: 1 shards (0)" in status
    assert "sweep.shard=0" in status.split("to train exactly these shards:")[1]
    again = run_job("sweep.py", *TINY, *_SLOW,
                    f"run_dir={run_dir}")
    assert "1 shards written" in again.stdout and "[flufl.lock]" not in again.stdout + again.stderr


@pytest.mark.slow
def test_a_killed_sweeps_claim_is_free_at_once_for_status_and_the_next_sweep(tmp_path):
    """kill -9 (or a crash) leaves the claim behind: its holder on this host has exited, so status
    offers the shard again and the next sweep takes the claim over, in one line of its own."""
    run_dir = tmp_path / "run"
    proc = _start_sweep(run_dir)
    pid = _wait_for_claim(proc, run_dir)
    proc.kill()
    proc.communicate(timeout=60)
    assert RunFolder(run_dir).claim(0).exists()
    status = run_job("status.py", f"run_dir={run_dir}").stdout
    assert f"shard 0: claimed by pid {pid} on this host, which has exited: free to train" in status, status
    assert "being trained" not in status and "sweep.shard=0" in status.split("to train exactly these shards:")[1]
    again = run_job("sweep.py", *TINY, *_SLOW,
                    f"run_dir={run_dir}")
    output = again.stdout + again.stderr
    assert "1 shards written" in again.stdout and "[flufl.lock]" not in output and "ERROR" not in output
    assert output.count(f"shard 0: took over a stale claim (its holder, process {pid} on this host, has exited)") == 1


def _dead_pid() -> int:
    """The id of a process of this host that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.slow
def test_status_reports_a_claim_of_an_exited_process_of_this_host_as_free(tiny_config, tmp_path):
    from datamodels.run.claims import ShardClaim
    from datamodels.sweep.status import sweep_status

    run = SweepRun(tiny_config, tmp_path)
    run.folder.check_sweep(run.meta, run.config)
    for shard, pid in ((0, _dead_pid()), (1, os.getppid())):  # shard 1: a live process holds it
        claim = RunFolder(tmp_path).claim(shard)
        claim.parent.mkdir(parents=True, exist_ok=True)
        host = socket.getfqdn()
        claim.with_name(f"{claim.name}~{host}~{pid}~1").write_text(f"{claim}~{host}~{pid}~1")
        os.link(claim.with_name(f"{claim.name}~{host}~{pid}~1"), claim)
    lines = "\n".join(sweep_status(tmp_path))
    assert "shard 0: claimed by pid" in lines and "which has exited: free to train" in lines, lines
    assert f"shard 1: being trained by process {os.getppid()} on {host} (this host)" in lines
    assert "missing, not queued: 1 shards (0)" in lines and "sweep.shard=0" in lines
    # the id of a live process that started after the claim was made (pid reuse) is not the holder
    ShardClaim(RunFolder(tmp_path), 1)._job.write_text(json.dumps({"host": host, "pid": os.getppid(), "started": "1"}))
    assert ShardClaim(RunFolder(tmp_path), 1).exited_holder() == os.getppid()
    assert "shard 1: claimed by pid" in "\n".join(sweep_status(tmp_path))
