"""The arrays an import reads: the datamodels release's pair of ``.npy`` files or a datamodels
store folder (:mod:`datamodels.sweep.importing` describes both), opened and checked from their
headers, read a block of rows at a time through maps of only the span a block covers, and their
values checked as they are read (masks 0/1, margins finite). Also the settings ``source.rows`` and
``source.targets`` as indices, and the release's file names (:func:`release_files`).
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..errors import UserError
from ..store.shards import compact_ranges

RELEASE_FILES = ("train_masks_{pct}pct.npy", "test_margins_{pct}pct.npy")
STORE_FILES = ("masks.npy", "margins.npy", "_completed.npy")
# Rows are read in chunks of about this many bytes; a shard is read whole (models_per_shard rows).
_CHUNK_BYTES = 64 << 20
# Rows of masks checked and packed at a time: 16 x 50,000 bytes stay in the CPU's cache.
_PACK_ROWS = 16


class ImportSourceError(UserError):
    """The arrays to import are unreadable, inconsistent or not what their settings say."""


@dataclass(frozen=True)
class NpyRows:
    """A 2-D ``.npy`` file, validated from its header, read a block of rows at a time."""

    path: Path
    shape: tuple[int, int]
    dtype: np.dtype
    offset: int

    @classmethod
    def open(cls, path, what: str, ndim: int = 2) -> "NpyRows":
        path = Path(path)
        if not path.is_file():
            raise ImportSourceError(f"{what}: {path} does not exist")
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError, pickle.UnpicklingError) as err:
            raise ImportSourceError(f"{what}: {path} is not a whole .npy file (truncated or another format: "
                                    f"{str(err).splitlines()[0]})") from None
        if array.ndim != ndim or (ndim == 2 and array.shape[1] == 0):
            raise ImportSourceError(f"{what}: {path} holds an array of shape {array.shape}, expected "
                                    f"{'[rows, columns]' if ndim == 2 else '[rows]'}")
        if array.ndim > 1 and not array.flags.c_contiguous:
            raise ImportSourceError(f"{what}: {path} is stored in Fortran order; save it in C order (np.save of "
                                    f"np.ascontiguousarray) to import it row by row")
        return cls(path, tuple(array.shape) + (1,) * (2 - ndim), array.dtype, int(array.offset))

    @property
    def row_bytes(self) -> int:
        return self.shape[1] * self.dtype.itemsize

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The rows ``rows`` in that order, through a map of only the span they cover: the map itself
        when they are consecutive (it is unmapped, and its pages leave this process's resident
        memory, when the caller drops the block), else a copy."""
        if len(rows) == 0:
            return np.zeros((0, self.shape[1]), self.dtype)
        lo, hi = int(rows.min()), int(rows.max()) + 1
        span = np.memmap(self.path, self.dtype, "r", offset=self.offset + lo * self.row_bytes,
                         shape=(hi - lo, self.shape[1]))
        contiguous = hi - lo == len(rows) and rows[0] == lo and np.all(np.diff(rows) == 1)
        return np.asarray(span) if contiguous else span[rows - lo]


@dataclass(frozen=True)
class Source:
    """The arrays of one import: masks ``[M, n]``, margins ``[M, T]``, and which rows are complete."""

    kind: str  # "release" or "store"
    masks: NpyRows
    margins: NpyRows
    completed: np.ndarray | None  # bool [M], the store layout only

    @property
    def files(self) -> dict[str, str]:
        return {"masks": str(self.masks.path.absolute()), "margins": str(self.margins.path.absolute())}


def open_source(masks=None, margins=None, store=None) -> Source:
    """The release pair (``masks`` and ``margins``) or a datamodels store folder (``store``)."""
    if (store is None) == (masks is None or margins is None) or (store is not None and (masks or margins)):
        raise ImportSourceError("give either source.masks= and source.margins= (the release's two .npy files) or "
                                "source.store= (a datamodels store folder), not both")
    if store is not None:
        folder = Path(store)
        if missing := [name for name in STORE_FILES if not (folder / name).is_file()]:
            raise ImportSourceError(f"source.store: {folder} lacks {', '.join(missing)}: not a datamodels store folder")
        done = NpyRows.open(folder / "_completed.npy", "source.store", ndim=1)
        completed = done.take(np.arange(done.shape[0])).ravel().astype(bool)
        source = Source("store", NpyRows.open(folder / "masks.npy", "source.store"),
                        NpyRows.open(folder / "margins.npy", "source.store"), completed)
    else:
        source = Source("release", NpyRows.open(masks, "source.masks"), NpyRows.open(margins, "source.margins"), None)
    M, Mm = source.masks.shape[0], source.margins.shape[0]
    if M != Mm or (source.completed is not None and len(source.completed) != M):
        raise ImportSourceError(f"the masks hold {M} rows and the margins {Mm}"
                                + (f" and _completed {len(source.completed)}" if source.completed is not None else "")
                                + ": one row per model in each; they are not from the same models")
    if source.masks.dtype.kind not in "biuf" or source.margins.dtype.kind not in "iuf":
        raise ImportSourceError(f"masks of dtype {source.masks.dtype} and margins of dtype {source.margins.dtype}: "
                                f"expected bool or 0/1 masks and numeric margins")
    return source


