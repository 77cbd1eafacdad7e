"""One keep-set written for a curation script: the kept examples and a provenance card."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..run.stage_result import StageResult
from ..settings import Settings, is_number
from ..sweep.masks import kept_examples
from ..sweep.run_data import RunData
from ..tables import read_frame, write_atomic, write_frame
from .quotas import PruningError


@dataclass
class CurateSettings(Settings):
    """``conf/curate/default.yaml``: which keep-set (``method`` at ``fraction``, one of
    ``prune.fractions``) of ``keep_sets`` (None: the run's, ``prune/keep_sets.parquet``; the yaml
    takes ``prune.keep_sets``) is written to ``out`` (None: ``<run_dir>/curated/<method>-<fraction>/``),
    with the kept examples' arrays where ``export_arrays``."""

    section = "curate"
    error = PruningError
    method: str = "interactions"
    fraction: float = 0.5
    out: str | None = None
    export_arrays: bool = False
    keep_sets: str | None = None

    def __post_init__(self):
        if not (isinstance(self.method, str) and self.method):
            raise PruningError(f"curate.method={self.method!r} must name a pruning method (curate.method=interactions)")
        if not (is_number(self.fraction) and 0 < self.fraction <= 1):
            raise PruningError(f"curate.fraction={self.fraction!r} must lie in (0, 1]: one of prune.fractions")
        self.fraction = float(self.fraction)
        if not isinstance(self.export_arrays, bool):
            raise PruningError(f"curate.export_arrays={self.export_arrays!r} must be true or false")


def load_keep_sets(fingerprint: str, path: str | os.PathLike) -> tuple[pd.DataFrame, dict, Path]:
    """Keep-sets from ``path`` (a run's ``prune/keep_sets.parquet``, or another's), checked to be
    for the data of ``fingerprint`` (the run's dataset fingerprint)."""
    source = Path(path)
    keep, meta = read_frame(source, "prune (jobs/prune.py)")
    if meta.get("fingerprint") != fingerprint:
        raise PruningError(f"{source} was made for dataset fingerprint {meta.get('fingerprint')!r}, but this run's "
                           f"data has {fingerprint!r}: keep-sets only apply to the split they were chosen from")
    if keep.empty:
        raise PruningError(f"{source} holds no keep-sets")
    return keep, meta, source


def curate(view, keep: pd.DataFrame, method: str, fraction: float, out: str | os.PathLike, source: str,
           export_arrays: bool = False, force: bool = False) -> list[Path]:
    """Write one keep-set with its provenance card (and optionally the kept examples' arrays).

    ``view``: the run (:class:`~datamodels.sweep.run_data.RunData`). Without a linked dataset every
    player is one example and ``dataset_index`` is the player's index (for an imported release,
    its column: the position in the dataset's train split it was recorded for).

    The folder ``out`` is built whole beside itself (``.<out>.<pid>.tmp``) and renamed into
    place, so it is a complete curated set or absent. One that is there already is refused,
    unless ``force``: then the new one replaces it, the old one moved aside only once the new
    one is complete and removed once the new one is in place.
    """
    rows = keep[(keep["method"] == method) & np.isclose(keep["fraction"], fraction)]
    if rows.empty:
        available = "; ".join(f"{m} at {', '.join(f'{f:g}' for f in sorted(group.unique(), reverse=True))}"
                              for m, group in keep.groupby("method", sort=False)["fraction"])
        raise PruningError(f"no keep-set for curate.method={method} curate.fraction={fraction} in {source}; it holds "
                           f"{available}")
    out = Path(out)
    if (out / "card.json").exists() and not force:
        raise PruningError(f"{out} already holds a curated keep-set: give force=true to replace it, or choose "
                           f"another curate.out")
    if out.exists() and not (out / "card.json").exists() and (not out.is_dir() or any(out.iterdir())):
        raise PruningError(f"{out} exists and is not a curated keep-set's folder: choose another curate.out")
    run = view.sweep_run
    if export_arrays and run is None:
        raise PruningError(f"curate.export_arrays=true writes the kept images, and {view.run_dir} has no dataset "
                           f"linked: leave it false (keep_set.parquet names the kept examples by index)")
    n, groups = view.n, view.groups
    players = np.asarray(rows.iloc[0]["players"], dtype=np.int64)
    if len(players) and not (0 <= players.min() and players.max() < n):
        raise PruningError(f"the keep-set {method} at {fraction} in {source} names players outside 0..{n - 1}")
    mask = np.zeros(n, dtype=bool)
    mask[players] = True
    examples = kept_examples(mask, groups)
    dataset_index = run.data.splits["train"][examples] if run is not None else examples
    frame = pd.DataFrame({"example": examples, "dataset_index": dataset_index, "player": groups[examples]})
    if view.player_labels is not None:
        frame["class"] = view.player_labels[groups[examples]]
    card = {"method": method, "fraction": float(fraction), "players_kept": int(mask.sum()), "players": n,
            "examples_kept": len(examples), "examples": len(groups), "dataset": view.meta["dataset"],
            "fingerprint": view.meta["fingerprint"], "source_run": str(view.run_dir), "keep_sets": source,
            "index": "example = position in the run's train split; dataset_index = position in the dataset"
                     + ("" if run is not None else " (no dataset linked: the player's index)")}
    building, aside = (out.with_name(f".{out.name}.{os.getpid()}.{end}") for end in ("tmp", "old"))
    shutil.rmtree(building, ignore_errors=True)  # left by a killed process of the same id
    try:
        names = ["keep_set.parquet"]
        write_frame(building / "keep_set.parquet", frame, card)
        if export_arrays:
            names.append("dataset.npz")
            write_atomic(building / "dataset.npz",
                         lambda tmp: np.savez(open(tmp, "wb"), images=run.data.images("train")[examples],
                                              labels=run.data.labels("train")[examples],
                                              classes=np.array(run.data.dataset.classes)))
        names.append("card.json")
        write_atomic(building / "card.json", lambda tmp: tmp.write_text(json.dumps(card, indent=1)))
        if out.is_dir() and any(out.iterdir()):  # (force) the curated set this one replaces
            os.replace(out, aside)
        elif out.exists():
            out.rmdir()
        try:
            os.replace(building, out)
        except OSError:
            if aside.exists() and not out.exists():
                os.replace(aside, out)  # the old one back where it was
            raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    shutil.rmtree(aside, ignore_errors=True)
    return [out / name for name in names]


def run_curate(run_dir, settings: CurateSettings, *, progress: bool = True, force: bool = False) -> StageResult:
    """The curation stage: one keep-set of the run's (or ``settings.keep_sets``') to
    ``settings.out`` (:class:`CurateSettings`): the stage's
    :class:`~datamodels.run.stage_result.StageResult` (``written``: the curated folder's files).
    Works on a run with or without its dataset. ``force`` replaces a curated set already there
    (:func:`curate`); ``progress`` is taken for the stages' common call and unused: the copy shows none."""
    s = settings
    view = RunData.open(run_dir)
    keep, _, source = load_keep_sets(view.meta["fingerprint"], s.keep_sets or view.folder.keep_sets_file)
    out = s.out or view.folder.curated(s.method, s.fraction)
    return StageResult("curate", curate(view, keep, s.method, s.fraction, out, str(source), s.export_arrays, force))
