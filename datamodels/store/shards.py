"""The sweep's store: a run's shard files collected, checked and loaded as one sweep.

:mod:`datamodels.store.shard_file` says what one shard file holds and how it is written.
:func:`collect` lists a run's shards and the models they hold, and refuses a shard whose
identity differs from the run's, naming the file; it never deletes or rewrites one.
:func:`load_sweep` reads them as :class:`SweepResults`.

Within a shard, each finished model is checkpointed by the same rule as a one-row file
``shards/.shard-NNNNNN.partial/model-IIIIII.parquet``; a shard killed mid-way (pre-emption, time
limit) resumes from them, and they are merged into the shard file and removed once it is
written. Readers of the store ignore these hidden folders.

The shards stay the source of truth; :mod:`datamodels.store.fit_ready` derives from them the
memory-mapped copy a fit reads (``<run_dir>/fit_ready/``).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow.parquet as pq

from ..errors import StoreError
from ..run.folder import PARTIAL_RE, SHARD_RE, TEMP_RE, RunFolder
from ..run.identity import check_identity
# The shard file's names, here too: callers import them from this module as they always have.
from .shard_file import (FORMAT, META_KEY, RESULT_COLUMNS, SCALAR_COLUMNS, ModelRecord, parquet_options,
                         read_models, read_shard_columns, read_shard_meta, run_meta, write_shard,
                         write_shard_columns)

__all__ = ["FORMAT", "META_KEY", "RESULT_COLUMNS", "SCALAR_COLUMNS", "CollectReport", "ModelRecord",
           "SweepResults", "collect", "collect_run", "compact_ranges", "load_sweep", "parquet_options",
           "partial_models", "read_models", "read_shard_columns", "read_shard_meta", "run_meta", "shard_files",
           "write_shard", "write_shard_columns"]


def partial_models(shard_dir: str | os.PathLike) -> dict[int, int]:
    """Shard number -> models checkpointed in its partial folder, for the unfinished shards."""
    shard_dir = Path(shard_dir)
    found = [(PARTIAL_RE.match(p.name), p) for p in shard_dir.iterdir()] if shard_dir.is_dir() else []
    return {int(m.group(1)): len(list(p.glob("model-*.parquet"))) for m, p in found if m}


def shard_files(shard_dir: str | os.PathLike) -> tuple[list[Path], list[Path]]:
    """The shard files of a folder and the temporary files killed writers left behind.

    Anything else in the folder is refused: a run folder must hold only this sweep's shards.
    """
    shard_dir = Path(shard_dir)
    if not shard_dir.is_dir():
        return [], []
    shards, temps, foreign = [], [], []
    for entry in sorted(shard_dir.iterdir()):
        if PARTIAL_RE.match(entry.name):
            continue  # an unfinished shard's checkpoints (partial_models)
        (shards if SHARD_RE.match(entry.name) else temps if TEMP_RE.match(entry.name) else foreign).append(entry)
    if foreign:
        raise StoreError(f"{shard_dir} holds files that are not shards of this package: "
                         f"{', '.join(p.name for p in foreign[:5])}{' ...' if len(foreign) > 5 else ''}")
    return shards, temps


@dataclass
class CollectReport:
    shard_dir: Path
    num_models: int
    shards: list[Path]
    present: np.ndarray  # sorted unique model indices found
    missing: np.ndarray
    duplicated: dict[int, list[str]]  # model index -> files holding it
    leftover_temps: list[Path] = field(default_factory=list)

    def conflict(self, index: int) -> StoreError:
        """The error for a model index whose duplicated rows hold different results."""
        return StoreError(f"model {index} appears with different results in "
                          f"{', '.join(self.duplicated[index])}; remove one of them")

    @property
    def complete(self) -> bool:
        return len(self.missing) == 0 and not self.duplicated

    def missing_shards(self, models_per_shard: int) -> list[int]:
        return sorted({int(i) // models_per_shard for i in self.missing})

    def summary(self) -> str:
        lines = [f"{self.shard_dir}: {len(self.shards)} shard files, {len(self.present)} of {self.num_models} "
                 f"models present, {len(self.missing)} missing, {len(self.duplicated)} duplicated"]
        if len(self.missing):
            lines.append(f"  missing model indices: {compact_ranges(self.missing)}")
        for index, files in list(self.duplicated.items())[:10]:
            lines.append(f"  model {index} appears in {', '.join(files)}")
        if self.leftover_temps:
            lines.append(f"  {len(self.leftover_temps)} temporary files from interrupted writers (harmless; "
                         f"safe to delete): {', '.join(p.name for p in self.leftover_temps[:3])}")
        return "\n".join(lines)


def compact_ranges(indices: np.ndarray) -> str:
    """Compact text for sorted integers: 0-4, 9, 12-13."""
    if len(indices) == 0:
        return ""
    breaks = np.flatnonzero(np.diff(indices) != 1)
    starts = np.concatenate([[indices[0]], indices[breaks + 1]])
    ends = np.concatenate([indices[breaks], [indices[-1]]])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in zip(starts, ends))


def collect(shard_dir: str | os.PathLike, expected: dict | None = None) -> CollectReport:
    """Validate every shard of a folder against the run's identity and count its models.

    ``expected`` is the run's metadata; without it the first shard's is used. Raises
    :class:`StoreError` naming the first foreign, corrupt or inconsistent file.
    """
    shards, temps = shard_files(shard_dir)
    if not shards and expected is None:
        raise StoreError(f"{shard_dir} holds no shard files (shard-NNNNNN.parquet): has the sweep run?")
    reference = expected
    owners: dict[int, list[str]] = {}
    for path in shards:
        meta = read_shard_meta(path)
        reference = reference or meta
        check_identity(path, meta, reference)
        if int(SHARD_RE.match(path.name).group(1)) != meta.get("shard"):
            raise StoreError(f"{path} is named for another shard than the {meta.get('shard')} its metadata records")
        indices = pq.read_table(path, columns=["model_index"]).column(0).to_numpy()
        for i in indices:
            owners.setdefault(int(i), []).append(path.name)
    num_models = int(reference["num_models"])
    present = np.array(sorted(owners), dtype=np.int64)
    if len(present) and (present[0] < 0 or present[-1] >= num_models):
        raise StoreError(f"{shard_dir}: model indices outside 0..{num_models - 1} ({present[0]}..{present[-1]})")
    missing = np.setdiff1d(np.arange(num_models), present)
    duplicated = {i: files for i, files in owners.items() if len(files) > 1}
    return CollectReport(Path(shard_dir), num_models, shards, present, missing, duplicated, temps)


@dataclass
class SweepResults:
    """What a sweep wrote, collected: one row per model, sorted by model index (:func:`load_sweep`).

    Its ``margins`` are model-major, ``[m, T]`` like its masks ``[m, n]`` (row ``i`` is model ``i``
    on every target); a fit-ready layout holds the transpose as ``FitReady.target_margins`` ``[T, m]``.
    """

    model_index: np.ndarray  # int64 [m]
    mask_id: np.ndarray  # int64 [m]
    repeat: np.ndarray  # int32 [m]
    seed: np.ndarray  # int64 [m]
    packed_masks: np.ndarray  # uint8 [m, ceil(n/8)]
    margins: np.ndarray  # float32 [m, T] (or [m, len(targets)] when a subset was read)
    holdout_acc: np.ndarray  # float64 [m]
    train_seconds: np.ndarray  # float64 [m]
    targets: np.ndarray  # int64: which target columns ``margins`` holds
    meta: dict
    report: CollectReport

    @property
    def masks(self) -> np.ndarray:
        """bool [m, n]; unpacks all masks at once (use ``packed_masks`` at CIFAR scale)."""
        return np.unpackbits(self.packed_masks, axis=1, count=self.meta["n"]).astype(bool)


def load_sweep(run_dir: str | os.PathLike, targets: Iterable[int] | None = None,
               require_complete: bool = False, expected: dict | None = None) -> SweepResults:
    """Validate and read the shards of a run folder's sweep: ``(masks bool[m, n], margins float32[m, T])``
    and indices.

    ``run_dir`` is the run folder, as every other opener takes it; its shards folder is still
    accepted, with a :class:`DeprecationWarning`, until the next release.

    Reads one shard at a time, keeping only the requested target columns, so the full margin
    matrix never has to fit in memory when a fit job needs a few targets. A model index present
    in two shards is an error unless both rows are identical (then one is kept and the report
    says so). With ``require_complete`` a sweep with missing models is refused.
    """
    report = collect(_sweep_shards(run_dir), expected)
    if require_complete and len(report.missing):
        raise StoreError(report.summary())
    meta = expected or read_shard_meta(report.shards[0])
    T = meta["T"]
    cols = np.arange(T) if targets is None else np.asarray(list(targets), dtype=np.int64)
    if len(cols) and (cols.min() < 0 or cols.max() >= T):
        raise StoreError(f"target columns must lie in 0..{T - 1}, got {cols.min()}..{cols.max()}")
    parts = []
    for path in report.shards:
        part = read_shard_columns(path, meta["n"], T)
        part["margins"] = part["margins"][:, cols]
        parts.append(part)
    columns = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(columns["model_index"], kind="stable")
    columns = {k: v[order] for k, v in columns.items()}
    keep = np.ones(len(order), dtype=bool)
    for index in report.duplicated:
        rows = np.flatnonzero(columns["model_index"] == index)
        first = rows[0]
        for row in rows[1:]:
            if not all(np.array_equal(columns[k][row], columns[k][first]) for k in RESULT_COLUMNS):
                raise report.conflict(index)
            keep[row] = False
    columns = {k: v[keep] for k, v in columns.items()}
    return SweepResults(**columns, targets=cols, meta=meta, report=report)


def _sweep_shards(run_dir: str | os.PathLike) -> Path:
    """The shards folder of ``run_dir``, or ``run_dir`` itself when a caller written before
    ``load_sweep`` took the run folder passed the shards folder."""
    path = Path(run_dir)
    folder = RunFolder(path)
    if folder.run_json.exists():
        return folder.shards
    # A run folder keeps its shard files in shards/, never at its top, so either sign means the
    # caller handed over the shards folder itself.
    if path.name == folder.shards.name or (path.is_dir() and any(SHARD_RE.match(p.name) for p in path.iterdir())):
        warnings.warn(f"load_sweep takes the run folder (the folder that holds shards/), not a shards folder "
                      f"({path}); shards folders are accepted until the next release", DeprecationWarning,
                      stacklevel=3)
        return path
    return folder.shards


def collect_run(run_dir: str | os.PathLike) -> tuple[dict, CollectReport]:
    """The identity of a run folder's sweep (``run.json``) and the report of its shards."""
    folder = RunFolder(run_dir)
    expected = folder.read_run()
    return expected, collect(folder.shards, expected)


def __getattr__(name: str):
    # SweepResults was named Sweep, beside the SweepRun that trains a sweep: the old name still
    # works for one release.
    if name == "Sweep":
        warnings.warn("datamodels.store.shards.Sweep is renamed SweepResults (what a sweep wrote, collected; "
                      "SweepRun is the sweep that trains)", DeprecationWarning, stacklevel=2)
        return SweepResults
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
