"""The run folder: every path a stage reads or writes, by name, and the folder's own rules.

One sweep, and everything derived from it, lives in one folder (``run_dir``)::

    run.json                     the sweep's identity (datamodels.store.IDENTITY_KEYS)
    config.json                  the resolved settings it was swept with (datamodels.cli)
    shards/shard-NNNNNN.parquet  one file per shard (datamodels.store)
    shards/.shard-NNNNNN.partial/model-IIIIII.parquet   checkpoints of an unfinished shard
    .claims/shard-NNNNNN.lock    which process trains a shard now (ShardClaim)
    fit_ready/                   memory-mapped masks and margins (datamodels.fit_ready)
    fit/[alpha-A/]interactions.parquet, fit_metrics.parquet    (datamodels.fitting)
    fit/[alpha-A/]parts/<method>/part-KKKK.<table>             a fit split into SLURM parts
    prune/keep_sets.parquet, evaluation.parquet, evaluation.csv, paired.csv, evaluation.png
    report/index.html            (datamodels.report), beside it faithfulness.csv and figure-NN.png
    curated/<method>-<fraction>/ keep_set.parquet, card.json[, dataset.npz]
    duplicates/candidates.parquet  candidate duplicate groups, ranked (datamodels.duplicates)
    duplicates/pairs.parquet     every candidate pair's duplicate fraction and test (datamodels.duplicates)
    twins.csv                    the known twin players of a duplicates experiment (datamodels.twins)
    data/<dataset>-<fingerprint>-train.beton   the FFCV loader's copy of the training split
    planted/truth.parquet        the spectra a planted sweep was drawn from (datamodels.planted)
    imported/source.json, rows.npy[, labels.npy]   what an imported run was read from (datamodels.importing)
    planted/labels.npy           each player's class (int [n]) in a planted sweep, when asked for
    ablations/<name>/            a retraining check of a fit (datamodels.ablation): a child run folder
                                 of its own (run.json, config.json, shards/, ...), and beside them
    ablations/<name>/design/     masks.npz (its sweep.design=file masks), checks.parquet, roles.parquet
    ablations/<name>/results/    checks.parquet (measured), summary.csv, paired.csv, figure.png
    logs/                        Hydra's and SLURM's logs
    logs/slurm/submission-<job id>.json   one SLURM submission (hydra_plugins/datamodels_slurm)

Stages record their inputs (:mod:`datamodels.stage_inputs`) in hidden ``.inputs-*.json`` files
beside their outputs. :class:`RunFolder` names all of these; no other module builds a path
inside a run folder by hand.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from flufl.lock import Lock, NotLockedError, TimeOutError

from .errors import StoreError
from .tables import write_atomic

SHARD_RE = re.compile(r"^shard-(\d{6})\.parquet$")
TEMP_RE = re.compile(r"^\.shard-\d{6}\.parquet\.\d+\.tmp$")
PARTIAL_RE = re.compile(r"^\.shard-(\d{6})\.partial$")
CLAIM_RE = re.compile(r"^shard-(\d{6})\.lock$")
FIT_TABLES = ("interactions.parquet", "fit_metrics.parquet")
# The configuration sections that decide a sweep's results (all but sweep.shard, which only
# picks the work of one job): a run folder records them (config.json) and keeps them.
RUN_SECTIONS = ("dataset", "players", "model", "train", "loader", "sweep")
# Settings of how a sweep is launched, not of its results: a run folder's jobs take them from the
# command line. sweep.models_per_pass (K models stacked in one pass) trains every model as it
# trains alone, up to floating-point rounding (datamodels.stacking, tests/test_stacking.py), as
# device and compile do.
LAUNCH_SETTINGS = ("sweep.shard", "sweep.models_per_pass")
# Launch settings that entered the config hash before they were known to be such: the hash
# counts them at this value whatever they are, so that the run folders swept at it keep their
# identity (those swept at another value keep theirs too: RunFolder.config_hash).
HASHED_LAUNCH_SETTINGS = {"sweep.models_per_pass": 1}
# Result-deciding settings added after sweeps were written, at their defaults (config_hash).
LATER_DEFAULTS = {"train": {"precision": "fp32"}}


# The keys that make two shards belong to the same sweep: a run's identity (run.json).
IDENTITY_KEYS = ("format", "fingerprint", "n", "T", "design", "alpha", "sweep_seed", "repeats",
                 "models_per_shard", "num_models", "config_hash", "budget", "degree")  # the last two: design=spex


def config_hash(config: dict, hashed_as: dict | None = None) -> str:
    """Hash of everything that determines the sweep's results (not where or how it is launched).
    A setting added after sweeps were written counts only away from its default
    (``LATER_DEFAULTS``), so those sweeps keep their identity. A launch setting that the hash
    once counted counts at its fixed value (``HASHED_LAUNCH_SETTINGS``, or ``hashed_as``: the
    value a run folder was swept with then, for the hash it recorded)."""
    relevant = {k: config.get(k) for k in RUN_SECTIONS if k != "sweep"}
    for section, defaults in LATER_DEFAULTS.items():
        if isinstance(relevant.get(section), dict):
            relevant[section] = {k: v for k, v in relevant[section].items() if k not in defaults or v != defaults[k]}
    relevant["sweep"] = {k: v for k, v in config["sweep"].items() if f"sweep.{k}" not in LAUNCH_SETTINGS}
    for path, value in (HASHED_LAUNCH_SETTINGS | (hashed_as or {})).items():
        key = path.split(".", 1)[1]
        if key in config["sweep"]:  # a sweep written before the setting existed did not count it
            relevant["sweep"][key] = value
    return short_hash(relevant)


def short_hash(value) -> str:
    """16 hex digits of the sha256 of ``value`` as sorted JSON: a run's config hash (and a
    planted run's fingerprint). Changing how it is spelt changes every recorded run's identity."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def with_later_defaults(config: dict) -> dict:
    """A recorded configuration with the settings added since (``LATER_DEFAULTS``) at their
    defaults, as the sweep that wrote it ran: a job resuming or reading an older run compares
    and uses them as any other recorded setting."""
    filled = dict(config)
    for section, defaults in LATER_DEFAULTS.items():
        if isinstance(filled.get(section), dict):
            filled[section] = defaults | filled[section]
    return filled


