"""Claims on the shards of a run folder: which process trains a shard now, and whether it still can.

A claim is a lock file that :class:`~datamodels.run.folder.RunFolder` names
(``.claims/shard-NNNNNN.lock``, its holder's record beside it). What is here is how one is
taken, refreshed and let go, and how a claim whose holder died is told from one whose holder
trains: the only part of a run folder that depends on processes, hosts and SLURM jobs rather
than on files.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from flufl.lock import Lock, NotLockedError, TimeOutError

from ..tables import write_atomic
from .folder import RunFolder


class ShardClaim:
    """One process's claim on one shard of a run folder, so that two never train it at once.

    Two sweeps may reach the same shard: a command resubmitted while the first job still runs, a
    requeued SLURM job racing its original. The claim is a lock file in ``<run_dir>/.claims/``
    made with ``flufl.lock``, whose hard-link protocol is atomic on NFS and the other shared file
    systems of clusters; it records the holder's host and process id, and beside it (``.job``)
    the holder's SLURM job and its process's start time (``/proc/<pid>/stat``), so that a reused
    process id is not taken for the holder. A claim lives for ``lifetime`` and is refreshed after
    every trained pass. It is taken over when its holder cannot be training any more: at once
    when its process on this host has exited (:meth:`exited_holder`), or when it was made by this
    very SLURM job (SLURM runs one instance of a job: a requeued job's first run is over,
    wherever it ran); otherwise once its lifetime has passed (a holder on another host that died
    without letting go). A take-over is said in one line of this package's log; ``flufl.lock``'s
    own log (an ERROR line for every lock it breaks) is kept quiet.
    """

    def __init__(self, folder: RunFolder, shard: int, lifetime: timedelta = timedelta(hours=1)):
        self.shard = shard
        self.path = folder.claim(shard)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._job = folder.claim_holder(shard)
        self._lock = Lock(str(self.path), lifetime=lifetime, separator="~")

    def acquire(self) -> bool:
        """Take the claim; False (and :attr:`holder` says who) when a live process holds it."""
        taken_over = None
        exited = self.exited_holder()
        if exited is not None or (_slurm_job() and self._holder_job() == _slurm_job()):
            taken_over = (f"its holder, process {exited} on this host, has exited" if exited is not None
                          else f"its holder was this SLURM job ({_slurm_job()}), requeued")
            try:  # expired: the lock breaks it on the next attempt
                os.utime(self.path, (0, 0))
            except FileNotFoundError:
                taken_over = None
        elif self.expired():
            taken_over = f"{self.holder.split(', claimed until')[0]} let its lifetime pass"
        try:
            # A few seconds: time for the lock to break a claim whose lifetime has passed.
            with _quiet_flufl():
                self._lock.lock(timeout=timedelta(seconds=5))
            write_atomic(self._job, lambda tmp: tmp.write_text(json.dumps(
                {"slurm_job": _slurm_job(), "host": socket.getfqdn(), "pid": os.getpid(), "started": _started(os.getpid())})))
        except TimeOutError:
            return False
        except BaseException:  # interrupted (Ctrl-C, SIGTERM) while taking it: leave nothing held
            if self._lock.is_locked:
                self.release()
            else:
                self._lock.unlock(unconditionally=True)  # our own claim file only
            raise
        if taken_over:
            _log.warning(f"shard {self.shard}: took over a stale claim ({taken_over})")
        return True

    def _holder_record(self) -> dict:
        """What the holder wrote beside its claim: a JSON record, or (older claims) its SLURM job."""
        try:
            text = self._job.read_text()
        except FileNotFoundError:
            return {}
        try:
            record = json.loads(text)
        except ValueError:
            record = None
        return record if isinstance(record, dict) else {"slurm_job": text or None}

    def _holder_job(self) -> str | None:
        return self._holder_record().get("slurm_job") or None

    def exited_holder(self) -> int | None:
        """The holder's process id when it ran on this host and has exited (a process that now
        has its id but started at another time than the holder is another process); None when the
        claim is free, held by a live process, or held on another host (only its lifetime tells)."""
        host, pid = self.holder_process() or ("", 0)
        if host not in _this_host() or pid == os.getpid():
            return None
        record = self._holder_record()
        started = record.get("started") if record.get("pid") == pid and record.get("host") == host else None
        return None if _alive(pid, started) else pid

    def holder_process(self) -> tuple[str, int] | None:
        """The holder's host and process id, None when the claim is free."""
        try:
            host, pid, _ = self._lock.details
        except (NotLockedError, OSError):
            return None
        return host, pid

    def expired(self) -> bool:
        """Whether the claim's lifetime has passed (flufl.lock breaks it on the next attempt)."""
        try:
            return self._lock.expiration + CLOCK_SLOP < datetime.now()
        except OSError:
            return False

    @property
    def holder(self) -> str:
        """Who holds the claim: host, process id, SLURM job, and until when it is valid."""
        try:
            host, pid, _ = self._lock.details
            until = self._lock.expiration
        except (NotLockedError, OSError):
            return "a process that has just let it go"
        job = self._holder_job()
        here = " (this host)" if host in _this_host() else ""
        return (f"process {pid} on {host}{here}{f', SLURM job {job}' if job else ''}, claimed until "
                f"{until:%Y-%m-%d %H:%M:%S} unless refreshed")

    def refresh(self) -> None:
        self._lock.refresh()

    def release(self) -> None:
        self._job.unlink(missing_ok=True)
        self._lock.unlock(unconditionally=True)

    def __enter__(self) -> ShardClaim:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


_log = logging.getLogger(__name__)
CLOCK_SLOP = timedelta(seconds=10)  # flufl.lock's: how long past its expiry it leaves a claim alone


@contextmanager
def _quiet_flufl():
    """flufl.lock logs an ERROR for each lock it breaks or fails to take (``lifetime has expired,
    breaking``, ``timed out``): both are expected here, and :class:`ShardClaim` says them itself."""
    logger = logging.getLogger("flufl.lock")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _this_host() -> tuple[str, ...]:
    return socket.getfqdn(), socket.gethostname()


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """A process's state letter and start time (clock ticks since boot) from ``/proc``; None when
    there is no such process (or no ``/proc``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], fields[19]


def _started(pid: int) -> str | None:
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def _alive(pid: int, started: str | None = None) -> bool:
    """Whether process ``pid`` of this host runs (a zombie does not); with ``started``, whether it
    is the process that started then (not a later one given the same id)."""
    if Path("/proc/self/stat").exists():
        stat = _proc_stat(pid)
        return stat is not None and stat[0] not in "ZXx" and (started is None or stat[1] == started)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _slurm_job() -> str | None:
    """This process's SLURM job (an array task's own id), or None outside SLURM."""
    return os.environ.get("SLURM_JOB_ID")
