"""One shard file: its columns and metadata, written whole and read back.

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
model count, config hash, package version) plus the shard number: :func:`read_shard_meta`
reads it back, and :func:`datamodels.store.shards.collect` checks it against the run's.

A shard is written to a hidden temporary name in the same folder, flushed to disk, then
renamed: a reader sees it whole or not at all, and a killed writer leaves only a hidden file.
The same files open in pandas, pyarrow and DuckDB (``read_parquet('.../shard-*.parquet')``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import __version__
from ..errors import StoreError
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
