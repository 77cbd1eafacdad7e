"""The shell every ``jobs/*.py`` entry point runs in.

:func:`job` wraps a job's main function (under ``@hydra.main``) and gives every stage the same
behaviour:

- **A run folder describes itself.** A job given ``run_dir=X`` takes the sweep's settings
  (``dataset``, ``players``, ``model``, ``train``, ``loader``, ``sweep``) from ``X/config.json``,
  so no later command repeats the sweep's overrides. An override on the command line that
  contradicts them is refused, naming the setting, both values and what to do.
- **User errors are one line.** A :class:`datamodels.errors.UserError` is printed as
  ``error: <message>`` on stderr, exit code 1; ``debug=true`` or ``HYDRA_FULL_ERROR=1`` shows
  the traceback instead (and SLURM jobs raise it, for the launcher's report of failed jobs). Any
  other exception is a bug and keeps its traceback.
- **Threads and workers.** ``torch_threads`` applies to every job; a job running in a worker of
  a parallel sweep (``hydra/launcher=joblib``) exits when the launching process dies.
- **One line per sweep.** The shards of a multirun sweep report once, at its end
  (:class:`SweepSummary`, a Hydra callback), not once per worker.

This is the one library module that reads Hydra's state (the overrides as typed); the stages
themselves take plain values and never import Hydra.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from .errors import UserError
from .processes import leave_with_parent
from .run_folder import LAUNCH_SETTINGS, RUN_SECTIONS, RunFolder, SHARD_RE


def _leaves(value, prefix: str) -> dict:
    if isinstance(value, dict) and value:
        return {k: v for key, sub in value.items() for k, v in _leaves(sub, f"{prefix}.{key}").items()}
    return {prefix: value}


def _select(tree: dict, path: str):
    for key in path.split("."):
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def overridden_paths(overrides: list[str]) -> set[str]:
    """The run settings (dotted paths) that command-line overrides set: ``sweep.alpha=0.3`` sets
    ``sweep.alpha``, a group choice (``players=cluster``) its whole section, ``experiment=X``
    every section."""
    paths = set()
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~").replace("/", ".")
        if key == "experiment":
            paths |= set(RUN_SECTIONS)
        elif key.split(".")[0] in RUN_SECTIONS and key not in LAUNCH_SETTINGS:
            paths.add(key)
    return paths


def contradictions(given: dict, recorded: dict, overrides: list[str]) -> list[str]:
    """``setting=recorded value`` for each run setting an override gives another value than the
    run folder recorded."""
    found = []
    for path in sorted(overridden_paths(overrides)):
        if _select(recorded, path.split(".")[0]) is None:
            continue  # a section the run did not record (an older run folder)
        mine, theirs = _leaves(_select(given, path), path), _leaves(_select(recorded, path), path)
        for key in sorted(set(mine) | set(theirs)):
            if key not in LAUNCH_SETTINGS and mine.get(key) != theirs.get(key):
                found.append(f"{key}={json.dumps(theirs.get(key))} (given: {json.dumps(mine.get(key))})")
    return found


def run_settings(cfg: DictConfig, overrides: list[str], creates_run: bool, derives: bool = False) -> DictConfig:
    """``cfg`` with ``run_dir`` made absolute and the run's recorded sweep settings in place.

    A run folder without ``config.json`` (planted sweeps, older runs) keeps ``cfg`` as given;
    a job other than the sweep refuses a folder that holds no sweep. A job that ``derives`` the
    run's settings itself (the import) keeps ``cfg`` too: it checks the run's identity instead.
    """
    folder = RunFolder(Path(cfg.run_dir).absolute())
    with open_dict(cfg):
        cfg.run_dir = str(folder.root)
    if not folder.run_json.exists():
        if creates_run:
            return cfg
        _remove_own_logs(folder)
        raise folder.no_sweep_error()
    recorded_path = folder.config_json
    if derives or not recorded_path.exists():
        return cfg
    recorded = folder.read_config()
    given = OmegaConf.to_container(cfg, resolve=True)
    if wrong := contradictions(given, recorded, overrides):
        raise UserError(f"{folder.root} was swept with {', '.join(wrong)}: a run keeps the settings it was swept with "
                        f"({recorded_path}). Drop the override, or give another run_dir= for a new sweep")
    with open_dict(cfg):
        for section in RUN_SECTIONS:
            if isinstance(recorded.get(section), dict):
                launch = {path.split(".", 1)[1]: OmegaConf.select(cfg, path) for path in LAUNCH_SETTINGS
                          if path.startswith(f"{section}.")}
                cfg[section] = recorded[section] | launch
    return cfg


def _remove_own_logs(folder: RunFolder) -> None:
    """Hydra made ``<run_dir>/logs/<this job>`` before the job learnt that ``run_dir`` holds no
    sweep: remove what it made there, so that a mistyped run_dir leaves nothing behind."""
    from hydra.core.hydra_config import HydraConfig

    output = Path(HydraConfig.get().runtime.output_dir)
    if output.is_relative_to(folder.root) and not any(p.name != "logs" for p in folder.root.iterdir()):
        shutil.rmtree(folder.root, ignore_errors=True)


def set_torch_threads(threads) -> None:
    """``torch_threads`` for torch in this process (when the job uses it) and for its children."""
    if not threads:
        return
    os.environ["OMP_NUM_THREADS"] = str(threads)  # children, and a torch imported later
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(threads))


def _launcher() -> str:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra = HydraConfig.get()
    return str(hydra.launcher.get("_target_", "")).lower() if hydra.mode == RunMode.MULTIRUN else ""


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.get().mode == RunMode.MULTIRUN


def in_joblib_worker() -> bool:
    return "joblib" in _launcher() and os.environ.get("DATAMODELS_LAUNCHER_PID") != str(os.getpid())


def keep_traceback(cfg: DictConfig) -> bool:
    """Asked for (``debug=true``, ``HYDRA_FULL_ERROR=1``), or a SLURM job: its launcher reports each
    failed job's exception to the user itself, from the job's result."""
    return bool(cfg.get("debug")) or os.environ.get("HYDRA_FULL_ERROR") == "1" or "slurm" in _launcher()


def chosen_on_command_line(group: str) -> bool:
    """Whether the user chose ``group`` (``dataset=cifar10``), directly or by an experiment, rather
    than taking ``conf/config.yaml``'s default."""
    from hydra.core.hydra_config import HydraConfig

    keys = {o.split("=", 1)[0].lstrip("+~") for o in HydraConfig.get().overrides.task}
    return group in keys or "experiment" in keys


