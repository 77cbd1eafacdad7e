"""SIGINT and SIGTERM as :class:`Interrupted`, and the one line and exit code an interrupted job
ends with (for :func:`~datamodels.cli.job_wrapper.job` and a parallel sweep's launching process)."""

from __future__ import annotations

import os
import signal
import threading


class Interrupted(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, a closed ssh session), raised in the main thread as Ctrl-C's
    SIGINT raises :class:`KeyboardInterrupt`, so that ``with`` blocks unwind (a shard's claim is
    released) before the job ends. ``detail``, when a stage sets it, says what was left unfinished."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum, frame) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal must not cut the clean-up short
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


def catch_interrupts(handler=_raise_interrupted) -> bool:
    """SIGINT and SIGTERM raise :class:`Interrupted` in this process (its main thread only).

    Not in a SLURM job: submitit's own SIGTERM and SIGUSR1 handlers (requeue on pre-emption or
    time limit, ``hydra_plugins/datamodels_slurm``) stay in place there, and its claims are taken
    over by the requeued job (:class:`datamodels.run.claims.ShardClaim`)."""
    if os.environ.get("SLURM_JOB_ID") or threading.current_thread() is not threading.main_thread():
        return False
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
    return True


def interrupted_line(err: KeyboardInterrupt) -> str:
    """The one line an interrupted job prints, e.g. ``interrupted (SIGTERM): shard 3 was not finished; ...``."""
    name = signal.Signals(getattr(err, "signum", signal.SIGINT)).name
    detail = getattr(err, "detail", None)
    return f"interrupted ({name})" + (f": {detail}" if detail else "")


def interrupted_exit_code(err: KeyboardInterrupt) -> int:
    return 128 + int(getattr(err, "signum", signal.SIGINT))  # 130 for SIGINT, 143 for SIGTERM, as a shell says
