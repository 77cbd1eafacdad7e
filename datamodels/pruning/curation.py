"""One keep-set written for a curation script: the kept examples and a provenance card."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..masks import kept_examples
from ..tables import read_frame, write_atomic, write_frame
from .quotas import PruningError


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


def curate(run, keep: pd.DataFrame, method: str, fraction: float, out: str | os.PathLike, source: str,
           export_arrays: bool = False) -> list[Path]:
    """Write one keep-set with its provenance card (and optionally the kept examples' arrays)."""
    rows = keep[(keep["method"] == method) & np.isclose(keep["fraction"], fraction)]
    if rows.empty:
        available = "; ".join(f"{m} at {', '.join(f'{f:g}' for f in sorted(group.unique(), reverse=True))}"
                              for m, group in keep.groupby("method", sort=False)["fraction"])
        raise PruningError(f"no keep-set for curate.method={method} curate.fraction={fraction} in {source}; it holds "
                           f"{available}")
    out = Path(out)
    if (out / "card.json").exists():
        raise PruningError(f"{out} already holds a curated keep-set; choose another curate.out or remove it")
    mask = np.zeros(run.n, dtype=bool)
    mask[np.asarray(rows.iloc[0]["players"])] = True
    examples = kept_examples(mask, run.groups)
    frame = pd.DataFrame({"example": examples, "dataset_index": run.data.splits["train"][examples],
                          "player": run.groups[examples]})
    card = {"method": method, "fraction": float(fraction), "players_kept": int(mask.sum()), "players": run.n,
            "examples_kept": len(examples), "examples": len(run.groups), "dataset": run.data.name,
            "fingerprint": run.meta["fingerprint"], "source_run": str(run.run_dir), "keep_sets": source,
            "index": "example = position in the run's train split; dataset_index = position in the dataset"}
    written = [write_frame(out / "keep_set.parquet", frame, card)]
    if export_arrays:
        arrays = out / "dataset.npz"
        write_atomic(arrays, lambda tmp: np.savez(open(tmp, "wb"), images=run.data.images("train")[examples],
                                                   labels=run.data.labels("train")[examples],
                                                   classes=np.array(run.data.dataset.classes)))
        written.append(arrays)
    write_atomic(out / "card.json", lambda tmp: tmp.write_text(json.dumps(card, indent=1)))
    return written + [out / "card.json"]


def run_curate(run_dir, method: str, fraction: float, out=None, keep_sets=None,
               export_arrays: bool = False) -> list[Path]:
    """The curation stage: one keep-set of the run's (or ``keep_sets``') to ``out`` (default
    ``<run_dir>/curated/<method>-<fraction>/``)."""
    from ..run_folder import RunFolder
    from ..sweep import SweepRun

    folder = RunFolder(run_dir)
    run = SweepRun.open(folder.root)
    keep, _, source = load_keep_sets(run.meta["fingerprint"], keep_sets or folder.keep_sets)
    return curate(run, keep, method, float(fraction), out or folder.curated(method, fraction), str(source),
                  export_arrays)
