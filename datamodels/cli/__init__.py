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
  other exception is a bug and keeps its traceback. A typo on the command line (``fit.worker=2``,
  ``fit=proxyspx``) is refused so too, with the closest name, before Hydra composes: every job's
  ``__main__`` calls :func:`launch`.
- **Threads and workers.** ``torch_threads`` applies to every job; a job running in a worker of
  a parallel sweep (``hydra/launcher=joblib``) exits when the launching process dies.
- **One line per sweep.** The shards of a multirun sweep report once, at its end
  (:class:`SweepSummary`, a Hydra callback), not once per worker.

One module a concern: :mod:`~datamodels.cli.recorded_settings` (the run folder's settings, and
contradicting overrides refused), :mod:`~datamodels.cli.job_wrapper` (:func:`job`, and what a job
asks of Hydra's state), :mod:`~datamodels.cli.interrupts` (SIGINT and SIGTERM: the line and exit
code), :mod:`~datamodels.cli.callbacks` (:class:`SweepSummary`) and
:mod:`~datamodels.cli.command_line` (the check before Hydra). Every name is imported from here.

This is the one library package that reads Hydra's state (the overrides as typed); the stages
themselves take plain values and never import Hydra.
"""

from .callbacks import SweepSummary
from .command_line import CONF, launch, not_an_option, override_error
from .interrupts import Interrupted, catch_interrupts, interrupted_exit_code, interrupted_line
from .job_wrapper import (chosen_on_command_line, in_joblib_worker, in_multirun, job, keep_traceback,
                          set_torch_threads)
from .recorded_settings import contradictions, overridden_paths, run_settings

__all__ = ["CONF", "Interrupted", "SweepSummary", "catch_interrupts", "chosen_on_command_line", "contradictions",
           "in_joblib_worker", "in_multirun", "interrupted_exit_code", "interrupted_line", "job", "keep_traceback",
           "launch", "not_an_option", "overridden_paths", "override_error", "run_settings", "set_torch_threads"]
