"""The fit stage: split a sweep's models, fit every target, judge on held-out models, save.

Reads the run's fit-ready layout (:mod:`datamodels.fit_ready`: packed masks and target-major
margins, memory-mapped; built from ``<run_dir>/shards/`` when missing) and writes, atomically
and only after every fit succeeded:

- ``<run_dir>/fit/interactions.parquet``: one row per (target, method, non-constant Möbius
  term): target, members (list of players), order, mobius, kind (main / synergy / redundancy,
  see :func:`datamodels.interactions.interaction_table`), method;
- ``<run_dir>/fit/fit_metrics.parquet``: one row per (target, method): r2, spearman (LDS),
  noise_ceiling (NaN without repeated masks), r2_fraction_of_ceiling, models_used, seconds,
  working_set (players the fit looked at: all ``n``, or the screened ones plus those the KKT
  check added), kkt_added, penalty_at_floor (the L1 penalty wanted to go below what the
  working set stands for: a larger ``fit.params.screen_k`` would fit the target better; see
  :mod:`datamodels.interactions.screening`).

Rows of other methods, and of this method's other targets, already in those files are kept,
so ``fit=proxyspex``, ``fit=linear`` and ``fit=linear_gpu`` runs accumulate side by side for
comparison. ``linear_gpu`` (:mod:`datamodels.interactions.batched_lasso`) fits whole batches
of targets on a GPU in this process instead of spreading them over worker processes.

A sweep whose masks draw alpha from a grid (``sweep.alpha=[0.2,0.5,0.9]``) can be fitted at
one alpha (``fit.alpha=0.2``): only the models of masks drawn with it are split, fitted and
judged, and the tables go to ``<run_dir>/fit/alpha-0.2/`` (:func:`fit_dir`), a surrogate valid
at that fraction kept (the pruning stage's matched surrogates, :mod:`datamodels.pruning`).

At scale the targets are split into ``parts`` contiguous ranges fitted as separate jobs
(:func:`run_fit_part`, ``fit.part=K fit.parts=P``): each writes the same two tables under
``<run_dir>/fit/parts/<method>/part-KKKK.*.parquet`` (a part already written is skipped), and
:func:`merge_fit_parts` (``jobs/fit_merge.py``) merges them into the files above, refusing
missing parts and targets fitted twice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .errors import UserError
from .fit_ready import open_fit_ready
from .interactions import interaction_table, iter_fit_targets, make_estimator
from .interactions.batched_lasso import BatchedLinearDatamodel
from .interactions.spex import SPEX
from .masks import design_of
from .packed import as_packed
from .stage_inputs import StageInputs
from .store import StoreError, collect_run, read_frame, write_frame

STAGE = "fit (jobs/fit.py)"
FILES = ("interactions.parquet", "fit_metrics.parquet")


# ---------------------------------------------------------------------------------------------
# Faithfulness on held-out models


def r2(y, pred) -> float:
    """Coefficient of determination of ``pred`` against observed ``y``."""
    y, pred = np.asarray(y, dtype=float), np.asarray(pred, dtype=float)
    return float(1.0 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum())


def spearman(y, pred) -> float:
    """Spearman rank correlation: the linear datamodeling score (LDS) of Ilyas et al. / TRAK.

    A constant prediction (e.g. an L1 fit that kept no feature) ranks nothing: its score is 0,
    not NaN, so that medians over targets count it instead of skipping it.
    """
    ranks = pd.DataFrame({"y": y, "pred": pred}).rank()
    if ranks["pred"].nunique() == 1:
        return 0.0
    return float(np.corrcoef(ranks["y"], ranks["pred"])[0, 1])


def noise_ceiling(y, mask_id) -> float:
    """R^2 that the true per-mask mean achieves against single repeats; NaN without repeats.

    ``1 - (pooled within-mask variance) / (variance of y)``: the within-mask variance is the
    seed noise no surrogate of the mask can explain. Estimating it from the spread of repeats
    (ddof 1 per mask) is unbiased, unlike scoring the mean of repeats against a repeat it
    contains (too optimistic) or against the others' mean (too pessimistic with few repeats).
    """
    frame = pd.DataFrame({"y": np.asarray(y, dtype=float), "g": np.asarray(mask_id)})
    groups = frame.groupby("g")["y"]
    dof = groups.count() - 1
    if dof.sum() == 0:
        return float("nan")
    within = (groups.var(ddof=1).fillna(0.0) * dof).sum() / dof.sum()
    return float(1.0 - within / frame["y"].var(ddof=1))


# ---------------------------------------------------------------------------------------------
# The stage


def heldout_split(mask_id, fraction: float, seed: int) -> np.ndarray:
    """Bool [m]: models held out of fitting, chosen per mask id so repeats stay together.

    A seeded hash of each mask id (splitmix64) rather than a permutation of the ids present,
    so a model's side does not change when the sweep grows.
    """
    if not 0.0 < fraction < 1.0:
        raise UserError(f"fit.heldout_fraction must be in (0, 1); got {fraction}")
    with np.errstate(over="ignore"):  # wrapping uint64 arithmetic is the hash
        z = np.asarray(mask_id).astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(float) / 2.0**53 < fraction


def fit_and_evaluate(masks, margins, mask_id, method: str, params: dict | None = None,
                     target_ids=None, heldout_fraction: float = 0.2, split_seed: int = 0,
                     workers: int = 1, progress: bool = True, fit_models: int | None = None,
                     columns=None, models=None):
    """Fit ``method`` to columns of ``margins`` on the fit split; judge it on held-out models.

    ``masks``: bool or 0/1 ``[m, n]``, or :class:`~datamodels.packed.PackedMasks` (memory-mapped
    at scale); ``margins``: array-like ``[m, T]`` (a transposed target-major memory map reads
    one target at a time). ``columns`` picks the columns to fit (default all); ``target_ids``
    names columns in the output (default their index), for margins that hold a subset of a
    sweep's targets. ``fit_models`` fits on only the first that many models of the fit split,
    judged on the same held-out models (learning curves). ``models`` (bool ``[m]``) restricts
    everything, fit, held-out split and noise ceiling, to those models.

    Returns ``(interactions, metrics)`` DataFrames sorted by target: interactions has one row
    per non-constant Möbius term (target, members, order, mobius, kind, method); metrics one
    row per target (target, method, r2, spearman, noise_ceiling, r2_fraction_of_ceiling,
    models_used, seconds, working_set, kkt_added, penalty_at_floor). The noise ceiling uses all models' repeats
    (NaN when no mask is repeated).
    """
    estimator = make_estimator(method, **(params or {}))
    masks = as_packed(masks, "masks")
    mask_id = np.asarray(mask_id)
    eligible = np.ones(len(mask_id), dtype=bool) if models is None else np.asarray(models, dtype=bool)
    if isinstance(estimator, SPEX):
        # SPEX reads exactly the masks of its design; every other mask of the sweep judges it.
        held = ~estimator.design_rows(masks) & eligible
        if not held.any():
            raise UserError("fit=spex: every mask of the sweep is one SPEX's design asked for, none is left to "
                            "judge it on (a sweep of sweep.design=spex adds judging masks; was sweep.num_models "
                            "cut short?)")
    else:
        held = heldout_split(mask_id, heldout_fraction, split_seed) & eligible
    if held.sum() == eligible.sum() or not held.any():
        raise UserError(
            f"the held-out split of {eligible.sum()} models is {'everything' if held.any() else 'empty'}"
            f" (fit.heldout_fraction={heldout_fraction}, {len(np.unique(mask_id[eligible]))} distinct masks)"
        )
    target_ids = np.arange(margins.shape[1]) if target_ids is None else np.asarray(target_ids)
    used = np.flatnonzero(~held & eligible)
    if fit_models is not None:
        if not 0 < fit_models <= len(used):
            raise ValueError(f"fit_models={fit_models}: the fit split has {len(used)} models")
        used = used[:fit_models]
    held_masks = masks[held]
    tables, rows = [], []
    if isinstance(estimator, BatchedLinearDatamodel):  # all targets of a batch at once on the GPU
        fits = estimator.iter_fit(masks, margins, columns, used, mask_id[used], progress)
    else:
        fits = iter_fit_targets(estimator, masks, margins, columns, used, workers, progress=progress)
    for fit in fits:
        y = np.asarray(margins[:, fit.target], dtype=float)
        pred = fit.estimator.predict(held_masks)
        ceiling = noise_ceiling(y[eligible], mask_id[eligible])
        score = r2(y[held], pred)
        rows.append((target_ids[fit.target], method, score, spearman(y[held], pred), ceiling,
                     score / ceiling, len(used), fit.seconds, len(fit.estimator.players_),
                     fit.estimator.kkt_added_, fit.estimator.penalty_at_floor_))
        table = interaction_table(fit.estimator.mobius_)
        tables.append(table.assign(target=target_ids[fit.target], method=method))
    metrics = pd.DataFrame(rows, columns=["target", "method", "r2", "spearman", "noise_ceiling",
                                          "r2_fraction_of_ceiling", "models_used", "seconds", "working_set",
                                          "kkt_added", "penalty_at_floor"])
    columns = ["target", "members", "order", "mobius", "kind", "method"]
    interactions = pd.concat(tables, ignore_index=True)[columns]
    return (interactions.sort_values("target", kind="stable", ignore_index=True),
            metrics.sort_values("target", kind="stable", ignore_index=True))


def select_targets(run_dir, targets=None, start=None, stop=None) -> list[int]:
    """Target columns to fit: a list, a ``start``..``stop - 1`` range, or every target.

    Checked against the run's ``T`` (its ``run.json``): an error names the setting at fault.
    """
    T = collect_run(run_dir)[0]["T"]
    if targets is not None:
        if start is not None or stop is not None:
            raise UserError("fit.targets and fit.start/fit.stop both set: give one or the other")
        chosen = [int(t) for t in targets]
        outside = [t for t in chosen if not 0 <= t < T]
        if outside:
            raise UserError(f"fit.targets: {outside[:5]} outside 0..{T - 1} (the sweep has T={T} targets)")
        return chosen
    start = 0 if start is None else start
    stop = T if stop is None else stop
    if not 0 <= start < stop <= T:
        raise UserError(f"fit.start={start}, fit.stop={stop}: the range must lie in 0..{T} with start < stop "
                         f"(the sweep has T={T} targets)")
    return list(range(start, stop))


def save_fit(fit_dir, interactions: pd.DataFrame, metrics: pd.DataFrame, meta: dict):
    """Write both tables, keeping rows of other methods or targets already there.

    ``meta["methods"]`` (method -> its settings) is merged with the files' own, so the metadata
    says how every method in the tables was fitted.
    """
    fit_dir = Path(fit_dir)
    for method in meta["methods"]:  # these rows change: a record of a whole fit's inputs no longer holds
        inputs_record(fit_dir, method).unlink(missing_ok=True)
    frames = dict(zip(FILES, (interactions, metrics)))
    written = {}
    for name, new in frames.items():
        path, file_meta = fit_dir / name, meta
        if path.exists():
            old, old_meta = read_frame(path, STAGE)
            replaced = old["method"].isin(new["method"].unique()) & old["target"].isin(new["target"])
            new = pd.concat([old[~replaced], new], ignore_index=True).sort_values(
                ["method", "target"], kind="stable", ignore_index=True)
            file_meta = meta | {"methods": old_meta.get("methods", {}) | meta["methods"]}
        written[name] = (new, file_meta)
    return [write_frame(fit_dir / name, frame, m) for name, (frame, m) in written.items()]


def fit_dir(run_dir, alpha: float | None = None) -> Path:
    """Where a fit's tables live: ``<run_dir>/fit``, or ``<run_dir>/fit/alpha-A`` for ``fit.alpha=A``."""
    return Path(run_dir) / "fit" if alpha is None else Path(run_dir) / "fit" / f"alpha-{float(alpha):g}"