def identity(meta: dict) -> dict:
    return {k: meta.get(k) for k in IDENTITY_KEYS}


def check_identity(path: Path, meta: dict, expected: dict) -> None:
    """Refuse ``path`` (a shard, a layout, a run.json) when its identity ``meta`` is another sweep's."""
    found, want = identity(meta), identity(expected)
    if found != want:
        diff = ", ".join(f"{k}={found[k]!r} there, {want[k]!r} in this job's settings" for k in IDENTITY_KEYS
                         if found[k] != want[k])
        raise StoreError(f"{path} belongs to a different sweep: {diff}. It was left untouched; "
                         f"move it away or point the run at another folder.")


def shard_path(shard_dir: str | os.PathLike, shard: int) -> Path:
    return Path(shard_dir) / f"shard-{shard:06d}.parquet"


def partial_dir(shard_dir: str | os.PathLike, shard: int) -> Path:
    """Where the finished models of an unfinished shard are checkpointed."""
    return Path(shard_dir) / f".shard-{shard:06d}.partial"


def checkpoint_path(shard_dir: str | os.PathLike, shard: int, model_index: int) -> Path:
    return partial_dir(shard_dir, shard) / f"model-{model_index:06d}.parquet"


def submission_path(log_dir: str | os.PathLike, job_id: str) -> Path:
    """The record of one SLURM submission, named by its first job id: which job ran which
    overrides, and its log files. The launcher writes it to its log folder, which may lie outside
    a run folder (``hydra.launcher.submitit_folder``), so it is named from the folder."""
    return Path(log_dir) / f"submission-{job_id}.json"


def read_submissions(log_dir: str | os.PathLike) -> list[dict]:
    """Every submission record of a SLURM log folder, oldest first."""
    paths = sorted(Path(log_dir).glob("submission-*.json"), key=lambda p: p.stat().st_mtime)
    return [json.loads(p.read_text()) for p in paths]


