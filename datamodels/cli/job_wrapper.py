"""The decorator every job's main function runs under (:func:`job`): the run's recorded settings,
``torch_threads``, one line for a user error or an interrupt, and the exit code; with what a job
asks of Hydra's state (multirun or not, a joblib worker, a group chosen on the command line)."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

from omegaconf import DictConfig

from ..errors import UserError
from ..processes import leave_with_parent
from ..run.folder import RunFolder
from .interrupts import catch_interrupts, interrupted_exit_code, interrupted_line
from .recorded_settings import remove_own_logs, run_settings


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
    """Decorator of a job's main function (place it under ``@hydra.main``); see :mod:`datamodels.cli`.

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

            catch_interrupts()
            try:
                if in_joblib_worker():
                    leave_with_parent()
                set_torch_threads(cfg.get("torch_threads"))
                return main(run_settings(cfg, list(HydraConfig.get().overrides.task), creates_run, derives))
            except UserError as err:
                if creates_run and not RunFolder(Path(cfg.run_dir).absolute()).run_json.exists():
                    remove_own_logs(RunFolder(Path(cfg.run_dir).absolute()))  # refused: leave nothing behind
                if keep_traceback(cfg):
                    raise
                print(f"error: {err}", file=sys.stderr)
                raise SystemExit(1) from None
            except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (Interrupted)
                if keep_traceback(cfg):
                    raise
                if in_joblib_worker():  # the launching process says it, once for the whole sweep
                    import multiprocessing.util  # noqa: PLC0415

                    # what a normal exit does first: unlink this worker's semaphores (tqdm's lock), or
                    # multiprocessing's resource tracker warns of them after the sweep's last line
                    getattr(multiprocessing.util, "_exit_function", lambda: None)()
                    sys.stdout.flush(), sys.stderr.flush()
                    os._exit(interrupted_exit_code(err))
                print(interrupted_line(err), file=sys.stderr)
                raise SystemExit(interrupted_exit_code(err)) from None
        return run
    return wrap
