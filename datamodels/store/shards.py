"""The sweep's store: one parquet file per shard, and the validated view over all of them.

Shard files are ``<run_dir>/shards/shard-NNNNNN.parquet``, one row per model:

============== ================================ =============================================
column         type                             meaning
============== ================================ =============================================
model_index    int64                            model ``i`` of the sweep
mask_id        int64                            the mask it trained on (``i // repeats``)
repeat         int32                            which repeat of that mask (``i % repeats``)
seed           int64                            its training seed, from ``(sweep seed, i)``
mask           binary                           ``numpy.packbits`` of the bool mask over the
                                                ``n`` players (big-endian bit order, 1 = kept)
margins        fixed_size_list<float32>[T]      margin on every target point
holdout_acc    float64                          accuracy on the holdout split
train_seconds  float64                          wall time to train and evaluate it
============== ================================ =============================================

The file's key-value metadata ``datamodels`` is a JSON object: the run's identity
(dataset fingerprint, ``n``, ``T``, design, alpha, sweep seed, repeats, models per shard,
model count, config hash, package version) plus the shard number. ``collect`` refuses a shard
whose identity differs from the run's, naming the file, and never deletes or rewrites one.

A shard is written to a hidden temporary name in the same folder, flushed to disk, then
renamed: a reader sees it whole or not at all, and a killed writer leaves only a hidden file.
The same files open in pandas, pyarrow and DuckDB (``read_parquet('.../shard-*.parquet')``).

Within a shard, each finished model is checkpointed by the same rule as a one-row file
``shards/.shard-NNNNNN.partial/model-IIIIII.parquet``; a shard killed mid-way (pre-emption, time
limit) resumes from them, and they are merged into the shard file and removed once it is
written. Readers of the store ignore these hidden folders.

The shards stay the source of truth; :mod:`datamodels.store.fit_ready` derives from them the
memory-mapped copy a fit reads (``<run_dir>/fit_ready/``).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import __version__
from ..errors import StoreError
from ..run.folder import PARTIAL_RE, SHARD_RE, TEMP_RE, RunFolder
from ..run.identity import check_identity
from ..tables import write_atomic

FORMAT = "datamodels.shard/1"
META_KEY = b"datamodels"


def run_meta(fingerprint: str, n: int, T: int, design: str, alpha, sweep_seed: int, repeats: int,
             models_per_shard: int, num_models: int, config_hash: str, budget: int | None = None,
             degree: int | None = None, **described) -> dict:
    """A sweep's metadata, whatever made it (a sweep, a planted game, an import): its identity,
    which ``run.json`` holds and every shard repeats (:data:`~datamodels.run.identity.IDENTITY_KEYS`;
    SPEX's ``budget`` and ``degree`` only for ``design="spex"``), the package version, and
    ``described`` (``dataset``, ``model``, ``players``: what the run is of, beside its identity)."""
    return {"format": FORMAT, "fingerprint": fingerprint, "n": n, "T": T, "design": design, "alpha": alpha,
            **({"budget": budget, "degree": degree} if design == "spex" else {}),
            "sweep_seed": sweep_seed, "repeats": repeats, "models_per_shard": models_per_shard,
            "num_models": num_models, "config_hash": config_hash, "version": __version__, **described}


@dataclass
class ModelRecord:
    model_index: int
    mask_id: int
    repeat: int
    seed: int
    mask: np.ndarray  # bool [n]
    margins: np.ndarray  # float32 [T]
    holdout_acc: float
    train_seconds: float
    timings: dict = field(default_factory=dict)  # data / compute / eval seconds; not stored


def partial_models(shard_dir: str | os.PathLike) -> dict[int, int]:
    """Shard number -> models checkpointed in its partial folder, for the unfinished shards."""
    shard_dir = Path(shard_dir)
    found = [(PARTIAL_RE.match(p.name), p) for p in shard_dir.iterdir()] if shard_dir.is_dir() else []
    return {int(m.group(1)): len(list(p.glob("model-*.parquet"))) for m, p in found if m}


def _schema(meta: dict) -> pa.Schema:
    return pa.schema([
        ("model_index", pa.int64()), ("mask_id", pa.int64()), ("repeat", pa.int32()), ("seed", pa.int64()),
        ("mask", pa.binary()), ("margins", pa.list_(pa.float32(), meta["T"])),
        ("holdout_acc", pa.float64()), ("train_seconds", pa.float64()),
    ], metadata={META_KEY: json.dumps(meta, sort_keys=True).encode()})


def write_shard(path: str | os.PathLike, records: Iterable[ModelRecord], meta: dict) -> Path:
    """Write one shard atomically. Refuses to replace an existing file."""
    records = list(records)
    n, T = meta["n"], meta["T"]
    for r in records:
        if r.mask.shape != (n,) or r.margins.shape != (T,):
            raise StoreError(f"{path}: model {r.model_index} has mask shape {r.mask.shape} and margins shape "
                             f"{r.margins.shape}, expected ({n},) and ({T},)")
    masks = np.stack([r.mask for r in records]) if records else np.zeros((0, n), bool)
    margins = np.stack([r.margins for r in records]).astype(np.float32) if records else np.zeros((0, T), np.float32)
    scalars = {name: [getattr(r, name) for r in records] for name in SCALAR_COLUMNS}
    return write_shard_columns(path, scalars, np.packbits(masks, axis=1), margins, meta)


def write_shard_columns(path: str | os.PathLike, scalars: dict, packed_masks: np.ndarray, margins: np.ndarray,
                        meta: dict) -> Path:
    """Write one shard atomically from whole columns: ``scalars`` (name -> one value per model, for
    every name of :data:`SCALAR_COLUMNS`), ``packed_masks`` uint8 ``[rows, ceil(n/8)]`` (rows of
    ``numpy.packbits``) and ``margins`` float32 ``[rows, T]``. Refuses to replace an existing file.

    The mask column is built on the packed block's own buffer, with no Python object per model:
    an import writes 10^5 models of 50,000 players this way (datamodels.sweep.importing).
    """
    path = Path(path)
    if path.exists():
        raise StoreError(f"{path} already exists; shards are never overwritten")
    n, T = meta["n"], meta["T"]
    rows, width = len(packed_masks), (n + 7) // 8
    if packed_masks.shape != (rows, width) or margins.shape != (rows, T):
        raise StoreError(f"{path}: masks of shape {packed_masks.shape} packed and margins of shape {margins.shape}, "
                         f"expected ({rows}, {width}) and ({rows}, {T})")
    bad = np.flatnonzero(~np.isfinite(margins).all(axis=1))
    if len(bad):
        raise StoreError(f"{path}: model {scalars['model_index'][bad[0]]} has non-finite margins")
    offsets = np.arange(0, (rows + 1) * width, width, dtype=np.int32)
    masks = pa.BinaryArray.from_buffers(pa.binary(), rows, [None, pa.py_buffer(offsets),
                                                             pa.py_buffer(np.ascontiguousarray(packed_masks))])
    types = {"model_index": pa.int64(), "mask_id": pa.int64(), "repeat": pa.int32(), "seed": pa.int64(),
             "holdout_acc": pa.float64(), "train_seconds": pa.float64()}
    columns = {name: pa.array(np.asarray(scalars[name]), types[name]) for name in SCALAR_COLUMNS}
    table = pa.table({
        **{name: columns[name] for name in ("model_index", "mask_id", "repeat", "seed")},
        "mask": masks,
        "margins": pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(margins, np.float32).ravel(),
                                                              pa.float32()), T),
        **{name: columns[name] for name in ("holdout_acc", "train_seconds")},
    }, schema=_schema(meta))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: pq.write_table(table, tmp, row_group_size=1024, **parquet_options(table)))
    return path


def parquet_options(table: pa.Table) -> dict:
    """How a shard's columns are encoded (``pyarrow.parquet.write_table`` options).

    The masks are written as they are: no two are alike (a dictionary took 2/3 of the time to
    write 1,000 masks of 50,000 players) and packed bits do not compress. The margins are split
    into byte streams (Parquet's BYTE_STREAM_SPLIT) and compressed with zstd at level 1: smaller
    than a dictionary on every shard measured, and 0.7x its time on float16-valued margins (the
    datamodels release: an import's bulk); ``benchmarks/bench_shard_encoding.py``. No min/max
    statistics of either (no reader filters on them). Parquet names the margins' leaf column.
    """
    scalars = [name for name in table.column_names if name not in ("mask", "margins")]
    leaf = "margins.list.element"
    return {"use_dictionary": scalars, "write_statistics": scalars, "column_encoding": {leaf: "BYTE_STREAM_SPLIT"},
            "compression": {**dict.fromkeys(scalars, "snappy"), "mask": "none", leaf: "zstd"},
            "compression_level": {leaf: 1}}


def read_models(path: str | os.PathLike, n: int) -> list[ModelRecord]:
    """The models of a shard (or checkpoint) file, as written (timings are not stored)."""
    columns = read_shard_columns(path, n)
    masks = np.unpackbits(columns.pop("packed_masks"), axis=1, count=n).astype(bool)
    margins = columns.pop("margins")
    rows = zip(*(columns[name].tolist() for name in SCALAR_COLUMNS))
    return [ModelRecord(i, mask_id, repeat, seed, mask, margin, acc, seconds)
            for (i, mask_id, repeat, seed, acc, seconds), mask, margin in zip(rows, masks, margins)]


# The per-model scalars of a shard, in schema order.
SCALAR_COLUMNS = ("model_index", "mask_id", "repeat", "seed", "holdout_acc", "train_seconds")
# Two rows of one model index are the same result when these columns agree (the duplicate rule).
RESULT_COLUMNS = ("mask_id", "seed", "packed_masks", "margins")


def read_shard_columns(path: str | os.PathLike, n: int, T: int | None = None) -> dict[str, np.ndarray]:
    """One shard as numpy columns: its scalars, ``packed_masks`` uint8 ``[rows, ceil(n/8)]`` and
    ``margins`` float32 ``[rows, T]`` (``T`` as stored when not given).

    Masks are read straight from the binary column's buffers: at 1,000 models of 50,000 players
    per shard, a Python ``bytes`` object per mask would cost more than the rest of the read.
    Margins that are not finite, masks of the wrong length and margins of the wrong width are
    refused, naming the file: ``write_shard`` never writes them, so another writer did.
    """
    table = pq.read_table(path)
    stored_T = table.schema.field("margins").type.list_size
    if T is not None and stored_T != T:
        raise StoreError(f"{path} holds {stored_T} margins per model, expected T={T}")
    columns = {name: table.column(name).to_numpy() for name in SCALAR_COLUMNS}
    width = (n + 7) // 8
    parts, row = [], 0
    for chunk in table.column("mask").chunks:
        if not len(chunk):
            continue
        offsets = np.frombuffer(chunk.buffers()[1], np.int64 if pa.types.is_large_binary(chunk.type) else np.int32)
        lengths = np.diff(offsets[chunk.offset:chunk.offset + len(chunk) + 1])  # a null mask has length 0
        bad = np.flatnonzero(lengths != width)
        if len(bad):
            raise StoreError(f"{path}: model {columns['model_index'][row + bad[0]]} has a mask of "
                             f"{lengths[bad[0]]} bytes, expected {width} for n={n}")
        start = int(offsets[chunk.offset])
        parts.append(np.frombuffer(chunk.buffers()[2], np.uint8, len(chunk) * width, start).reshape(-1, width))
        row += len(chunk)
    columns["packed_masks"] = np.concatenate(parts) if parts else np.zeros((0, width), np.uint8)
    margins = table.column("margins").combine_chunks().flatten().to_numpy().reshape(-1, stored_T)
    bad = np.flatnonzero(~np.isfinite(margins).all(axis=1))
    if len(bad):
        raise StoreError(f"{path}: model {columns['model_index'][bad[0]]} has non-finite margins "
                         f"({len(bad)} models of this shard do); this package's sweep never writes them")
    columns["margins"] = margins
    return columns


def read_shard_meta(path: str | os.PathLike) -> dict:
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise StoreError(f"{path} is not a readable parquet file ({err}); move it out of the shard folder") from err
    raw = (schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise StoreError(f"{path} has no '{META_KEY.decode()}' metadata: not a shard written by this package")
    meta = json.loads(raw)
    if meta.get("format") != FORMAT:
        raise StoreError(f"{path} has format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


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
