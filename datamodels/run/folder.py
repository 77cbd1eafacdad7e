"""The run folder: every path a stage reads or writes, by name, and the folder's own rules.

One sweep, and everything derived from it, lives in one folder (``run_dir``)::

    run.json                     the sweep's identity (datamodels.run.identity.IDENTITY_KEYS)
    config.json                  the resolved settings it was swept with (datamodels.cli)
    shards/shard-NNNNNN.parquet  one file per shard (datamodels.store.shards)
    shards/.shard-NNNNNN.partial/model-IIIIII.parquet   checkpoints of an unfinished shard
    .claims/shard-NNNNNN.lock    which process trains a shard now (datamodels.run.claims.ShardClaim),
    .claims/shard-NNNNNN.lock.job  and its holder's SLURM job, host and process
    fit_ready/                   memory-mapped masks and margins (datamodels.store.fit_ready)
    fit/[alpha-A/]interactions.parquet, fit_metrics.parquet    (datamodels.fit.stage)
    fit/[alpha-A/]parts/<engine>/part-KKKK.<table>             a fit split into SLURM parts
    prune/keep_sets.parquet, evaluation.parquet, evaluation.csv, paired.csv, evaluation.png
    report/index.html            (datamodels.views.report), beside it faithfulness.csv and figure-NN.png
    curated/<method>-<fraction>/ keep_set.parquet, card.json[, dataset.npz]
    duplicates/candidates.parquet  candidate duplicate groups, ranked (datamodels.pruning.duplicates)
    duplicates/pairs.parquet     every candidate pair's duplicate fraction and test (datamodels.pruning.duplicates)
    twins.csv                    the known twin players of a duplicates experiment (datamodels.sweep.twins)
    data/<dataset>-<fingerprint>-train.beton   the FFCV loader's copy of the training split
    planted/truth.parquet        the spectra a planted sweep was drawn from (datamodels.sweep.planted)
    imported/source.json, rows.npy[, labels.npy]   what an imported run was read from (datamodels.sweep.importing)
    planted/labels.npy           each player's class (int [n]) in a planted sweep, when asked for
    ablations/<name>/            a retraining check of a fit (datamodels.ablation): a child run folder
                                 of its own (run.json, config.json, shards/, ...), and beside them
    ablations/<name>/design/     masks.npz (its sweep.design=file masks), checks.parquet, roles.parquet
    ablations/<name>/results/    checks.parquet (measured), summary.csv, paired.csv, figure.png
    logs/                        Hydra's and SLURM's logs
    logs/slurm/submission-<job id>.json   one SLURM submission (hydra_plugins/datamodels_slurm)

Stages record their inputs (:mod:`datamodels.run.stage_inputs`) in hidden ``.inputs-*.json`` files
beside their outputs. :class:`RunFolder` names all of these; no other module builds a path
inside a run folder by hand. What a run's identity is (its config hash, the keys of
``run.json``) is :mod:`datamodels.run.identity`'s; who may train a shard,
:mod:`datamodels.run.claims`'s: a folder's paths change for other reasons than either.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..errors import StoreError
from ..tables import write_atomic
from .identity import check_identity, config_hash, hashed_launch_settings_then, identity, with_later_defaults

SHARD_RE = re.compile(r"^shard-(\d{6})\.parquet$")
TEMP_RE = re.compile(r"^\.shard-\d{6}\.parquet\.\d+\.tmp$")
PARTIAL_RE = re.compile(r"^\.shard-(\d{6})\.partial$")
CLAIM_RE = re.compile(r"^shard-(\d{6})\.lock$")
FIT_TABLES = ("interactions.parquet", "fit_metrics.parquet")


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
    """The paths of one run folder (module docstring), by name. A file that a view opens as a
    table of the same name ends in ``_file`` (``keep_sets_file``; the view's ``keep_sets`` is the
    table), a folder of such tables in ``_dir``: one name, one kind of thing."""

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

    def claim_holder(self, shard: int) -> Path:
        """Beside a claim, its holder's record: what the lock file cannot hold (SLURM job, start time)."""
        claim = self.claim(shard)
        return claim.with_name(claim.name + ".job")

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
        """An imported run's record of its source (datamodels.sweep.importing)."""
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
        an import's ``source.labels`` (datamodels.sweep.importing), a planted sweep's classes."""
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

    def interactions_file(self, alpha: float | None = None) -> Path:
        return self.fit(alpha) / FIT_TABLES[0]

    def fit_metrics_file(self, alpha: float | None = None) -> Path:
        return self.fit(alpha) / FIT_TABLES[1]

    def fit_tables(self, alpha: float | None = None) -> tuple[Path, Path]:
        """The fit stage's two tables: interactions, then metrics."""
        return self.interactions_file(alpha), self.fit_metrics_file(alpha)

    def fit_record(self, engine: str, alpha: float | None = None) -> Path:
        return self.fit(alpha) / f".inputs-{engine}.json"

    def fit_parts(self, engine: str, alpha: float | None = None) -> Path:
        return self.fit(alpha) / "parts" / engine

    def fit_part(self, engine: str, part: int, alpha: float | None = None) -> tuple[Path, Path]:
        """Part ``part``'s two tables (interactions, metrics) of a fit split into parts."""
        return tuple(self.fit_parts(engine, alpha) / f"part-{part:04d}.{name}" for name in FIT_TABLES)

    # ------------------------------------------------------------------ pruning, report, curation

    @property
    def prune(self) -> Path:
        return self.root / "prune"

    @property
    def keep_sets_file(self) -> Path:
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
        """Every fitted target's faithfulness (one row per target and engine), beside the page."""
        return self.report / "faithfulness.csv"

    @property
    def report_record(self) -> Path:
        return self.report / ".inputs.json"

    def curated(self, pruning_method: str, fraction: float) -> Path:
        return self.root / "curated" / f"{pruning_method}-{float(fraction):g}"

    @property
    def duplicate_candidates(self) -> Path:
        """The ranked candidate duplicate groups (datamodels.pruning.duplicates)."""
        return self.root / "duplicates" / "candidates.parquet"

    @property
    def duplicate_pairs(self) -> Path:
        """Every candidate duplicate pair, measured (datamodels.pruning.duplicates)."""
        return self.root / "duplicates" / "pairs.parquet"

    @property
    def twins(self) -> Path:
        """The known twin players (columns player_a, player_b) of a duplicates experiment."""
        return self.root / "twins.csv"

    # ------------------------------------------------------------------ retraining checks

    @property
    def ablations_dir(self) -> Path:
        return self.root / "ablations"

    def ablation_dir(self, name: str) -> Path:
        """A retraining check's folder: a child run folder whose sweep is the check's design."""
        return self.ablations_dir / name

    def ablation_design(self, name: str) -> tuple[Path, Path, Path]:
        """The check's masks (``masks.npz``: masks and seed groups), its checks and every mask's role."""
        folder = self.ablation_dir(name) / "design"
        return folder / "masks.npz", folder / "checks.parquet", folder / "roles.parquet"

    def ablation_results(self, name: str) -> tuple[Path, Path, Path, Path]:
        """The measured checks (parquet), their summary, the paired comparison (removal) and the figure."""
        folder = self.ablation_dir(name) / "results"
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
        then = hashed_launch_settings_then(json.loads(self.config_json.read_text()).get("sweep") or {})
        if then:
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


# Names that moved to datamodels.run.identity, which the docs once spelt as run_folder.<name>:
# importable from here for one release, so that code written against those docs keeps running.
_MOVED = {"LAUNCH_SETTINGS": "datamodels.run.identity", "LATER_DEFAULTS": "datamodels.run.identity"}


def __getattr__(name: str):
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"datamodels.run.folder.{name} has moved to {_MOVED[name]}.{name}; the old name goes in the "
                  f"next release", DeprecationWarning, stacklevel=2)
    from . import identity as run_identity
    return getattr(run_identity, name)
