"""What every benchmark shares, each in one place: measuring a command or a block of work, naming
the machine, writing the results file, and the one-thread-per-process rule.

    run_measured(command)      wall and CPU seconds, peak summed RSS and PSS of its process tree
    measured() / peak_rss_gb() the same figures for work done in this process (VmHWM)
    machine()                  CPU, cores, memory, GPU, versions, git commit, date, thread settings
    save_results(name, rows)   runs/benchmarks/<name>.json (or ``path``), written atomically
    pin_threads()              the thread rule, checked (and applied where still in time)

Benchmarks are a package run as modules from the repository's root
(``.venv/bin/python -m benchmarks.bench_scale ...``), so they import each other
(``from benchmarks.bench_scale import GAME``) and this file without editing ``sys.path``.

Hand-written, reading ``/proc`` (Linux), because psutil is not a dependency of the package: it
may be installed in a venv by something else, but neither pyproject.toml nor a GPU machine
(which gets the working tree and its own torch, numpy, pandas) promises it. Standard library
only at import time, so that a benchmark's baseline process (``bench_import --read-once``)
loads nothing but what it measures, and ``pin_threads`` can run before numpy loads.

Threads: the project's rule is one BLAS/OpenMP (and LightGBM) thread per process, parallelism
from processes. The variables are read once, when numpy, torch or LightGBM loads, so they must be
set before that. The Makefile sets them on every line that runs a benchmark (``BENCH_ENV``), and
each benchmark's ``main`` calls :func:`pin_threads` once its arguments are read (all but
gpu_session and demo_figures, whose ``main`` the tests call in their own process): a variable
that is unset is set to 1 there (child processes, and libraries not loaded yet, follow it), and a
warning says when it came too late for this process (numpy already loaded: run through make, or
prefix ``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1``); ``machine()`` records it.
A value set on purpose is kept. Nothing happens as a side effect of importing a benchmark.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "runs" / "benchmarks"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# The modules whose loading reads each variable: set after they load, it no longer binds them.
_READERS = {"NUMBA_NUM_THREADS": ("numba",)}
_NUMERIC = ("numpy", "scipy", "torch", "lightgbm", "sklearn")
_SET_LATE: set[str] = set()  # pinned by pin_threads after their readers loaded: children only (machine())
VERSIONS = ("numpy", "torch", "lightgbm", "scikit-learn", "pandas", "pyarrow")


def pin_threads(variables: tuple[str, ...] = THREAD_VARIABLES) -> dict[str, str]:
    """One thread per process (module docstring): each of ``variables`` that is unset is set to
    1; a warning names those set too late for a library already loaded, and those set to
    another value on purpose (kept). Returns the variables' values."""
    late, loaded, other = [], set(), []
    for name in variables:
        value = os.environ.get(name)
        if value is None:
            os.environ[name] = "1"
            readers = {m for m in _READERS.get(name, _NUMERIC) if m in sys.modules}
            if readers:
                late.append(name)
                loaded |= readers
        elif value != "1":
            other.append(f"{name}={value}")
    _SET_LATE.update(late)
    if late:
        warnings.warn(f"benchmarks: {', '.join(late)} unset when {', '.join(sorted(loaded))} loaded: now 1 for child "
                      f"processes only, this process may use every core. Run it through make (BENCH_ENV), or "
                      f"prefix {' '.join(f'{v}=1' for v in variables)}", RuntimeWarning, stacklevel=2)
    if other:
        warnings.warn(f"benchmarks: {', '.join(other)} kept (the benchmarks' rule is 1 thread per process)",
                      RuntimeWarning, stacklevel=2)
    return {name: os.environ[name] for name in variables}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine() or "unknown CPU"