@dataclass(frozen=True)
class RunFolder:
    """The paths of one run folder (module docstring), by name."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    # ------------------------------------------------------------------ the sweep

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def config_json(self) -> Path:
        return self.root / "config.json"

    @property
    def shards(self) -> Path:
        return self.root / "shards"

    def shard(self, shard: int) -> Path:
        return shard_path(self.shards, shard)

    def partial(self, shard: int) -> Path:
        return partial_dir(self.shards, shard)

    def checkpoint(self, shard: int, model_index: int) -> Path:
        return checkpoint_path(self.shards, shard, model_index)

    def claim(self, shard: int) -> Path:
        return self.root / ".claims" / f"shard-{shard:06d}.lock"

    def claimed_shards(self) -> list[int]:
        """The shards whose claim file exists (held, or left by a holder that died)."""
        found = (CLAIM_RE.match(p.name) for p in (self.root / ".claims").glob("shard-*.lock"))
        return sorted(int(m.group(1)) for m in found if m)

    def beton(self, dataset: str, fingerprint: str) -> Path:
        return self.root / "data" / f"{dataset}-{fingerprint}-train.beton"

    @property
    def planted_truth(self) -> Path:
        return self.root / "planted" / "truth.parquet"

    @property
    def imported(self) -> Path:
        """An imported run's record of its source (datamodels.importing)."""
        return self.root / "imported"

    @property
    def imported_source(self) -> Path:
        return self.imported / "source.json"

    @property
    def imported_rows(self) -> Path:
        """int64 [num_models]: the source row of every model index."""
        return self.imported / "rows.npy"

    @property
    def imported_labels(self) -> Path:
        """int64 [n]: every player's class, when the import was given them (source.labels)."""
        return self.imported / "labels.npy"

    @property
    def planted_labels(self) -> Path:
        return self.root / "planted" / "labels.npy"

    @property
    def label_files(self) -> tuple[Path, ...]:
        """Where a run without a linked dataset may hold every player's class (int ``[n]``, ``.npy``):
        an import's ``source.labels`` (datamodels.importing), a planted sweep's classes."""
        return self.imported_labels, self.planted_labels

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def slurm_logs(self) -> Path:
        return self.logs / "slurm"

    def submission(self, job_id: str) -> Path:
        return submission_path(self.slurm_logs, job_id)

    def submissions(self) -> list[dict]:
        """The SLURM launcher's submission records of this run, oldest first."""
        return read_submissions(self.slurm_logs)

    # ------------------------------------------------------------------ the fit

    @property
    def fit_ready(self) -> Path:
        return self.root / "fit_ready"

    def fit_ready_building(self, pid: int) -> Path:
        """Where process ``pid`` builds a layout before renaming it into place."""
        return self.root / f".fit_ready.{pid}.tmp"

    def fit_ready_aside(self, pid: int) -> Path:
        """Where process ``pid`` moves a stale layout while putting its own in place."""
        return self.root / f".fit_ready.{pid}.old"

    def fit(self, alpha: float | None = None) -> Path:
        """``fit/``, or ``fit/alpha-A/`` for a fit of the masks drawn at alpha ``A`` (``fit.alpha``)."""
        return self.root / "fit" if alpha is None else self.root / "fit" / f"alpha-{float(alpha):g}"

    def interactions(self, alpha: float | None = None) -> Path:
        return self.fit(alpha) / FIT_TABLES[0]

    def fit_metrics(self, alpha: float | None = None) -> Path:
        return self.fit(alpha) / FIT_TABLES[1]

    def fit_tables(self, alpha: float | None = None) -> tuple[Path, Path]:
        """The fit stage's two tables: interactions, then metrics."""
        return self.interactions(alpha), self.fit_metrics(alpha)

    def fit_record(self, method: str, alpha: float | None = None) -> Path:
        return self.fit(alpha) / f".inputs-{method}.json"

    def fit_parts(self, method: str, alpha: float | None = None) -> Path:
        return self.fit(alpha) / "parts" / method

    def fit_part(self, method: str, part: int, alpha: float | None = None) -> tuple[Path, Path]:
        """Part ``part``'s two tables (interactions, metrics) of a fit split into parts."""
        return tuple(self.fit_parts(method, alpha) / f"part-{part:04d}.{name}" for name in FIT_TABLES)

    # ------------------------------------------------------------------ pruning, report, curation

    @property
    def prune(self) -> Path:
        return self.root / "prune"

    @property
    def keep_sets(self) -> Path:
        return self.prune / "keep_sets.parquet"

    @property
    def keep_sets_record(self) -> Path:
        return self.prune / ".inputs-keep_sets.json"

    @property
    def evaluation(self) -> Path:
        """One row per retrained model of a keep-set."""
        return self.prune / "evaluation.parquet"

    @property
    def evaluation_summaries(self) -> tuple[Path, Path, Path]:
        """evaluation.csv (per method and fraction), paired.csv (against the best baseline), the figure."""
        return self.prune / "evaluation.csv", self.prune / "paired.csv", self.prune / "evaluation.png"

    @property
    def evaluation_record(self) -> Path:
        return self.prune / ".inputs-evaluation.json"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def report_page(self) -> Path:
        return self.report / "index.html"

    @property
    def report_faithfulness(self) -> Path:
        """Every fitted target's faithfulness (one row per target and method), beside the page."""
        return self.report / "faithfulness.csv"

    @property
    def report_record(self) -> Path:
        return self.report / ".inputs.json"

    def curated(self, method: str, fraction: float) -> Path:
        return self.root / "curated" / f"{method}-{float(fraction):g}"

    @property
    def duplicate_candidates(self) -> Path:
        """The ranked candidate duplicate groups (datamodels.duplicates)."""
        return self.root / "duplicates" / "candidates.parquet"

    @property
    def duplicate_pairs(self) -> Path:
        """Every candidate duplicate pair, measured (datamodels.duplicates)."""
        return self.root / "duplicates" / "pairs.parquet"

    @property
    def twins(self) -> Path:
        """The known twin players (columns player_a, player_b) of a duplicates experiment."""
        return self.root / "twins.csv"

    # ------------------------------------------------------------------ retraining checks

    @property
    def ablations(self) -> Path:
        return self.root / "ablations"

    def ablation(self, name: str) -> Path:
        """A retraining check's folder: a child run folder whose sweep is the check's design."""
        return self.ablations / name

    def ablation_design(self, name: str) -> tuple[Path, Path, Path]:
        """The check's masks (``masks.npz``: masks and seed groups), its checks and every mask's role."""
        folder = self.ablation(name) / "design"
        return folder / "masks.npz", folder / "checks.parquet", folder / "roles.parquet"

    def ablation_results(self, name: str) -> tuple[Path, Path, Path, Path]:
        """The measured checks (parquet), their summary, the paired comparison (removal) and the figure."""
        folder = self.ablation(name) / "results"
        return folder / "checks.parquet", folder / "summary.csv", folder / "paired.csv", folder / "figure.png"

    # ------------------------------------------------------------------ the folder's rules

    def check_sweep(self, meta: dict, config: dict | None = None) -> None:
        """Claim the folder for the sweep ``meta`` (its identity in ``run.json``, its settings
        ``config`` in ``config.json``), or refuse it if it holds another sweep or files that are
        not a run's.

        Parallel workers of the same sweep may all write them: their contents are identical,
        and each re-reads what won.
        """
        # Hydra may have made the log folder before the job starts, and a parallel worker of this
        # sweep may be writing run.json right now (its hidden temporary file).
        def foreign(p: Path) -> bool:
            return p.name not in ("logs", ".claims", "design") and not (p.name.startswith(".") and p.name.endswith(".tmp"))

        if self.root.exists() and not self.run_json.exists() and any(foreign(p) for p in self.root.iterdir()):
            raise StoreError(f"{self.root} is not empty and holds no run.json: it is not a run folder of this "
                                 f"package. Choose another run_dir.")
        if not self.run_json.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            write_atomic(self.run_json, lambda tmp: tmp.write_text(json.dumps(identity(meta), sort_keys=True, indent=1)))
        check_identity(self.run_json, self.read_run(), meta)
        if config is not None and not self.config_json.exists():
            write_atomic(self.config_json, lambda tmp: tmp.write_text(json.dumps(config, indent=1, default=str)))

    def no_sweep_error(self, missing: str = "run.json") -> StoreError:
        """The error for a folder that holds no sweep, naming the run folders beside it."""
        parent = self.root.parent
        beside = sorted(p.parent for p in parent.glob("*/run.json")) if parent.is_dir() else []
        shown = [os.path.relpath(p) if p.is_relative_to(Path.cwd()) else str(p) for p in beside[:5]]
        where = f"one of the sweeps beside it ({', '.join(shown)})" if shown else "the folder of a sweep"
        return StoreError(f"{self.root} holds no sweep (no {missing}): pass run_dir= {where}, or run "
                              f"jobs/sweep.py with these settings first")

    def read_run(self) -> dict:
        """The identity of the folder's sweep, as its ``run.json`` records it."""
        if not self.run_json.exists():
            raise self.no_sweep_error()
        try:
            return json.loads(self.run_json.read_text())
        except json.JSONDecodeError as err:
            raise StoreError(f"{self.run_json} is corrupt ({err})") from err

    def config_hash(self, config: dict) -> str:
        """:func:`config_hash` of ``config``, the sweep of this folder: the hash its ``run.json``
        holds when the folder was swept before a launch setting left the hash, at another value
        than the one the hash now counts (``sweep.models_per_pass=8``), so that it stays readable."""
        current = config_hash(config)
        if not (self.run_json.exists() and self.config_json.exists()):
            return current
        recorded = json.loads(self.config_json.read_text()).get("sweep") or {}
        then = {path: recorded[path.split(".", 1)[1]] for path in HASHED_LAUNCH_SETTINGS
                if path.split(".", 1)[1] in recorded}
        if then and then != {p: HASHED_LAUNCH_SETTINGS[p] for p in then}:
            old = config_hash(config, then)
            if self.read_run().get("config_hash") == old:
                return old
        return current

    def read_config(self) -> dict:
        """The resolved configuration the sweep was run with (``config.json``), with settings
        added since at their defaults (:func:`with_later_defaults`)."""
        if not self.config_json.exists():
            raise self.no_sweep_error("config.json")
        return with_later_defaults(json.loads(self.config_json.read_text()))


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
        self._job = self.path.with_name(self.path.name + ".job")
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
