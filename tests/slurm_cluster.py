"""A throw-away single-node SLURM cluster for the tests: munged, slurmctld and slurmd from
Debian's packages (``slurmctld slurmd slurm-client munge``), run as the current user with every
file under one new temporary directory, and stopped by the PIDs in their pid files.

    cluster = SlurmCluster(cpus=4).start()
    subprocess.run(["sbatch", ...], env=cluster.env)
    cluster.stop()          # and removes the directory

There is no accounting database, so ``sacct`` is replaced by ``tests/slurm_sacct.py`` (first on
the cluster's PATH): submitit asks sacct for job states and would otherwise never notice a job
that died without writing its result (scancel, crash).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue")
PACKAGES = "slurmctld slurmd slurm-client munge"
PARTITION = "debug"


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, check, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"test SLURM cluster: {what} within {timeout:.0f} s\n{tail}")
        time.sleep(0.2)


class SlurmCluster:
    def __init__(self, cpus: int = 4, max_array_size: int = 1001):
        # Not under pytest's tmp_path: munged wants every folder above its socket open to all,
        # and a socket path short enough for a Unix socket.
        self.root = Path(tempfile.mkdtemp(prefix="datamodels-slurm-"))
        self.cpus = cpus
        self.max_array_size = max_array_size
        self.node = socket.gethostname().split(".")[0]
        self.conf = self.root / "slurm.conf"
        bin_dir = self.root / "bin"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    def _pidfiles(self) -> dict[str, Path]:
        # stop order: the node daemon first, munge (which both use) last
        return {"slurmd": self.root / "slurmd.pid", "slurmctld": self.root / "slurmctld.pid",
                "munged": self.root / "munge" / "munged.pid"}

    def _run(self, *cmd: str, timeout: float = 10, check: bool = True) -> subprocess.CompletedProcess:
        # Daemons fork away; close_fds keeps them from holding a test runner's pipes open.
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout, check=check,
                              stdin=subprocess.DEVNULL, close_fds=True)

    def _daemon(self, *cmd: str, log: str) -> None:
        proc = self._run(*cmd, check=False)
        if proc.returncode != 0:
            path = self.root / "log" / log
            tail = path.read_text()[-3000:] if path.exists() else ""
            raise RuntimeError(f"test SLURM cluster: {cmd[0]} failed ({proc.returncode}): {proc.stderr}\n{tail}")

    def _ok(self, *cmd: str) -> bool:
        try:
            return self._run(*cmd, timeout=5, check=False).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def start(self) -> "SlurmCluster":
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        root, log = self.root, self.root / "log"
        for d in ("munge", "key", "state", "spool", "log", "tmp", "bin"):
            (root / d).mkdir(parents=True, exist_ok=True)
        # munged refuses a socket folder that others cannot enter, and a key others can read.
        for d, mode in (("", 0o755), ("munge", 0o755), ("key", 0o700), ("state", 0o700), ("spool", 0o700)):
            os.chmod(root / d, mode)
        key, sock = root / "key" / "munge.key", root / "munge" / "munge.socket"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        self._daemon("munged", f"--key-file={key}", f"--socket={sock}", f"--pid-file={root / 'munge' / 'munged.pid'}",
                  f"--log-file={log / 'munged.log'}", f"--seed-file={root / 'munge' / 'munged.seed'}",
                     log="munged.log")
        _wait("munged did not open its socket", sock.exists, 10, log / "munged.log")

        sacct = root / "bin" / "sacct"
        sacct.write_text(f"#!/bin/sh\nexec {sys.executable} {Path(__file__).with_name('slurm_sacct.py')} \"$@\"\n")
        sacct.chmod(0o755)
        user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
        # CR_Core (not CR_Core_Memory): otherwise each job takes the node's whole memory and jobs
        # run one at a time. config_overrides lets the node advertise more CPUs than it has.
        self.conf.write_text(f"""\
ClusterName=testcluster
SlurmctldHost={self.node}(127.0.0.1)
SlurmUser={user}
SlurmdUser={user}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={sock}
StateSaveLocation={root / 'state'}
SlurmdSpoolDir={root / 'spool'}
SlurmctldPidFile={root / 'slurmctld.pid'}
SlurmdPidFile={root / 'slurmd.pid'}
SlurmctldLogFile={log / 'slurmctld.log'}
SlurmdLogFile={log / 'slurmd.log'}
PlugStackConfig={root / 'plugstack.conf'}
TmpFS={root / 'tmp'}
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
SchedulerType=sched/backfill
ReturnToService=2
MinJobAge=600
MaxArraySize={self.max_array_size}
KillWait=2
InactiveLimit=0
Waittime=0
NodeName={self.node} NodeAddr=127.0.0.1 NodeHostname={self.node} CPUs={self.cpus} RealMemory=4096 State=UNKNOWN
PartitionName={PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
""")
        (root / "plugstack.conf").write_text("")
        self._daemon("slurmctld", "-f", str(self.conf), log="slurmctld.log")
        _wait("slurmctld did not answer", lambda: self._ok("scontrol", "ping"), 30, log / "slurmctld.log")
        self._daemon("slurmd", "-f", str(self.conf), "-N", self.node, log="slurmd.log")
        _wait("the node did not become idle", lambda: self._run(
            "sinfo", "-h", "-o", "%t", check=False).stdout.strip() in ("idle", "mix", "alloc"), 60, log / "slurmd.log")

    def stop(self) -> None:
        """Cancel every job, kill leftover job steps, end each daemon by its pid file, remove the folder."""
        if self._alive(self._pidfiles()["slurmctld"]):
            self._ok("scancel", f"--partition={PARTITION}")
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and self._run("squeue", "-h", "-t", "PD,R,CG,S,RQ", "-o", "%i",
                                                             check=False).stdout.strip():
                time.sleep(0.2)
        if self._alive(self._pidfiles()["slurmd"]):
            listed = self._run("scontrol", "listpids", check=False).stdout.split("\n")[1:]
            for pid in (line.split()[0] for line in listed if line.split() and line.split()[0].isdigit()):
                _signal(int(pid), signal.SIGKILL)
        for name, pidfile in self._pidfiles().items():
            pid = self._alive(pidfile)
            if pid:
                _signal(pid, signal.SIGTERM)
                # slurmd ignores TERM while it retries reaching the controller
                deadline = time.monotonic() + 10
                while _exists(pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
                _signal(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)

    @staticmethod
    def _alive(pidfile: Path) -> int | None:
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _exists(pid) else None


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