def tree_memory(root: int) -> tuple[int, int]:
    """Summed RSS and PSS (bytes) of ``root`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    rss = pss = 0
    stack = [root]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
        except OSError:
            continue
    return rss, pss


def run_measured(command: list[str], *, cwd: str | Path = ROOT, interval: float = 0.25) -> dict:
    """Run ``command`` (in ``cwd``, the repository's root by default); its wall and CPU seconds
    (``wall_s``, ``cpu_s``: its children's too) and the peak summed RSS and PSS of its process
    tree (``peak_rss_gb``, ``peak_pss_gb``, sampled every ``interval`` seconds). Its output is
    kept, and raised with a RuntimeError when it fails."""
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0, 0]

    def sample():
        while proc.poll() is None:
            rss, pss = tree_memory(proc.pid)
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = proc.communicate()[0]
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{output}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall_s": time.perf_counter() - start,
            "cpu_s": after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime,
            "peak_rss_gb": peak[0] / 2**30, "peak_pss_gb": peak[1] / 2**30}


def cpu_seconds() -> float:
    """CPU seconds this process has used (user and system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds a running process has used so far (``/proc/<pid>/stat``: utime and stime)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_gb() -> float:
    """This process's peak resident memory (VmHWM), GB: since it started, or since
    :func:`measured` last reset it."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 2**20


@contextlib.contextmanager
def measured():
    """Wall and CPU seconds and peak resident memory of the work done inside the block, in this
    process: ``with measured() as figures: ...``, then ``figures`` holds ``wall_s``, ``cpu_s``,
    ``peak_rss_gb``. The peak is VmHWM, reset at the start where the kernel allows it
    (``/proc/self/clear_refs``); ``peak_reset`` says whether it was, else the peak counts from
    the process's start."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        reset = True
    except OSError:
        reset = False
    figures = {"peak_reset": reset}
    cpu, start = cpu_seconds(), time.perf_counter()
    try:
        yield figures
    finally:
        figures |= {"wall_s": time.perf_counter() - start, "cpu_s": cpu_seconds() - cpu,
                    "peak_rss_gb": peak_rss_gb()}


def git_commit(root: Path = ROOT) -> str | None:
    """The checked-out commit, read from ``.git`` (no git process; None outside a checkout)."""
    git = root / ".git"
    try:
        if git.is_file():  # a worktree: "gitdir: PATH"
            git = (root / git.read_text().split(":", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        common = (git / (git / "commondir").read_text().strip()).resolve() if (git / "commondir").exists() else git
        for folder in (git, common):
            if (folder / ref).exists():
                return (folder / ref).read_text().strip()
        packed = (common / "packed-refs").read_text().splitlines()
        return next(line.split()[0] for line in packed if line.endswith(" " + ref))
    except (OSError, IndexError, StopIteration):
        return None


def _memory_gb() -> float | None:
    try:
        with open("/proc/meminfo") as info:
            return next(int(line.split()[1]) for line in info if line.startswith("MemTotal")) / 2**20
    except (OSError, StopIteration):
        return None


def _gpu() -> str | None:
    """The first CUDA device's name, where torch is installed and sees one."""
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def machine() -> dict:
    """The machine a benchmark ran on, as a plain dict."""
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "memory_gb": _memory_gb(), "gpu": _gpu(),
            "platform": platform.platform(), "python": platform.python_version(),
            **{package: _version(package) for package in VERSIONS},
            "threads": {name: os.environ.get(name) for name in THREAD_VARIABLES},
            "threads_set_late": sorted(_SET_LATE),  # by pin_threads: for child processes only
            "git_commit": git_commit(), "date": _now()}


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _plain(value):
    """JSON for what ``json`` does not know: numpy scalars and arrays, paths, the rest as text."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def save_results(name: str, rows, *, path: str | Path | None = None, command: list[str] | None = None,
                 **fields) -> Path:
    """Write ``{benchmark, command, date, machine, rows, **fields}`` as JSON to ``path`` (default
    ``runs/benchmarks/<name>.json`` under the repository), through a temporary file renamed into
    place, so the file is absent, the previous one, or whole; print where. ``rows``: plain dicts of
    figures; ``command``: the command line (default the interpreter's, ``sys.orig_argv``);
    ``fields``: more top-level entries (e.g. a second table)."""
    path = Path(path) if path is not None else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "command": list(command if command is not None else sys.orig_argv),
               "date": _now(), "machine": machine(), "rows": [dict(row) for row in rows], **fields}
    text = json.dumps(payload, indent=1, default=_plain)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would outlive the rename
        with os.fdopen(fd, "w") as out:
            out.write(text + "\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    print(f"results written to {path}", flush=True)
    return path


def tests_module(name: str):
    """``tests/<name>.py`` loaded from its file (tests/ is no package: pytest imports its files
    as top-level modules), e.g. the frozen pruning oracle ``prune_reference``."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
