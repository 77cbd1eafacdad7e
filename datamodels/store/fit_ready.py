"""The fit-ready layout of a collected sweep: memory-mapped masks and target-major margins.

The parquet shards stay the source of truth, but they are laid out for writing (one shard per
job, one row per model): a fit reads one target's margins over all models and gathers a few
players' mask bits over all models, and from shards either read means reading every shard whole.
At CIFAR scale (n = 50,000, T = 10,000, m = 10^5) that is 4 GB of margins per pass. So
``jobs/collect.py`` derives, once, a copy that a fit memory-maps:

================ ========================== ===================================================
``fit_ready/``
masks.npy        uint8 ``[m, ceil(n/8)]``   packed masks (as in the shards), rows sorted by
                                            model index; each model once
margins.npy      float32 ``[T, m]``         target-major: row ``t`` is target ``t`` over all
                                            models (same row order), one contiguous read
models.parquet   one row per model          model_index, mask_id, repeat, seed, holdout_acc,
                                            train_seconds (same row order)
manifest.json    JSON                       format, the run's identity (``run.json``), n, T, m,
                                            and (name, size, mtime_ns) of every shard it was
                                            built from
================ ========================== ===================================================

:func:`open_fit_ready` maps ``margins.npy`` as :attr:`FitReady.target_margins`, ``[T, m]``: the name
says the orientation, since :attr:`SweepResults.margins <datamodels.store.shards.SweepResults>` is model-major
``[m, T]``. Worker processes that receive ``FitReady.masks`` (pickled) map the same file and share
its pages.

The layout is written into ``<run_dir>/.fit_ready.<pid>.tmp/`` and renamed into place, so a
reader sees a whole layout or none, and a killed builder leaves only a hidden folder. A layout
whose shards have changed since (a shard added, removed or replaced) is refused by
:func:`open_fit_ready`, never rebuilt behind the user's back: a fit must not silently use other
models than the user collected. ``jobs/collect.py`` rebuilds it.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.lib.format import open_memmap
from tqdm.auto import tqdm

from ..errors import StoreError
from ..packed import PackedMasks
from ..run.folder import RunFolder
from ..run.identity import check_identity
from ..tables import write_atomic
from .shard_file import RESULT_COLUMNS, SCALAR_COLUMNS, read_shard_columns
from .shards import CollectReport, collect_run, shard_files

# The format's name, not a module path: the package move of issue 32 rewrote it to
# "datamodels.store.fit_ready/1" for one release, and every layout collected before was refused.
# Layouts of either name are the same format.
FORMAT = "datamodels.fit_ready/1"
_FORMATS = (FORMAT, "datamodels.store.fit_ready/1")
MANIFEST = "manifest.json"


class StaleLayoutError(StoreError):
    """The layout was built from other shards than the run folder holds now; ``changes`` says which."""

    def __init__(self, layout: Path, built: int, changes: str):
        self.changes = changes
        super().__init__(f"{layout} was built from {built} shards; {changes}. "
                         f"Run jobs/collect.py run_dir={layout.parent} to rebuild it.")


@dataclass
class FitReady:
    """A run's fit-ready layout, memory-mapped: nothing of size ``m x n`` or ``T x m`` is read yet.

    Its ``target_margins`` are target-major, ``[T, m]`` (row ``t`` is target ``t`` over all models),
    the transpose of :attr:`SweepResults.margins <datamodels.store.shards.SweepResults>`, which is model-major
    ``[m, T]`` like the masks.
    """

    path: Path
    masks: PackedMasks  # memory-mapped masks.npy [m, ceil(n/8)]
    target_margins: np.ndarray  # memory-mapped margins.npy, float32 [T, m]: target-major
    model_index: np.ndarray  # int64 [m], sorted
    mask_id: np.ndarray  # int64 [m]
    repeat: np.ndarray  # int32 [m]
    seed: np.ndarray  # int64 [m]
    meta: dict  # the run's identity, as in run.json

    @property
    def margins(self) -> np.ndarray:
        """Deprecated name of :attr:`target_margins`, kept for one release: ``SweepResults.margins`` is
        model-major ``[m, T]``, this array is target-major ``[T, m]``, and the two shared a name."""
        warnings.warn("FitReady.margins is deprecated; use FitReady.target_margins (the same array, [T, m], "
                      "target-major); the old name goes in the next release", DeprecationWarning, stacklevel=2)
        return self.target_margins


def _shard_stats(shards: list[Path]) -> list[dict]:
    stats = [(path.name, path.stat()) for path in shards]
    return [{"name": name, "size": st.st_size, "mtime_ns": st.st_mtime_ns} for name, st in stats]


def build_fit_ready(run_dir: str | os.PathLike, progress: bool = True) -> FitReady:
    """Validate the run's shards and lay them out for the fit, streaming one shard at a time.

    Peak memory is about one shard plus the pages of the output files it touches (each shard is
    written through a fresh mapping that is flushed and closed), never the margin matrix. The
    shards' sizes and modification times are recorded before they are read, so a shard replaced
    while the layout is built makes it stale, never silently wrong. Duplicated model indices are
    kept once when their rows are identical and refused when they differ (as ``load_sweep`` does).
    A stale layout of this run is replaced; a matching one that a parallel builder published
    first is used instead of this build's.
    """
    folder = RunFolder(run_dir)
    run, report = collect_run(folder.root)
    if not len(report.present):
        raise StoreError(f"{report.shard_dir} holds no models yet: there is nothing to lay out for the fit")
    manifest = {"format": FORMAT, "run": run, "n": run["n"], "T": run["T"], "m": len(report.present),
                "shards": _shard_stats(report.shards)}
    layout = _matching(folder.fit_ready, manifest)
    if layout is not None:  # already built from these shards (by collect, or by a parallel fit part)
        return layout
    tmp = folder.fit_ready_building(os.getpid())
    shutil.rmtree(tmp, ignore_errors=True)  # left by a killed builder that had this process id
    tmp.mkdir()
    try:
        _write_layout(tmp, report, manifest, progress)
        return _publish(folder, tmp, manifest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_layout(folder: Path, report: CollectReport, manifest: dict, progress: bool) -> None:
    n, T, m = manifest["n"], manifest["T"], manifest["m"]
    for name, dtype, shape in (("masks.npy", np.uint8, (m, (n + 7) // 8)), ("margins.npy", np.float32, (T, m))):
        open_memmap(folder / name, mode="w+", dtype=dtype, shape=shape).flush()  # sized; filled shard by shard
    scalars = {name: np.zeros(m, dtype) for name, dtype in zip(
        SCALAR_COLUMNS, (np.int64, np.int64, np.int32, np.int64, np.float64, np.float64))}
    written = np.zeros(m, dtype=bool)
    for path in tqdm(report.shards, desc="fit-ready layout", unit="shard", disable=not progress):
        shard = read_shard_columns(path, n, T)
        rows = np.searchsorted(report.present, shard["model_index"])
        if (rows >= m).any() or (report.present[np.minimum(rows, m - 1)] != shard["model_index"]).any():
            raise StoreError(f"{path} changed while the fit-ready layout was built from it; run again")
        is_first = np.zeros(len(rows), dtype=bool)
        is_first[np.unique(rows, return_index=True)[1]] = True
        fresh = is_first & ~written[rows]
        masks = np.load(folder / "masks.npy", mmap_mode="r+")
        margins = np.load(folder / "margins.npy", mmap_mode="r+")
        target = _run_or_index(rows[fresh])
        masks[target] = shard["packed_masks"][fresh]
        margins[:, target] = shard["margins"][fresh].T
        for name in SCALAR_COLUMNS:
            scalars[name][rows[fresh]] = shard[name][fresh]
        written[rows[fresh]] = True
        for j in np.flatnonzero(~fresh):  # a model index seen before: the same result, or an error
            kept = {"mask_id": scalars["mask_id"][rows[j]], "seed": scalars["seed"][rows[j]],
                    "packed_masks": masks[rows[j]], "margins": margins[:, rows[j]]}
            if not all(np.array_equal(kept[k], shard[k][j]) for k in RESULT_COLUMNS):
                raise report.conflict(int(shard["model_index"][j]))
        masks.flush()
        margins.flush()
        del masks, margins  # unmapped: the written pages leave this process's memory
    write_atomic(folder / "models.parquet", lambda tmp: pq.write_table(pa.table(scalars), tmp))
    write_atomic(folder / MANIFEST, lambda tmp: tmp.write_text(json.dumps(manifest, indent=1)))


def _run_or_index(rows: np.ndarray) -> slice | np.ndarray:
    """``rows`` as a slice when they are one consecutive run (a shard's usual models): a sliced
    write into the target-major margins is several times faster than a fancy-indexed one."""
    if len(rows) and rows[-1] - rows[0] == len(rows) - 1 and (np.diff(rows) == 1).all():
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return rows


def _publish(folder: RunFolder, tmp: Path, manifest: dict) -> FitReady:
    """Rename the finished layout into place, moving a stale one aside (see :func:`build_fit_ready`)."""
    final = folder.fit_ready
    aside = folder.fit_ready_aside(os.getpid())
    shutil.rmtree(aside, ignore_errors=True)  # left by a killed builder that had this process id
    layout = _matching(final, manifest)
    if layout is not None:
        return layout
    try:
        os.rename(final, aside)
    except FileNotFoundError:
        pass  # none there, or a parallel builder moved it aside first
    try:
        os.rename(tmp, final)
    except OSError as err:  # a parallel builder renamed its layout in place first?
        layout = _matching(final, manifest)
        if layout is None:
            raise StoreError(f"{final} could not be put in place ({err}): another process replaced it with a "
                             f"layout of other shards; run jobs/collect.py run_dir={folder.root} again") from err
        return layout
    finally:
        shutil.rmtree(aside, ignore_errors=True)
    return _open_layout(final, manifest)


def _matching(layout: Path, manifest: dict) -> FitReady | None:
    """The layout in place if it was built from the same shards; None if there is none or it is stale.

    A folder that is not a layout of this run is refused: it is the user's, not ours to replace.
    """
    if not layout.exists():
        return None
    current = _read_manifest(layout, manifest["run"])
    return _open_layout(layout, current) if current["shards"] == manifest["shards"] else None


def open_fit_ready(run_dir: str | os.PathLike, build_missing: bool = True, progress: bool = True) -> FitReady:
    """The run's fit-ready layout, memory-mapped; built first when it is missing and ``build_missing``.

    Refuses (:class:`StaleLayoutError`, naming the layout and the shards) a layout built from
    other shards than the run holds now, and (:class:`StoreError`, naming the file) a layout of
    another run or a folder that is not a layout. It never rebuilds a stale layout and never
    deletes anything: ``jobs/collect.py`` rebuilds.
    """
    folder = RunFolder(run_dir)
    run = folder.read_run()
    layout = folder.fit_ready
    if not layout.exists():
        if not build_missing:
            raise StoreError(f"{layout} does not exist: run jobs/collect.py run_dir={folder.root} to build it")
        print(f"{layout} does not exist: building it from the shards (jobs/collect.py does this once)")
        return build_fit_ready(run_dir, progress)
    manifest = _read_manifest(layout, run)
    built = {s["name"]: (s["size"], s["mtime_ns"]) for s in manifest["shards"]}
    now = {s["name"]: (s["size"], s["mtime_ns"]) for s in _shard_stats(shard_files(folder.shards)[0])}
    changes = [(sorted(now.keys() - built.keys()), "added"), (sorted(built.keys() - now.keys()), "removed"),
               (sorted(k for k in now.keys() & built.keys() if now[k] != built[k]), "replaced")]
    changes = [f"{', '.join(names[:5])}{' ...' if len(names) > 5 else ''} {'was' if len(names) == 1 else 'were'} "
               f"{what} since" for names, what in changes if names]
    if changes:
        raise StaleLayoutError(layout, len(built), "; ".join(changes))
    return _open_layout(layout, manifest)


def refresh_fit_ready(run_dir: str | os.PathLike, progress: bool = True) -> tuple[FitReady, str | None]:
    """The run's layout, rebuilt when its shards changed since it was built (``jobs/collect.py``):
    ``(layout, what changed)``, the second None when nothing did."""
    try:
        return open_fit_ready(run_dir, progress=progress), None
    except StaleLayoutError as stale:
        return build_fit_ready(run_dir, progress=progress), stale.changes


def _read_manifest(layout: Path, run: dict) -> dict:
    path = layout / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise StoreError(f"{layout} holds no {MANIFEST}: it is not a fit-ready layout of this package; "
                         f"move it away and run jobs/collect.py") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StoreError(f"{path} is corrupt ({err}); move {layout} away and run jobs/collect.py") from err
    if not isinstance(manifest, dict) or manifest.get("format") not in _FORMATS or not isinstance(manifest.get("run"), dict):
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise StoreError(f"{path} has format {found!r}, expected {FORMAT!r}: not a fit-ready layout of this "
                         f"package; move {layout} away and run jobs/collect.py")
    check_identity(path, manifest["run"], run)
    return manifest


def _open_layout(layout: Path, manifest: dict) -> FitReady:
    n, T, m = manifest["n"], manifest["T"], manifest["m"]
    masks = _map(layout / "masks.npy", np.uint8, (m, (n + 7) // 8))
    margins = _map(layout / "margins.npy", np.float32, (T, m))
    try:
        models = pq.read_table(layout / "models.parquet", columns=["model_index", "mask_id", "repeat", "seed"])
    except (pa.ArrowInvalid, OSError) as err:
        raise StoreError(f"{layout / 'models.parquet'} is not readable ({err}); run jobs/collect.py") from err
    if len(models) != m:
        raise StoreError(f"{layout / 'models.parquet'} holds {len(models)} models, its manifest {m}")
    columns = {name: models.column(name).to_numpy() for name in models.column_names}
    return FitReady(layout, PackedMasks(masks, n), margins, **columns, meta=manifest["run"])


def _map(path: Path, dtype, shape: tuple[int, int]) -> np.memmap:
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as err:
        raise StoreError(f"{path} is not a readable .npy file ({err}); run jobs/collect.py") from err
    if array.dtype != dtype or array.shape != shape:
        raise StoreError(f"{path} holds {array.dtype} {array.shape}, its manifest says {np.dtype(dtype)} {shape}")
    return array