def models_at_alpha(meta: dict, mask_id, alpha: float) -> np.ndarray:
    """Bool ``[m]``: the models whose mask was drawn with ``alpha`` (``meta``: the run's identity)."""
    # Only the sampled designs draw an alpha; the others are not built (a file or SPEX design needs its masks).
    design = design_of(meta) if meta["design"] in ("bernoulli", "fixed_size") else None
    if design is None or not any(np.isclose(alpha, a) for a in design.alphas):
        drawn = f"alpha {list(design.alphas)}" if design is not None else f"design={meta['design']}"
        raise UserError(f"fit.alpha={alpha}: this sweep's masks were drawn with {drawn}; choose one of its alphas, "
                         f"or sweep a grid that holds it (e.g. sweep.alpha=[{alpha},...] in a new run_dir)")
    ids, inverse = np.unique(np.asarray(mask_id), return_inverse=True)
    return np.isclose(design.alpha_of(ids), alpha)[inverse]


def _fit(run_dir, method: str, params, targets, heldout_fraction, split_seed, workers, progress, alpha=None):
    """Fit the ``targets`` columns of a run's sweep: both tables and their metadata."""
    make_estimator(method, **(params or {}))  # an unknown method or parameter fails before any reading
    ready = open_fit_ready(run_dir, progress=progress)
    models = None if alpha is None else models_at_alpha(ready.meta, ready.mask_id, alpha)
    if method == "spex":
        params = spex_params(ready.meta, params)
    interactions, metrics = fit_and_evaluate(
        ready.masks, ready.margins.T, ready.mask_id, method, params, None,
        heldout_fraction, split_seed, workers, progress, columns=targets, models=models)
    meta = {"fingerprint": ready.meta["fingerprint"], "n": ready.meta["n"],
            "T": ready.meta["T"], "config_hash": ready.meta.get("config_hash"), "alpha": alpha,
            "methods": {method: {"params": params or {}, "heldout_fraction": heldout_fraction,
                                 "split_seed": split_seed}}}
    return interactions, metrics, meta