def job(creates_run: bool = False, derives: bool = False):
    """Decorator of a job's main function (place it under ``@hydra.main``); see the module doc.

    ``creates_run``: the job may start a new run folder (the sweep); every other job needs one.
    ``derives``: the job makes the run's settings itself (the import), so a run folder's recorded
    ones are neither imposed on it nor compared with its overrides.
    """
    # set in the launching process before any worker is started: workers inherit it
    os.environ.setdefault("DATAMODELS_LAUNCHER_PID", str(os.getpid()))

    def wrap(main):
        @functools.wraps(main)
        def run(cfg: DictConfig):
            from hydra.core.hydra_config import HydraConfig

            try:
                if in_joblib_worker():
                    leave_with_parent()
                set_torch_threads(cfg.get("torch_threads"))
                return main(run_settings(cfg, list(HydraConfig.get().overrides.task), creates_run, derives))
            except UserError as err:
                if creates_run and not RunFolder(Path(cfg.run_dir).absolute()).run_json.exists():
                    _remove_own_logs(RunFolder(Path(cfg.run_dir).absolute()))  # refused: leave nothing behind
                if keep_traceback(cfg):
                    raise
                print(f"error: {err}", file=sys.stderr)
                raise SystemExit(1) from None
        return run
    return wrap


def _shards_present(run_dir) -> set[str]:
    shards = RunFolder(Path(run_dir).absolute()).shards
    return {p.name for p in shards.iterdir() if SHARD_RE.match(p.name)} if shards.is_dir() else set()


class SweepSummary(Callback):
    """After a multirun of ``jobs/sweep.py``: one line for the whole sweep (shards written by
    this launch, already present, still missing), where each worker would print its own."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self.before = _shards_present(config.run_dir) if config.hydra.job.name == "sweep" else None

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if getattr(self, "before", None) is None:
            return
        folder = RunFolder(Path(config.run_dir).absolute())
        try:
            run = folder.read_run()
        except UserError:
            return  # every job failed before the sweep began; their errors said why
        now = _shards_present(folder.root)
        total = -(-run["num_models"] // run["models_per_shard"])
        missing = total - len(now)
        print(f"{folder.shards}: {len(now - self.before)} shards written now, {len(self.before)} already present"
              + (f", {missing} missing (python jobs/status.py run_dir={folder.root} says why)" if missing else "")
              + f"; {total} shards of {run['models_per_shard']} models")
