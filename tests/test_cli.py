"""The shell of every job (datamodels/cli/): self-describing run folders, one-line user errors,
settings that exist, threads, and workers that end with their parent."""

import ast
import json
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import time

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from conftest import CONF, ROOT, TINY, compose_config, run_job, wait_for
from datamodels.cli import contradictions, overridden_paths, run_settings, set_torch_threads
from datamodels.errors import UserError
from datamodels.run.folder import RunFolder
from datamodels.run.identity import RUN_SECTIONS
from datamodels.store.shards import partial_models

# A setting as messages spell it: a dotted path under a config section, or a top-level key set
# with '='; never part of a file or module name (jobs/fit.py, datamodels.store.fit_ready).
SECTIONS = ("dataset", "players", "model", "train", "loader", "sweep", "fit", "prune", "curate")
SETTING = re.compile(rf"(?<![\w/.])((?:{'|'.join(SECTIONS)})(?:\.[A-Za-z_]\w*)+|"
                     rf"(?:run_dir|device|torch_threads|progress|debug|force)(?==))")
CHOICE = re.compile(rf"(?<![\w/.])({'|'.join(SECTIONS)})=([a-z_0-9]+)\b")


def messages():
    """(file, line, text) of every string constant in a raise or print of the library and jobs."""
    for path in sorted([*(ROOT / "datamodels").rglob("*.py"), *(ROOT / "jobs").glob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) or (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "print"):
                for sub in ast.walk(node):
                    if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                        yield path.relative_to(ROOT), sub.lineno, sub.value


def config_trees():
    """The config with every option of every group chosen once (so dataset.options.root, which
    only cifar10 has, is found), and with every experiment (players.twins: the duplicates one)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        yield compose("config")
        for group in SECTIONS:
            for option in sorted((CONF / group).glob("*.yaml")):
                yield compose("config", overrides=[f"{group}={option.stem}"])
        for experiment in sorted((CONF / "experiment").glob("*.yaml")):  # settings only an experiment has
            yield compose("config", overrides=[f"experiment={experiment.stem}"])


def test_every_setting_named_in_an_error_message_exists_in_the_config_tree():
    trees = list(config_trees())

    def resolves(path: str) -> bool:  # the key exists (its value may be null or ???)
        parent, _, key = path.rpartition(".")
        return any(isinstance(node := OmegaConf.select(tree, parent, throw_on_missing=False), DictConfig)
                   and key in node.keys() for tree in trees)

    assert not resolves("dataset.root") and resolves("dataset.options.root")  # the check can fail
    named, wrong = set(), []
    for path, line, text in messages():
        for setting in SETTING.findall(text):
            named.add(setting)
            if not resolves(setting):
                wrong.append(f"{path}:{line}: {setting}")
        for group, choice in CHOICE.findall(text):
            if choice != "NAME" and not (CONF / group / f"{choice}.yaml").exists():
                wrong.append(f"{path}:{line}: {group}={choice}")
    assert len(named) > 30  # the scan sees the messages
    assert not wrong, "messages name settings that do not exist:\n" + "\n".join(wrong)
    assert not any("RUN_DIR" in text for _, _, text in messages())


def test_overrides_that_set_run_settings():
    assert overridden_paths(["sweep.alpha=0.3", "players=cluster", "hydra/launcher=joblib", "sweep.shard=3",
                             "+fit.params.cv=3", "run_dir=/r", "~dataset.holdout"]) == \
        {"sweep.alpha", "players", "dataset.holdout"}
    assert overridden_paths(["experiment=demo"]) == set(RUN_SECTIONS)


def test_contradictions_name_the_setting_and_both_values():
    recorded = {"sweep": {"alpha": 0.5, "shard": 0, "num_models": 10}, "players": {"kind": "cluster", "num_groups": 10}}
    given = {"sweep": {"alpha": 0.5, "shard": 4, "num_models": 100}, "players": {"kind": "example"}}
    assert contradictions(given, recorded, ["sweep.shard=4", "sweep.alpha=0.5"]) == []
    assert contradictions(given, recorded, ["sweep.num_models=100"]) == ["sweep.num_models=10 (given: 100)"]
    assert contradictions(given, recorded, ["players=example"]) == [
        'players.kind="cluster" (given: "example")', "players.num_groups=10 (given: null)"]
    assert contradictions(given, recorded, ["experiment=x"])[-1] == "sweep.num_models=10 (given: 100)"


def test_a_run_swept_before_a_setting_existed_resumes_with_it_at_its_default(tmp_path):
    """A config.json written before train.precision existed: that sweep ran at the default, fp32,
    so an experiment= (every run setting compared) or train.precision=fp32 resumes it, and bf16
    is refused with the recorded value."""
    config = compose_config(TINY, run_dir=tmp_path)
    recorded = json.loads(json.dumps(OmegaConf.to_container(OmegaConf.create(config), resolve=True)))
    del recorded["train"]["precision"]
    folder = RunFolder(tmp_path)
    folder.run_json.write_text("{}")
    folder.config_json.write_text(json.dumps(recorded))
    for overrides in (["experiment=duplicates"], ["train.precision=fp32"]):
        assert run_settings(OmegaConf.create(config), overrides, creates_run=False).train.precision == "fp32"
    bf16 = OmegaConf.create(config | {"train": config["train"] | {"precision": "bf16"}})
    with pytest.raises(UserError, match=r'train.precision="fp32" \(given: "bf16"\)'):
        run_settings(bf16, ["train.precision=bf16"], creates_run=False)


def test_torch_threads_apply_to_the_process(monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    try:
        set_torch_threads(2)
        assert torch.get_num_threads() == 2 and os.environ["OMP_NUM_THREADS"] == "2"
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_a_run_folder_describes_itself_and_status_prints_a_command_that_works(tmp_path):
    run_dir = tmp_path / "run"
    sweep = [*TINY, "players=cluster", "players.num_groups=10"]
    run_job("sweep.py", "sweep.shard=1", *sweep, f"run_dir={run_dir}", "progress=false")
    status = run_job("status.py", f"run_dir={run_dir}").stdout  # no sweep settings repeated
    command = shlex.split(status.split("to train exactly these shards:")[1].strip().splitlines()[0])
    assert command[:2] == ["python", "jobs/sweep.py"] and f"run_dir={run_dir}" in command
    subprocess.run([sys.executable, *command[1:]], cwd=ROOT, check=True, capture_output=True,
                   env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300)  # exactly as printed
    assert "6 of 6 models present" in run_job("collect.py", f"run_dir={run_dir}").stdout
    # overrides that agree with the run are accepted; one that contradicts it is refused, in one line
    again = run_job("sweep.py", *sweep, f"run_dir={run_dir}")
    assert "0 shards written, 2 already present" in again.stdout
    refused = run_job("collect.py", f"run_dir={run_dir}", "players=cluster", "players.num_groups=12", check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith(f"error: {run_dir} was swept with players.num_groups=10 (given: 12)")
    debug = run_job("collect.py", f"run_dir={run_dir}", "sweep.alpha=0.3", "debug=true", check=False)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


@pytest.mark.slow
def test_a_job_without_a_run_names_the_sweeps_beside_it(tmp_path):
    run_job("sweep.py", "sweep.shard=0", *TINY, f"run_dir={tmp_path / 'demo'}", "progress=false")
    proc = run_job("report.py", f"run_dir={tmp_path / 'elsewhere'}", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"no run.json): pass run_dir= one of the sweeps beside it ({tmp_path / 'demo'})" in proc.stderr


def still_running_after(pidfds: dict[int, int], timeout: float) -> list[int]:
    """The pids (of ``pidfds``: pidfd -> pid) whose process has not ended within ``timeout`` s,
    which only bounds a hang: a pidfd turns readable when its process ends, reaped or a zombie
    (an orphan's exit status may wait for a reaper), so the wait ends with the last exit."""
    deadline, waiting = time.monotonic() + timeout, dict(pidfds)
    while waiting and (left := deadline - time.monotonic()) > 0:
        for fd in select.select(list(waiting), [], [], left)[0]:
            del waiting[fd]
    return sorted(waiting.values())


@pytest.mark.slow
def test_the_workers_of_a_parallel_sweep_end_with_their_parent(tmp_path):
    run_dir = tmp_path / "run"
    slow = [*TINY, "dataset.train=300", "train.epochs=200", "sweep.num_models=40", "sweep.models_per_shard=10"]
    parent = subprocess.Popen([sys.executable, str(ROOT / "jobs" / "sweep.py"), "-m", "sweep.shard=range(0,4)",
                               "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *slow, f"run_dir={run_dir}"],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=dict(os.environ, OMP_NUM_THREADS="1"))
    wait_for("a checkpointed model", lambda: any(partial_models(RunFolder(run_dir).shards).values()), proc=parent)
    workers = subprocess.run(["ps", "-o", "pid=", "--ppid", str(parent.pid)], capture_output=True,
                             text=True).stdout.split()
    assert workers, "the sweep started no workers"
    pidfds = {}  # opened while the workers are known to be ours: a reused pid cannot stand in for one
    for pid in map(int, workers):
        try:
            pidfds[os.pidfd_open(pid)] = pid
        except ProcessLookupError:  # a worker that has already ended
            pass
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=30)
    # a worker notices its parent is gone within about a second (datamodels.processes)
    alive = still_running_after(pidfds, 60)
    for fd, pid in pidfds.items():
        if pid in alive:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        os.close(fd)
    assert not alive, f"workers {alive} outlived their parent"


# A typo on the command line: one line, before Hydra composes (datamodels.cli.launch), or from the
# stage's settings for a key that + adds (datamodels.settings.from_section); never a traceback.
FIT_OPTIONS = ", ".join(sorted(p.stem for p in (CONF / "fit").glob("*.yaml") if not p.stem.startswith("_")))


@pytest.mark.parametrize("override, message", [
    ("fit.worker=2", "fit.worker is not a setting; did you mean fit.workers?"),
    ("+fit.worker=2", "fit.worker is not a setting; did you mean fit.workers?"),  # composes; FitSettings refuses it
    ("fitt.workers=2", "fitt.workers is not a setting; did you mean fit.workers?"),
    ("fit=proxyspx", f"fit=proxyspx is not an option; did you mean fit=proxyspex? (fit options: {FIT_OPTIONS})"),
])
@pytest.mark.slow
def test_a_typo_in_an_override_is_one_line(tmp_path, override, message):
    RunFolder(tmp_path).run_json.write_text("{}")  # a run folder, so that +fit.worker reaches the fit's settings
    proc = run_job("fit.py", f"run_dir={tmp_path}", override, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "_stage" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"error: {message}"]


@pytest.mark.slow
def test_debug_keeps_hydras_whole_message_of_a_typo(tmp_path):
    proc = run_job("fit.py", f"run_dir={tmp_path}", "fit.worker=2", "debug=true", check=False)
    assert proc.returncode == 1 and "Could not override 'fit.worker'" in proc.stderr


def test_overrides_are_checked_before_hydra_composes():
    from datamodels.cli import override_error

    for args in (["fit.workers=2", "run_dir=runs/demo"], ["-m", "sweep.shard=range(0,8)", "hydra/launcher=joblib"],
                 ["-m", "sweep.shard=range(0,2)", "hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                 ["hydra.job.chdir=false"], ["+fit.params.extra=1", "++fit.workers=3", "~dataset.holdout"],
                 ["experiment=demo", "players.num_groups=5"], ["fit=linear", "fit.params.cv=3"],
                 ["fit.worker=2", "debug=true"], ["--help"], []):
        assert override_error(args) is None, args
    for args, message in [
        (["fit.worker=2"], "fit.worker is not a setting; did you mean fit.workers?"),
        (["~fit.worker"], "fit.worker is not a setting; did you mean fit.workers?"),
        (["-m", "sweep.shardd=range(0,8)"], "sweep.shardd is not a setting; did you mean sweep.shard?"),
        (["fit.params.max_ordr=4"], "fit.params.max_ordr is not a setting; did you mean fit.params.max_order?"),
        (["hydra/launcher=joblib", "hydra.launcher.n_jobz=2"],
         "hydra.launcher.n_jobz is not a setting; did you mean hydra.launcher.n_jobs?"),
        (["rundir=runs/demo"], "rundir is not a setting; did you mean run_dir?"),
        (["fitt=linear"], "fitt is not a setting; did you mean fit?"),
    ]:
        assert override_error(args) == message, args
    # an optional group (experiment) that Hydra would skip silently
    assert override_error(["experiment=dem"]).startswith("experiment=dem is not an option; did you mean experiment=demo?")


def test_every_job_checks_its_overrides_before_hydra():
    for path in (ROOT / "jobs").glob("*.py"):
        assert path.read_text().rstrip().endswith('if __name__ == "__main__":\n    launch(main)'), path


def test_settings_the_docs_once_placed_in_run_folder_still_import_there_with_a_warning():
    """README and docs/loaders.md spelt run_folder.LAUNCH_SETTINGS and run_folder.LATER_DEFAULTS
    before they moved to run_identity: code written against them keeps running for one release."""
    import datamodels.run.folder as run_folder
    from datamodels.run import identity as run_identity

    for name in ("LAUNCH_SETTINGS", "LATER_DEFAULTS"):
        with pytest.warns(DeprecationWarning, match=f"datamodels.run.identity.{name}"):
            assert getattr(run_folder, name) is getattr(run_identity, name)
    with pytest.raises(AttributeError):
        run_folder.IDENTITY_KEYS  # moved, but never documented there: no alias