def spex_params(run: dict, params: dict | None) -> dict:
    """fit=spex reads the design of a ``sweep.design=spex`` run: its budget, seed and degree,
    unless ``fit.params`` names a design (to read SPEX's masks out of an exhaustive sweep)."""
    params = {key: value for key, value in (params or {}).items() if value is not None}
    if "budget" in params:
        return params
    if run.get("design") != "spex":
        raise UserError(f"fit=spex decodes the masks of SPEX's own design, and this sweep's design is "
                         f"{run.get('design')!r}: run a sweep with sweep.design=spex sweep.budget=B, or give "
                         f"fit.params.budget (and seed) to read them out of a sweep that holds them (exhaustive)")
    return params | {"budget": run["budget"], "seed": run["sweep_seed"], "degree": run["degree"]}


def run_fit(run_dir, method: str, params: dict | None = None, targets=None, start=None, stop=None,
            heldout_fraction: float = 0.2, split_seed: int = 0, workers: int = 1,
            progress: bool = True, alpha: float | None = None):
    """The whole stage for one run folder; returns both tables and the written paths."""
    chosen = select_targets(run_dir, targets, start, stop)
    interactions, metrics, meta = _fit(run_dir, method, params, chosen, heldout_fraction, split_seed, workers,
                                       progress, alpha)
    return interactions, metrics, save_fit(fit_dir(run_dir, alpha), interactions, metrics, meta)


