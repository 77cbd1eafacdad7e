"""The Hydra callback of a multirun sweep (:class:`SweepSummary`, named in ``conf/config.yaml``):
one line for the whole sweep at its end, and one for it when its launching process is interrupted."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ..errors import UserError
from ..processes import parent_of
from ..run.claims import ShardClaim
from ..run.folder import RunFolder, SHARD_RE
from .interrupts import Interrupted, catch_interrupts, interrupted_exit_code, interrupted_line


def _shards_present(run_dir) -> set[str]:
    shards = RunFolder(Path(run_dir).absolute()).shards
    return {p.name for p in shards.iterdir() if SHARD_RE.match(p.name)} if shards.is_dir() else set()


class SweepSummary(Callback):
    """After a multirun of ``jobs/sweep.py``: one line for the whole sweep (shards written by
    this launch, already present, still missing), where each worker would print its own."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self.before = _shards_present(config.run_dir) if config.hydra.job.name == "sweep" else None
        if self.before is not None and "joblib" in str(config.hydra.launcher.get("_target_", "")).lower():
            self.run_dir, self.debug = config.run_dir, bool(config.get("debug"))
            catch_interrupts(self._interrupted)

    def _interrupted(self, signum, frame) -> None:
        """SIGTERM or Ctrl-C in the launching process of a parallel sweep: its workers that hold a
        claim get SIGTERM (Ctrl-C in a terminal reached them already) and release their claims as
        they end (:func:`~datamodels.cli.job_wrapper.job`, quietly); then one line for the whole
        sweep, and the exit code."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        folder = RunFolder(Path(self.run_dir).absolute())
        workers = {}  # shard -> the pid of the worker of ours that trains it
        for shard in folder.claimed_shards():
            host, pid = ShardClaim(folder, shard).holder_process() or ("", 0)
            if pid and parent_of(pid) == os.getpid():
                workers[shard] = pid
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 30
        while any(parent_of(pid) == os.getpid() for pid in workers.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        err = Interrupted(signum)
        if self.debug or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise err
        unfinished = sorted(s for s in workers if not folder.shard(s).exists())
        held = [s for s in unfinished if (ShardClaim(folder, s).holder_process() or ("", 0))[1] == workers[s]]
        names = ", ".join(map(str, unfinished))
        if not unfinished:
            err.detail = "run the same command to go on"
        else:
            claims = ((f"the claims of shards {', '.join(map(str, held))} are left to the next sweep, which takes "
                       f"them over") if held else "its claim is released" if len(unfinished) == 1
                      else "their claims are released")
            err.detail = (f"{'shard' if len(unfinished) == 1 else 'shards'} {names} "
                          f"{'was' if len(unfinished) == 1 else 'were'} not finished; {claims}; run the same command "
                          f"to resume")
        print(interrupted_line(err), file=sys.stderr, flush=True)
        raise SystemExit(interrupted_exit_code(err))

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