def selection(value, size: int, setting: str, unit: str = "rows") -> np.ndarray | None:
    """``source.rows`` / ``source.targets`` as indices into ``size`` (``unit``: what the source
    has ``size`` of, for the errors): None (all), ``"a:b"`` (a range, either end optional), a list
    of integers, or a file of them (``.npy``, else text, one per line). A range reaching past the
    data is refused, never cut to it: ``0:1000`` of 50 columns is a mistake in the command."""
    if value is None:
        return None
    if isinstance(value, str) and ":" in value and not Path(value).exists():
        try:
            start, stop = (int(part) if part.strip() else None for part in value.split(":"))
        except ValueError:
            raise ImportSourceError(f"{setting}={value!r}: expected a:b, a list of integers or a file") from None
        if any(end is not None and not -size <= end <= size for end in (start, stop)):  # -k: k from the end
            raise ImportSourceError(f"{setting}={value}: the source has {size} {unit} (0..{size - 1}); a range "
                                    f"a:b must lie within 0:{size}")
        chosen = np.arange(size)[slice(start, stop)]
    elif isinstance(value, (str, os.PathLike)):
        path = Path(value)
        if not path.is_file():
            raise ImportSourceError(f"{setting}={value!r}: no such file, and not a range a:b")
        try:
            chosen = np.load(path, allow_pickle=False) if path.suffix == ".npy" else np.loadtxt(path, ndmin=1)
        except (ValueError, OSError, EOFError, pickle.UnpicklingError) as err:
            raise ImportSourceError(f"{setting}: {path} is not a list of indices ({str(err).splitlines()[0]})") from None
    else:
        chosen = np.asarray(list(value) if not np.isscalar(value) else [value])
    chosen = np.asarray(chosen)
    if chosen.ndim != 1 or (len(chosen) and not np.all(np.mod(chosen, 1) == 0)):
        raise ImportSourceError(f"{setting}: expected a list of integers, got an array of shape {chosen.shape}")
    chosen = chosen.astype(np.int64)
    if len(chosen) == 0:
        raise ImportSourceError(f"{setting}={value!r} selects nothing")
    if chosen.min() < 0 or chosen.max() >= size:
        raise ImportSourceError(f"{setting}: indices {chosen.min()}..{chosen.max()} are outside 0..{size - 1} "
                                f"(the source has {size} {unit})")
    if len(np.unique(chosen)) != len(chosen):
        raise ImportSourceError(f"{setting}: lists an index twice")
    return chosen


def binary_masks(block: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """A block of masks as bool, refusing values other than 0/1 (``rows``: their source rows)."""
    raw = block.view(np.uint8) if block.dtype == bool else block  # a bool .npy may hold any byte
    if raw.dtype == np.uint8 and raw.max(initial=0) <= 1:
        return raw.view(bool)  # the common case, in one pass
    bad = (raw != 0) & (raw != 1)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise ImportSourceError(f"the masks are not 0/1: source row {rows[row]}, column {column} holds "
                                f"{raw[row, column].item()!r}")
    return raw.astype(bool, copy=False)


def packed_masks(block: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """A block of 0/1 masks packed (``np.packbits`` of each row), checked as :func:`binary_masks`
    does; a few rows at a time, so that packing reads them from the cache the check brought them
    into (half the time of two passes over a shard)."""
    packed = np.empty((len(block), (block.shape[1] + 7) // 8), np.uint8)
    for start in range(0, len(block), _PACK_ROWS):
        stop = start + _PACK_ROWS
        packed[start:stop] = np.packbits(binary_masks(block[start:stop], rows[start:stop]), axis=1)
    return packed


def finite_rows(source: Source, rows: np.ndarray, targets: np.ndarray, progress: bool) -> np.ndarray:
    """Bool ``[len(rows)]``: whose margins on ``targets`` are finite as float32 (one chunked pass)."""
    step = max(1, _CHUNK_BYTES // source.margins.row_bytes)
    finite = np.ones(len(rows), dtype=bool)
    every = np.array_equal(targets, np.arange(source.margins.shape[1]))
    # float16 (the release's) and float32 values are finite as float32 when they are finite at all
    narrow = source.margins.dtype in (np.float16, np.float32)
    for start in tqdm(range(0, len(rows), step), desc="checking margins", unit="chunk", disable=not progress):
        block = source.margins.take(rows[start:start + step])
        block = block if every else block[:, targets]
        finite[start:start + step] = np.isfinite(block if narrow else block.astype(np.float32)).all(axis=1)
    return finite


def non_finite_error(rows: np.ndarray, finite: np.ndarray) -> ImportSourceError:
    """How many of ``rows`` have NaN or infinite margins, and which (``finite``: of each row)."""
    bad = rows[~finite]
    shown = compact_ranges(np.sort(bad)[:20]) + (", ..." if len(bad) > 20 else "")
    return ImportSourceError(f"{len(bad)} of {len(rows)} rows have NaN or infinite margins (source rows {shown})"
                             + ("; source.nan=drop imports the others" if finite.any() else ""))


def release_files(folder, alpha: float) -> tuple[Path, Path]:
    """The release's two files for a kept fraction: ``train_masks_50pct.npy``, ``test_margins_50pct.npy``."""
    pct = f"{round(alpha * 100)}"
    return tuple(Path(folder) / name.format(pct=pct) for name in RELEASE_FILES)