def inputs_record(fit_dir, method: str) -> Path:
    return Path(fit_dir) / f".inputs-{method}.json"


def fit_inputs(run_dir, method: str, settings: dict, alpha: float | None = None,
               progress: bool = True) -> StageInputs:
    """The recorded inputs of a whole fit of ``method``: the fit-ready layout it reads (checked
    against the shards first, built if missing) and its settings."""
    layout = open_fit_ready(run_dir, progress=progress).path
    return StageInputs(inputs_record(fit_dir(run_dir, alpha), method), {"fit_ready": layout / "manifest.json"},
                       settings)


def part_paths(run_dir, method: str, part: int, alpha: float | None = None) -> list[Path]:
    folder = fit_dir(run_dir, alpha) / "parts" / method
    return [folder / f"part-{part:04d}.{name}" for name in FILES]


def run_fit_part(run_dir, part: int, parts: int, method: str, params: dict | None = None, targets=None,
                 start=None, stop=None, heldout_fraction: float = 0.2, split_seed: int = 0,
                 workers: int = 1, progress: bool = True, alpha: float | None = None):
    """Fit the ``part``-th of ``parts`` contiguous ranges of the selected targets, to its part files.

    Returns the written paths, or None when the part was already written (it is not redone).
    """
    if not 0 <= part < parts:
        raise UserError(f"fit.part={part} must lie in 0..{parts - 1} (fit.parts={parts})")
    paths = part_paths(run_dir, method, part, alpha)
    if all(p.exists() for p in paths):
        return None
    selected = select_targets(run_dir, targets, start, stop)
    chosen = [int(t) for t in np.array_split(np.asarray(selected), parts)[part]]
    if not chosen:
        raise UserError(f"fit.parts={parts} is more than the {len(selected)} targets to fit")
    interactions, metrics, meta = _fit(run_dir, method, params, chosen, heldout_fraction, split_seed,
                                       workers, progress, alpha)
    meta |= {"part": part, "parts": parts, "targets": chosen}
    return [write_frame(path, frame, meta) for path, frame in zip(paths, (interactions, metrics))]


