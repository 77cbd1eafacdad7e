"""The fit's two tables: their columns, writing and merging them, and reading any release's.

- ``<run_dir>/fit/interactions.parquet``: one row per (target, engine, non-constant Möbius
  term): target, members (list of players), order, mobius, kind (main / synergy / redundancy,
  see :func:`datamodels.interactions.interaction_table`), engine, tested (the interaction passed
  the engine's test: :attr:`datamodels.interactions.Engine.tested_`), shrunk (the term's
  coefficient in the final L1 refit, 0 where it zeroed the term: what pruning optimises, against
  the optimiser's curse; equal to mobius except for the terms ProxySPEX's relaxed refit sizes by
  least squares, :attr:`datamodels.interactions.Engine.shrunk_mobius_`);
- ``<run_dir>/fit/fit_metrics.parquet``: one row per (target, engine): r2, spearman (LDS),
  noise_ceiling (NaN without repeated masks), r2_fraction_of_ceiling, models_used, seconds,
  working_set (players the fit looked at: all ``n``, or the screened ones plus those the KKT
  check added), kkt_added, penalty_at_floor (the L1 penalty wanted to go below what the
  working set stands for: a larger ``fit.params.screen_k`` would fit the target better; see
  :mod:`datamodels.interactions.screening`), tested_zeroed (interactions that passed the test
  and are not in the table: the final L1 refit set them to zero, and ``fit.params.relax=false``
  left them there).

Rows of other engines, and of this engine's other targets, already in those files are kept
(:func:`save_fit`), so ``fit=proxyspex``, ``fit=linear`` and ``fit=linear_gpu`` runs accumulate
side by side for comparison. Every reader goes through :func:`read_fit_table`, which gives a
table written by an earlier release the columns this one writes (``method`` was renamed
``engine``; ``tested`` and ``shrunk`` came later).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import StoreError
from ..interactions import ENGINES
from ..run.folder import RunFolder
from ..tables import read_table, write_frame
from .faithfulness import residual_scale

STAGE = "fit (jobs/fit.py)"

# The columns of the stage's two tables (the module doc says what each holds), whichever stage
# writes them: an engine may add its own after these (TRAK's ``slope``).
INTERACTION_COLUMNS = ("target", "members", "order", "mobius", "kind", "engine", "tested", "shrunk")
METRIC_COLUMNS = ("target", "engine", "r2", "spearman", "noise_ceiling", "r2_fraction_of_ceiling", "models_used",
                  "seconds", "working_set", "kkt_added", "penalty_at_floor", "tested_zeroed")
# What earlier releases called a column (or a key of the tables' metadata), and its name now.
_RENAMED = {"method": "engine", "methods": "engines"}


def tables_meta(run: dict, alpha: float | None, engine: str, params: dict, heldout_fraction: float,
                split_seed: int) -> dict:
    """The metadata of a fit's tables: the sweep they were fitted on (``run``, its ``run.json``),
    which :func:`merge_fit_parts` and the readers check, and how ``engine`` was fitted."""
    return {"fingerprint": run["fingerprint"], "n": run["n"], "T": run["T"], "config_hash": run.get("config_hash"),
            "alpha": alpha,
            "engines": {engine: {"params": params, "heldout_fraction": heldout_fraction, "split_seed": split_seed}}}


def save_fit(folder: RunFolder, alpha: float | None, interactions: pd.DataFrame, metrics: pd.DataFrame,
             meta: dict) -> list:
    """Write both tables, keeping rows of other engines or targets already there.

    ``meta["engines"]`` (engine -> its settings) is merged with the files' own, so the metadata
    says how every engine in the tables was fitted.
    """
    for engine in meta["engines"]:  # these rows change: a record of a whole fit's inputs no longer holds
        folder.fit_record(engine, alpha).unlink(missing_ok=True)
    written = []
    for path, new in zip(folder.fit_tables(alpha), (interactions, metrics)):
        file_meta = meta
        if path.exists():
            old, old_meta = read_fit_table(path)
            old = old.to_pandas()
            replaced = old["engine"].isin(new["engine"].unique()) & old["target"].isin(new["target"])
            new = pd.concat([old[~replaced], new], ignore_index=True).sort_values(
                ["engine", "target"], kind="stable", ignore_index=True)
            file_meta = meta | {"engines": old_meta.get("engines", {}) | meta["engines"]}
        written.append((path, new, file_meta))
    return [write_frame(path, frame, m) for path, frame, m in written]


def read_fit_table(path) -> tuple[pa.Table, dict]:
    """One of the fit's tables (Arrow: millions of terms stay a few flat arrays) and its
    metadata, as this release writes them whichever release wrote the file
    (:func:`current_columns`; the metadata's ``methods`` read as ``engines``)."""
    table, meta = read_table(path, STAGE)
    return current_columns(table), {_RENAMED.get(key, key): value for key, value in meta.items()}


def current_columns(table: pa.Table) -> pa.Table:
    """A fit table written before its current columns, with them: ``engine`` for the column
    earlier releases named ``method``; in an interactions table, ``tested`` true for the
    interactions of an engine that tests them (ProxySPEX then kept only interactions that passed
    its test), false for the rest, and ``shrunk`` equal to ``mobius`` (the only coefficients recorded)."""
    table = table.rename_columns([_RENAMED.get(name, name) for name in table.column_names])
    if "mobius" in table.column_names:
        if "tested" not in table.column_names:
            table = table.append_column("tested", pa.array(_tested_interactions_expected(table)))
        if "shrunk" not in table.column_names:
            table = table.append_column("shrunk", table.column("mobius"))
    return table


def _tests_interactions(engine: str) -> bool:
    """Whether ``engine`` tests its interactions (False for a name that is no engine: ``trak``)."""
    return getattr(ENGINES.get(engine), "tests_interactions", False)


def _tested_interactions_expected(table: pa.Table) -> np.ndarray:
    """Bool per row: an interaction (order >= 2) of an engine that tests its interactions, so
    one that a current table marks tested, or else states no finding (a table without
    ``engine`` names no engine: none)."""
    if "engine" not in table.column_names:
        return np.zeros(table.num_rows, dtype=bool)
    engines = table.column("engine")
    testing = [e for e in pc.unique(engines).to_pylist() if _tests_interactions(e)]
    order = table.column("order") if "order" in table.column_names else pc.list_value_length(table.column("members"))
    expected = pc.and_(pc.is_in(engines, pa.array(testing, engines.type)), pc.greater_equal(order, 2))
    return pc.fill_null(expected, False).to_numpy(zero_copy_only=False)


def untested_interactions(table: pa.Table) -> np.ndarray:
    """Bool per row of an interactions table: an interaction (order >= 2) that its engine tests
    and did not mark tested (ProxySPEX's ``untested="cv"``): a predictor only, which the report,
    the views and the removal checks do not state as a finding. Engines that never test (SPEX,
    linear) and tables without a ``tested`` column have none. Computed in Arrow: millions of rows."""
    if "tested" not in table.column_names:
        return np.zeros(table.num_rows, dtype=bool)
    tested = pc.fill_null(table.column("tested"), True).to_numpy(zero_copy_only=False)
    return _tested_interactions_expected(table) & ~tested


def merge_fit_parts(run_dir, engine: str, parts: int, alpha: float | None = None):
    """Merge the ``parts`` part files of ``engine`` into the run's fit tables; returns the paths.

    Refuses (naming them) missing parts, parts written with another ``parts``, parts of
    another sweep, and targets present in two parts.
    """
    folder = RunFolder(run_dir)
    tables, metas = [[], []], []
    missing = []
    for part in range(parts):
        paths = folder.fit_part(engine, part, alpha)
        if not all(p.exists() for p in paths):
            missing.append(part)
            continue
        for table, path in zip(tables, paths):
            frame, meta = read_fit_table(path)
            frame = frame.to_pandas()
            if meta.get("parts") != parts:
                raise StoreError(f"{path} is part {meta.get('part')} of {meta.get('parts')} parts, not of "
                                 f"fit.parts={parts}")
            table.append(frame)
        metas.append((paths[0], meta))
    if missing:
        raise StoreError(f"fit parts {', '.join(map(str, missing))} of {parts} ({engine}) are missing under "
                         f"{folder.fit_parts(engine, alpha)}: run jobs/fit.py -m "
                         f"fit.part={','.join(map(str, missing))} fit.parts={parts} (with the fit's settings)")
    first_path, first = metas[0]
    owner: dict[int, object] = {}
    for path, meta in metas:
        if meta["fingerprint"] != first["fingerprint"] or meta["config_hash"] != first["config_hash"]:
            raise StoreError(f"{path} fits another sweep than {first_path}")
        for target in meta["targets"]:
            if target in owner:
                raise StoreError(f"target {target} is fitted in both {owner[target]} and {path}")
            owner[target] = path
    meta = {k: v for k, v in first.items() if k not in ("part", "parts", "targets")}
    interactions, metrics = (pd.concat(t, ignore_index=True) for t in tables)
    return save_fit(folder, alpha, interactions, metrics, meta)


def summary(interactions: pd.DataFrame, metrics: pd.DataFrame, margin_sd=None) -> str:
    """Median faithfulness per engine and the strongest synergy and redundancy pair: largest
    ``|m|`` in units of its target's residual sd (:func:`residual_scale`, with ``margin_sd``: every
    target's margin sd, indexed by target), as the report ranks them; without ``margin_sd``, by
    ``|m|``; of the pairs the report states (:func:`untested_interactions` left out)."""
    lines = [f"{engine}: {len(rows)} targets, median held-out R^2 {rows['r2'].median():.3f}, "
             f"median Spearman (LDS) {rows['spearman'].median():.3f}"
             + (f"; {rows['penalty_at_floor'].sum()} held at the penalty floor of their working set of "
                f"{rows['working_set'].median():.0f} players (a larger fit.params.screen_k fits them better)"
                if rows["penalty_at_floor"].any() else "")
             + (f"; {rows['tested_zeroed'].sum()} tested interactions zeroed by the final refit (the L1 refit "
                f"without fit.params.relax; with it, only those too small for the penalty)"
                if rows["tested_zeroed"].any() else "")
             for engine, rows in metrics.groupby("engine")]
    claimed = ~untested_interactions(pa.Table.from_pandas(interactions[
        [c for c in ("engine", "order", "tested") if c in interactions]], preserve_index=False))
    pairs = interactions[(interactions["order"] == 2).to_numpy() & claimed].reset_index(drop=True)
    if margin_sd is not None:
        scale = pd.Series(residual_scale(metrics["r2"], np.asarray(margin_sd)[metrics["target"].to_numpy(np.int64)]),
                          index=pd.MultiIndex.from_frame(metrics[["engine", "target"]]))
        size = pairs["mobius"].abs() / scale.reindex(pd.MultiIndex.from_frame(pairs[["engine", "target"]])).to_numpy()
    else:
        size = pairs["mobius"].abs()
    for kind in ("synergy", "redundancy"):
        rows = pairs[pairs["kind"] == kind]
        if len(rows):
            top = rows.loc[size[rows.index].idxmax()]
            unit = f", {size[top.name]:.2f} residual sd" if margin_sd is not None else ""
            lines.append(f"strongest {kind}: players {[int(p) for p in top['members']]} on target {top['target']} "
                         f"(Möbius {top['mobius']:+.3f}{unit})")
        else:
            lines.append(f"no {kind} pairs found")
    return "\n".join(lines)
