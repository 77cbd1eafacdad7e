"""Import models trained elsewhere: the datamodels release and store layouts into a run folder.

Ilyas et al. (2022, "Datamodels: Predicting Predictions from Training Data") released their
CIFAR-10 models as two dense arrays per alpha (``MadryLab/datamodels-data``), one row per model::

    train_masks_50pct.npy    bool    [M, 50000]   1 = the training image was kept
    test_margins_50pct.npy   float16 [M, 10000]   the model's margin on every test image

and their training code (``MadryLab/datamodels``) writes the same two arrays into a *store*
folder, one ``open_memmap`` per key (``masks.npy``, ``margins.npy``) plus ``_completed.npy``
(bool ``[M]``: the rows whose model has finished; the others are zeros). :func:`run_import`
turns either into an ordinary run folder (:mod:`datamodels.run.folder`): ``run.json``,
``config.json`` with ``sweep.design=imported`` and the kept fraction ``alpha``, shards in the
store's format (:func:`datamodels.store.shard_file.write_shard_columns`), and ``imported/`` recording where every
model came from. Every later stage (collect, status, fit and its parts, prune, curate, report)
reads it like a sweep.

Model ``i`` of the run is the ``i``-th selected source row (``source.rows``, then only completed
rows, then, with ``source.nan=drop``, only rows with finite margins); ``imported/rows.npy`` maps
model indices back to source rows. Target ``t`` is the ``t``-th selected margin column
(``source.targets``, kept in increasing order). Imported models have no training seed (stored
as -1) and no holdout accuracy (NaN).

With ``dataset=cifar10`` the run is linked to the genuine archive: players are the official
train images in their order (the release's column order; ``n`` must be 50,000) and targets the
test images of the selected columns (the source must have the 10,000 columns of the test
split); the remaining test images are the holdout. With ``dataset=none`` the run has no images.

Memory stays bounded whatever ``M``: rows are read in chunks through memory maps of only the
span a chunk covers (a map of the whole file would count every page read in the process's
resident memory), and every row is read once: masks and margins are checked as their shard is
read (with ``source.nan=drop`` the margins get a pass of their own first, since the rows dropped
decide the model indices). The run is written shard by shard, each atomically, so a killed
import re-run skips the shards it finished. Bad input is refused in one line with nothing
written: a shape or setting before anything is written; masks that are not 0/1 or non-finite
margins while writing, and what this import wrote is then removed again.

This module is the stage: its settings, the plan checked before anything is written, and the
writing. Opening, reading and checking the source's arrays is :mod:`datamodels.sweep.import_source`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..run.folder import RunFolder
from ..run.identity import check_identity, config_hash
from ..run.stage_result import StageResult
from ..settings import Settings
from ..store.shard_file import read_shard_meta, run_meta, write_shard_columns
from ..tables import size_text, write_atomic
from .data import load_dataset
from .import_source import (ImportSourceError, NpyRows, Source, binary_masks, finite_rows, non_finite_error,
                            open_source, packed_masks, selection)

NAN_POLICIES = ("error", "drop")
# The most bytes one shard may hold in memory while it is written (its bool masks and margins).
_SHARD_BYTES = 256 << 20
# Threads writing shards while the main one reads the next.
_WRITERS = 2
# alpha, when not given, is the kept fraction of this many rows, in runs of consecutive rows
# spread evenly over the source: one seek a run on a cold disk (2,048 scattered rows took 3.4 s
# of a 9 s import of 100,000 x 50,000 masks).
_ALPHA_ROWS, _ALPHA_RUNS = 2048, 16


@dataclass
class ImportSettings(Settings):
    """``conf/source/default.yaml``: where the models come from and which of them to import."""

    section = "source"
    error = ImportSourceError
    masks: str | None = None
    margins: str | None = None
    store: str | None = None
    labels: str | None = None
    rows: object = None
    targets: object = None
    alpha: float | None = None
    nan: str = "error"
    models_per_shard: int = 1000

    def __post_init__(self):
        if self.nan not in NAN_POLICIES:
            raise ImportSourceError(f"source.nan={self.nan!r}; choose one of {', '.join(NAN_POLICIES)}")
        self.check_integers(("models_per_shard",), least=1)
        if self.alpha is not None and not 0.0 < float(self.alpha) < 1.0:
            raise ImportSourceError(f"source.alpha={self.alpha} must lie strictly between 0 and 1")


@dataclass
class ImportPlan:
    """Everything an import writes, decided and checked before it writes anything but the
    values of masks and margins, which are checked as each shard is read (:meth:`read_shard`)."""

    source: Source
    rows: np.ndarray  # int64 [num_models]: source row of each model index
    targets: np.ndarray  # int64 [T]: source column of each target
    labels: np.ndarray | None
    alpha: float
    config: dict  # config.json
    meta: dict  # run.json
    record: dict  # imported/source.json
    models_per_shard: int

    @property
    def num_shards(self) -> int:
        return -(-len(self.rows) // self.models_per_shard)

    @property
    def shard_bytes(self) -> int:
        """At most what the shards take on disk: per model its packed mask, float32 margins and
        scalar columns (parquet compresses the margins of the release's float16 to about half)."""
        n, T = self.meta["n"], len(self.targets)
        return len(self.rows) * (-(-n // 8) + 4 * T + 40)

    def describe(self, run_dir) -> str:
        """The one line said before writing: how many models, shards and bytes, from which files."""
        return (f"import: {len(self.rows):,} models (n={self.meta['n']:,}, T={len(self.targets):,}) in "
                f"{self.num_shards:,} shards, up to {size_text(self.shard_bytes)} into {Path(run_dir)}/shards, "
                f"reading {size_text(len(self.rows) * (self.source.masks.row_bytes + self.source.margins.row_bytes))}"
                f" of the {self.source.kind}")

    def models(self, shard: int) -> range:
        k = self.models_per_shard
        return range(shard * k, min(len(self.rows), (shard + 1) * k))

    def read_shard(self, shard: int) -> tuple[np.ndarray, np.ndarray, dict]:
        """One shard's packed masks, float32 margins and scalar columns, read from the source;
        masks other than 0/1 and non-finite margins raise :class:`ImportSourceError`."""
        models = self.models(shard)
        rows = self.rows[models.start:models.stop]
        masks = packed_masks(self.source.masks.take(rows), rows)
        margins = self.source.margins.take(rows)
        if not np.array_equal(self.targets, np.arange(self.source.margins.shape[1])):
            margins = margins[:, self.targets]
        margins = margins.astype(np.float32)
        if not np.isfinite(margins).all():  # source.nan=error: checked here, where every row is read anyway
            raise non_finite_error(self.rows, finite_rows(self.source, self.rows, self.targets, progress=False))
        index = np.arange(models.start, models.stop)
        scalars = {"model_index": index, "mask_id": index, "repeat": np.zeros(len(index), np.int32),
                   "seed": np.full(len(index), -1), "holdout_acc": np.full(len(index), np.nan),
                   "train_seconds": np.zeros(len(index))}
        return masks, margins, scalars


def _linked_data(dataset: dict, n: int, source_T: int):
    """The dataset a run is linked to (``dataset=cifar10``), checked against the source's shape:
    its official train images are the mask columns, its test images the margin columns."""
    data = load_dataset(dataset["name"], **dict(dataset.get("options") or {}))
    if data.is_test is None:
        raise ImportSourceError(f"dataset={dataset['name']} has no official train and test parts to match the "
                                f"source's columns with; use dataset=cifar10, or dataset=none for a run without images")
    train, test = int((~data.is_test).sum()), int(data.is_test.sum())
    if n != train or source_T != test:
        raise ImportSourceError(f"the masks have {n} columns and the margins {source_T}, but dataset={dataset['name']} "
                                f"has {train} train and {test} test images: not its models (or use dataset=none)")
    return data


def per_class_targets(value: str, test_labels: np.ndarray | None) -> np.ndarray:
    """``source.targets=per_class:K``: the first ``K`` test images of every class, in the test
    part's order (ProxySPEX's case study took 6 per class; this rule makes the choice reproducible)."""
    if test_labels is None:
        raise ImportSourceError(f"source.targets={value} picks test images by class: link the dataset "
                                f"(dataset=cifar10) or list the columns")
    try:
        k = int(value.split(":", 1)[1])
    except ValueError:
        raise ImportSourceError(f"source.targets={value!r}: expected per_class:K with an integer K") from None
    chosen = [np.flatnonzero(test_labels == c)[:k] for c in np.unique(test_labels)]
    if k < 1 or min(len(c) for c in chosen) < k:
        raise ImportSourceError(f"source.targets={value}: some class has fewer than {k} test images (K >= 1)")
    return np.sort(np.concatenate(chosen))


def plan_import(settings: ImportSettings, config: dict, progress: bool = True) -> ImportPlan:
    """Read and check the source against the settings (``config``: the job's resolved configuration)."""
    source = open_source(settings.masks, settings.margins, settings.store)
    M, n = source.masks.shape
    source_T = source.margins.shape[1]
    rows = selection(settings.rows, M, "source.rows")
    rows = np.arange(M) if rows is None else rows
    if source.completed is not None:
        rows = rows[source.completed[rows]]
        if len(rows) == 0:
            raise ImportSourceError("source.store: none of the selected rows is marked complete in _completed.npy")
    dataset = dict(config.get("dataset") or {"name": "none"})
    data = None if dataset["name"] == "none" else _linked_data(dataset, n, source_T)
    if isinstance(settings.targets, str) and settings.targets.startswith("per_class:"):
        targets = per_class_targets(settings.targets, None if data is None else data.labels[data.is_test])
    else:
        targets = selection(settings.targets, source_T, "source.targets", "margin columns")
        targets = np.arange(source_T) if targets is None else np.sort(targets)
    if settings.models_per_shard * (n + 4 * len(targets)) > _SHARD_BYTES:
        raise ImportSourceError(f"source.models_per_shard={settings.models_per_shard} holds more than "
                                f"{_SHARD_BYTES >> 20} MB of masks and margins per shard; lower it")
    labels = None
    if settings.labels is not None:
        found = NpyRows.open(settings.labels, "source.labels", ndim=1)
        labels = found.take(np.arange(found.shape[0])).ravel()
        if len(labels) != n or labels.dtype.kind not in "iu" or labels.min() < 0:
            raise ImportSourceError(f"source.labels: {settings.labels} must hold {n} non-negative integers (one class "
                                    f"per mask column), found {len(labels)} of dtype {labels.dtype}")
        labels = labels.astype(np.int64)
    dropped = 0
    if settings.nan == "drop":  # the rows dropped decide the model indices: one pass first
        finite = finite_rows(source, rows, targets, progress)
        if not finite.any():
            raise non_finite_error(rows, finite)
        rows, dropped = rows[finite], int((~finite).sum())
    run = _ALPHA_ROWS // _ALPHA_RUNS
    starts = np.linspace(0, len(rows) - run, _ALPHA_RUNS).astype(np.int64)
    sample = rows if len(rows) <= _ALPHA_ROWS else rows[np.unique(starts[:, None] + np.arange(run))]
    sample_masks = binary_masks(source.masks.take(sample), sample)
    alpha = float(settings.alpha) if settings.alpha is not None else round(float(sample_masks.mean()), 3)
    if not 0.0 < alpha < 1.0:
        raise ImportSourceError(f"the masks keep a fraction {alpha} of the players: they keep all or none")

    digest = hashlib.sha256(json.dumps({
        "kind": source.kind, "shapes": [source.masks.shape, source.margins.shape],
        "dtypes": [str(source.masks.dtype), str(source.margins.dtype)]}).encode())
    for array in (rows, targets, np.packbits(sample_masks, axis=1), source.margins.take(sample)):
        digest.update(np.ascontiguousarray(array).tobytes())
    described = {"kind": source.kind, "digest": digest.hexdigest()[:16], "source_models": M, "source_targets": source_T,
                 "nan": settings.nan, "dropped": dropped}
    sweep = {"design": "imported", "alpha": alpha, "num_models": len(rows), "models_per_shard": settings.models_per_shard,
             "repeats": 1, "seed": 0, "source": described, "shard": None}
    if data is None:
        dataset = {"name": "none"}
    else:  # all train images as players, the chosen test images as targets, the other test images held out
        dataset = {"name": dataset["name"], "train": n, "target": targets.tolist(), "holdout": None,
                   "split_seed": dataset.get("split_seed", 0), "options": dict(dataset.get("options") or {})}
    recorded = {**config, "dataset": dataset, "players": {"kind": "example"}, "sweep": sweep}
    recorded.pop("source", None)  # the paths: in imported/source.json, not in the run's settings
    if dataset["name"] == "none":
        meta = run_meta(f"import-{described['digest']}", n, len(targets), "imported", alpha, 0, 1,
                        settings.models_per_shard, len(rows), config_hash(recorded), dataset="none", model="none",
                        players="example")
    else:
        from .stage import SweepRun

        run = SweepRun(recorded, ".")
        if labels is not None and not np.array_equal(labels, run.data.labels("train")):
            raise ImportSourceError(f"source.labels differ from the labels of dataset={dataset['name']}'s train images")
        meta = run.meta
    record = {"files": source.files | ({"labels": str(Path(settings.labels).absolute())} if labels is not None else {}),
              **described, "targets": targets.tolist(), "alpha_measured_on": None if settings.alpha else len(sample)}
    return ImportPlan(source, rows, targets, labels, alpha, recorded, meta, record, settings.models_per_shard)


def write_import(plan: ImportPlan, run_dir, progress: bool = True) -> tuple[list[Path], int]:
    """Write the planned run folder shard by shard: ``(the shards written now, how many were already there)``.

    Two threads write shards' parquet files (pyarrow's encoder, the longest step, and fsync
    release the GIL) while this one reads and packs the next: at most three shards are in
    memory at once.
    """
    folder = RunFolder(run_dir)
    fresh = not folder.run_json.exists()
    folder.check_sweep(plan.meta, plan.config)
    written: list[Path] = []
    pending: list[Future] = []
    try:
        for path, array in ((folder.imported_rows, plan.rows), (folder.imported_labels, plan.labels)):
            if array is not None and not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(path, lambda tmp, array=array: _save(tmp, array))
        with ThreadPoolExecutor(_WRITERS) as writer, tqdm(total=len(plan.rows), desc="import", unit="model",
                                                   disable=not progress) as bar:
            for shard in range(plan.num_shards):
                path, models = folder.shard(shard), plan.models(shard)
                if path.exists():
                    check_identity(path, read_shard_meta(path), plan.meta)
                else:
                    masks, margins, scalars = plan.read_shard(shard)
                    while len(pending) >= _WRITERS or (pending and pending[0].done()):
                        written.append(pending.pop(0).result())
                    pending.append(writer.submit(write_shard_columns, path, scalars, masks, margins,
                                                 plan.meta | {"shard": shard}))
                bar.update(len(models))
            written += [future.result() for future in pending]
    except ImportSourceError:
        wait(pending)
        written += [future.result() for future in pending if future.exception() is None]
        for path in set(written):  # masks found not 0/1: leave the folder as this import found it
            path.unlink()
        if fresh:
            for path in (folder.run_json, folder.config_json):
                path.unlink(missing_ok=True)
            shutil.rmtree(folder.imported, ignore_errors=True)
            if folder.shards.is_dir() and not any(folder.shards.iterdir()):
                folder.shards.rmdir()
        raise
    if not folder.imported_source.exists():
        write_atomic(folder.imported_source, lambda tmp: tmp.write_text(json.dumps(plan.record, indent=1)))
    written = sorted(set(written))
    return written, plan.num_shards - len(written)


def _save(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save would add ".npy" to a temporary name
        np.save(f, array)


def run_import(run_dir, settings: ImportSettings, *, config: dict, progress: bool = True, force: bool = False,
               announce=None) -> StageResult:
    """Import ``settings``' source into ``run_dir``, recorded with the whole ``config`` (the run's
    ``config.json``): the stage's :class:`~datamodels.run.stage_result.StageResult` (``written``:
    the shards written now; ``outputs``: the ``plan`` and how many shards were already ``present``),
    up to date when every shard was already there. ``announce`` (e.g. ``print``) is told what will
    be read and written before any of it is. ``force`` is taken for the stages' common call and
    changes nothing: a shard already there is checked against the source and kept, never rewritten
    (another source is refused in one line)."""
    plan = plan_import(settings, config, progress)
    if announce is not None:
        announce(plan.describe(run_dir))
    written, present = write_import(plan, run_dir, progress)
    return StageResult("import", written, up_to_date=not written, outputs={"plan": plan, "present": present})