def merge_fit_parts(run_dir, method: str, parts: int, alpha: float | None = None):
    """Merge the ``parts`` part files of ``method`` into the run's fit tables; returns the paths.

    Refuses (naming them) missing parts, parts written with another ``parts``, parts of
    another sweep, and targets present in two parts.
    """
    tables, metas = [[], []], []
    missing = []
    for part in range(parts):
        paths = part_paths(run_dir, method, part, alpha)
        if not all(p.exists() for p in paths):
            missing.append(part)
            continue
        for table, path in zip(tables, paths):
            frame, meta = read_frame(path, STAGE)
            if meta.get("parts") != parts:
                raise StoreError(f"{path} is part {meta.get('part')} of {meta.get('parts')} parts, not of "
                                 f"fit.parts={parts}")
            table.append(frame)
        metas.append((paths[0], meta))
    if missing:
        raise StoreError(f"fit parts {', '.join(map(str, missing))} of {parts} ({method}) are missing under "
                         f"{fit_dir(run_dir, alpha) / 'parts' / method}: run jobs/fit.py -m "
                         f"fit.part={','.join(map(str, missing))} fit.parts={parts} (with the fit's settings)")
    first_path, first = metas[0]
    owner: dict[int, Path] = {}
    for path, meta in metas:
        if meta["fingerprint"] != first["fingerprint"] or meta["config_hash"] != first["config_hash"]:
            raise StoreError(f"{path} fits another sweep than {first_path}")
        for target in meta["targets"]:
            if target in owner:
                raise StoreError(f"target {target} is fitted in both {owner[target]} and {path}")
            owner[target] = path
    meta = {k: v for k, v in first.items() if k not in ("part", "parts", "targets")}
    interactions, metrics = (pd.concat(t, ignore_index=True) for t in tables)
    return save_fit(fit_dir(run_dir, alpha), interactions, metrics, meta)


def summary(interactions: pd.DataFrame, metrics: pd.DataFrame) -> str:
    """Median faithfulness per method and the strongest synergy and redundancy pair."""
    lines = [f"{method}: {len(rows)} targets, median held-out R^2 {rows['r2'].median():.3f}, "
             f"median Spearman (LDS) {rows['spearman'].median():.3f}"
             + (f"; {rows['penalty_at_floor'].sum()} held at the penalty floor of their working set of "
                f"{rows['working_set'].median():.0f} players (a larger fit.params.screen_k fits them better)"
                if rows["penalty_at_floor"].any() else "")
             for method, rows in metrics.groupby("method")]
    pairs = interactions[interactions["order"] == 2]
    for kind in ("synergy", "redundancy"):
        rows = pairs[pairs["kind"] == kind]
        if len(rows):
            top = rows.loc[rows["mobius"].abs().idxmax()]
            lines.append(f"strongest {kind}: players {list(top['members'])} on target {top['target']} "
                         f"(Möbius {top['mobius']:+.3f})")
        else:
            lines.append(f"no {kind} pairs found")
    return "\n".join(lines)
