import multiprocessing.process
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# A sweep small enough to train in seconds: 60 digits players, 20 targets, 2-epoch models.
TINY = ["dataset.train=60", "dataset.target=20", "dataset.holdout=100", "train.epochs=2", "train.batch_size=32",
        "sweep.num_models=6", "sweep.models_per_shard=3", "model.width=4"]


def compose_config(overrides=(), run_dir=None) -> dict:
    """The config the jobs would see, as a plain dict (through the real conf/ tree)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    config = OmegaConf.to_container(cfg, resolve=False)
    config.pop("hydra", None)
    if run_dir is not None:
        config["run_dir"] = str(run_dir)
    return OmegaConf.to_container(OmegaConf.create(config), resolve=True, throw_on_missing=True)


def run_job(script: str, *overrides: str, check: bool = True, timeout: float = 300,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a Hydra entry point the way a user types it (``env``: more variables; a PYTHONPATH is
    put before the one the tests run with)."""
    extra = dict(env or {})
    if "PYTHONPATH" in extra and os.environ.get("PYTHONPATH"):
        extra["PYTHONPATH"] += os.pathsep + os.environ["PYTHONPATH"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1") | extra
    proc = subprocess.run([sys.executable, str(ROOT / "jobs" / script), *overrides], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(overrides)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def wait_for(what: str, check, timeout: float = 120.0, proc: subprocess.Popen | None = None):
    """``check()``'s first true value. Tests wait on a state the code under test records (a file it
    writes, a claim it takes, a scheduler's job state), never on printed text or a sleep, so a slow
    machine makes them slower, not wrong: ``timeout`` only turns a hang into a failure, keep it
    generous. ``proc``, the process expected to bring the state about: its exit fails the wait at once."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if proc is not None and proc.poll() is not None:
            output = "\n".join(t if isinstance(t, str) else t.decode(errors="replace") for t in proc.communicate() if t)
            raise AssertionError(f"the process ended (exit {proc.returncode}) while waiting for {what}:\n{output}")
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        time.sleep(0.05)
    return found


@pytest.fixture(autouse=True)
def unit_tests_start_no_process(request, monkeypatch):
    """A test without the ``slow`` mark is a unit test (``make test-fast``): it starts no worker
    process and no Python interpreter. ``test_architecture`` reads the calls a test makes; this
    catches those a library default makes for it (a worker pool sized by a settings default: 18
    such tests once doubled the fast tier). Short system commands (``uname -p`` for
    ``platform.processor()``) are let through."""
    if request.node.get_closest_marker("slow"):
        return

    def refuse(what: str):
        raise AssertionError(f"{request.node.nodeid} starts {what}: mark it slow, or keep it in this process "
                             f"(e.g. workers=1)")

    def start(process):
        refuse(f"a worker process ({type(process).__name__})")

    popen = subprocess.Popen.__init__

    def init(self, args, *rest, **kwargs):
        program = Path(str(args if isinstance(args, (str, os.PathLike)) else args[0]).split()[0]).name
        if program.startswith("python") or program == Path(sys.executable).name:
            refuse(f"a Python interpreter ({program})")
        popen(self, args, *rest, **kwargs)

    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", start)
    monkeypatch.setattr(subprocess.Popen, "__init__", init)


@pytest.fixture(scope="session")
def slurm_cluster():
    """A single-node SLURM cluster for the session (tests/slurm_cluster.py); skips without SLURM.

    MaxArraySize 2, so that a sweep of three shards already takes two arrays.
    """
    from slurm_cluster import PACKAGES, SlurmCluster, missing_binaries

    if missing_binaries():
        pytest.skip(f"SLURM is not installed (no {', '.join(missing_binaries())}): "
                    f"apt-get install --no-install-recommends {PACKAGES}")
    cluster = SlurmCluster(cpus=4, max_array_size=2).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def tiny_config(tmp_path):
    return compose_config(TINY, run_dir=tmp_path / "run")
