"""The fit stage: split a sweep's models, fit every target, judge on held-out models, save.

Reads the run's fit-ready layout (:mod:`datamodels.store.fit_ready`: packed masks and target-major
margins, memory-mapped; built from ``<run_dir>/shards/`` when missing) and writes, atomically
and only after every fit succeeded:

- ``<run_dir>/fit/interactions.parquet``: one row per (target, method, non-constant Möbius
  term): target, members (list of players), order, mobius, kind (main / synergy / redundancy,
  see :func:`datamodels.interactions.interaction_table`), method, tested (the interaction passed
  the engine's test: :attr:`datamodels.interactions.Engine.tested_`), shrunk (the term's
  coefficient in the final L1 refit, 0 where it zeroed the term: what pruning optimises, against
  the optimiser's curse; equal to mobius except for the terms ProxySPEX's relaxed refit sizes by
  least squares, :attr:`datamodels.interactions.Engine.shrunk_mobius_`);
- ``<run_dir>/fit/fit_metrics.parquet``: one row per (target, method): r2, spearman (LDS),
  noise_ceiling (NaN without repeated masks), r2_fraction_of_ceiling, models_used, seconds,
  working_set (players the fit looked at: all ``n``, or the screened ones plus those the KKT
  check added), kkt_added, penalty_at_floor (the L1 penalty wanted to go below what the
  working set stands for: a larger ``fit.params.screen_k`` would fit the target better; see
  :mod:`datamodels.interactions.screening`), tested_zeroed (interactions that passed the test
  and are not in the table: the final L1 refit set them to zero, and ``fit.params.relax=false``
  left them there).

Rows of other methods, and of this method's other targets, already in those files are kept,
so ``fit=proxyspex``, ``fit=linear`` and ``fit=linear_gpu`` runs accumulate side by side for
comparison. Every engine is driven through the same hooks (:mod:`datamodels.interactions.engine`):
which models judge it, how its targets are fitted (``linear_gpu`` fits whole batches on a GPU in
this process instead of spreading them over worker processes), what the run's design sets.
Settings: :class:`FitSettings` (``conf/fit/``); a whole fit whose inputs and settings are those
of its last run is skipped (:mod:`datamodels.run.stage_inputs`).

A sweep whose masks draw alpha from a grid (``sweep.alpha=[0.2,0.5,0.9]``) can be fitted at
one alpha (``fit.alpha=0.2``): only the models of masks drawn with it are split, fitted and
judged, and the tables go to ``<run_dir>/fit/alpha-0.2/`` (:meth:`RunFolder.fit`), a surrogate valid
at that fraction kept (the pruning stage's matched surrogates, :mod:`datamodels.pruning`).

At scale the targets are split into ``parts`` contiguous ranges fitted as separate jobs
(:func:`run_fit_part`, ``fit.part=K fit.parts=P``): each writes the same two tables under
``<run_dir>/fit/parts/<method>/part-KKKK.*.parquet`` (a part already written is skipped), and
:func:`merge_fit_parts` (``jobs/fit_merge.py``) merges them into the files above, refusing
missing parts and targets fitted twice.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from importlib import import_module

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import StoreError, UserError
from ..interactions import ENGINES, interaction_table, make_engine
from ..packed import as_packed
from ..run.folder import RunFolder
from ..run.stage_inputs import StageInputs
from ..run.stage_result import StageResult
from ..settings import Settings
from ..store.fit_ready import MANIFEST, open_fit_ready
from ..sweep.masks import design_of
from ..tables import read_frame, write_frame

log = logging.getLogger(__name__)
STAGE = "fit (jobs/fit.py)"
# The columns of the stage's two tables (the module doc says what each holds), whichever stage
# writes them: a method may add its own after these (TRAK's ``slope``).
INTERACTION_COLUMNS = ("target", "members", "order", "mobius", "kind", "method", "tested", "shrunk")
METRIC_COLUMNS = ("target", "method", "r2", "spearman", "noise_ceiling", "r2_fraction_of_ceiling", "models_used",
                  "seconds", "working_set", "kkt_added", "penalty_at_floor", "tested_zeroed")


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
# Fitting and judging arrays


def fit_and_evaluate(masks, margins, mask_id, method: str, params: dict | None = None,
                     target_ids=None, heldout_fraction: float = 0.2, split_seed: int = 0,
                     workers: int = 1, progress: bool = True, fit_models: int | None = None,
                     columns=None, models=None, announce=None):
    """Fit engine ``method`` to columns of ``margins`` on the fit split; judge it on held-out models.

    ``masks``: bool or 0/1 ``[m, n]``, or :class:`~datamodels.packed.PackedMasks` (memory-mapped
    at scale); ``margins``: array-like ``[m, T]`` (a transposed target-major memory map reads
    one target at a time). ``columns`` picks the columns to fit (default all); ``target_ids``
    names columns in the output (default their index), for margins that hold a subset of a
    sweep's targets. ``fit_models`` fits on only the first that many models of the fit split,
    judged on the same held-out models (learning curves). ``models`` (bool ``[m]``) restricts
    everything, fit, held-out split and noise ceiling, to those models. Which models are held
    out is the engine's choice (:meth:`~datamodels.interactions.Engine.heldout_models`).
    ``announce`` (e.g. ``print``) is told, once the first targets are fitted and while others
    remain, how long the rest will take at their pace (:func:`projected_time`).

    Returns ``(interactions, metrics)`` DataFrames sorted by target: interactions has one row
    per non-constant Möbius term (target, members, order, mobius, kind, method, tested: whether
    it passed the engine's test, :attr:`~datamodels.interactions.Engine.tested_`, shrunk: its
    coefficient for decisions, :attr:`~datamodels.interactions.Engine.shrunk_mobius_`); metrics one
    row per target (target, method, r2, spearman, noise_ceiling, r2_fraction_of_ceiling,
    models_used, seconds, working_set, kkt_added, penalty_at_floor, tested_zeroed). The noise ceiling uses all
    models' repeats (NaN when no mask is repeated).
    """
    engine = make_engine(method, **(params or {}))
    masks = as_packed(masks, "masks")
    mask_id = np.asarray(mask_id)
    eligible = np.ones(len(mask_id), dtype=bool) if models is None else np.asarray(models, dtype=bool)
    held = engine.heldout_models(masks, mask_id, heldout_fraction, split_seed) & eligible
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
    if len(used) < engine.min_models:
        raise UserError(f"fit={method} needs at least {engine.min_models} models to fit on (for its validation "
                        f"split and cross-validation folds); the sweep has {eligible.sum()}, of which {held.sum()} "
                        f"are held out to judge the fit: train more (sweep.num_models)")
    held_masks = masks[held]
    tables, rows = [], []
    total = margins.shape[1] if columns is None else len(columns)
    for fit in engine.fit_targets(masks, margins, columns, used, mask_id[used], workers, progress):
        if announce is not None and not rows and total > 1:
            announce(projected_time(method, fit.seconds, total, workers, len(used), masks.n))
        y = np.asarray(margins[:, fit.target], dtype=float)
        pred = fit.estimator.predict(held_masks)
        ceiling = noise_ceiling(y[eligible], mask_id[eligible])
        score = r2(y[held], pred)
        rows.append((target_ids[fit.target], method, score, spearman(y[held], pred), ceiling,
                     score / ceiling, len(used), fit.seconds, len(fit.estimator.players_),
                     fit.estimator.kkt_added_, fit.estimator.penalty_at_floor_,
                     sum(term not in fit.estimator.mobius_ for term in fit.estimator.tested_)))
        table = interaction_table(fit.estimator.mobius_, tested=fit.estimator.tested_,
                                  shrunk=fit.estimator.shrunk_mobius_)
        tables.append(table.assign(target=target_ids[fit.target], method=method))
    metrics = pd.DataFrame(rows, columns=list(METRIC_COLUMNS))
    interactions = pd.concat(tables, ignore_index=True)[list(INTERACTION_COLUMNS)]
    return (interactions.sort_values("target", kind="stable", ignore_index=True),
            metrics.sort_values("target", kind="stable", ignore_index=True))


def projected_time(method: str, seconds: float, targets: int, workers: int, models: int, n: int) -> str:
    """One line: the fit's projected wall time, ``seconds`` (the first target's) a target over
    ``workers`` processes, said once the first target is fitted (a fit's cost per target depends
    on the engine, the models, the players and the working set: measuring it is the honest way)."""
    wall = seconds * targets / max(1, workers)
    spelled = (f"{wall / 3600:.1f} h" if wall >= 5400 else f"{wall / 60:.0f} min" if wall >= 90
               else f"{wall:.0f} s")
    return (f"fit={method}: {targets:,} targets on {models:,} models of {n:,} players; the first took "
            f"{seconds:.1f} s, so about {spelled} in all with {workers} worker(s)")


# ---------------------------------------------------------------------------------------------
# The stage


@dataclass
class FitSettings(Settings):
    """The fit stage's settings: ``conf/fit/<method>.yaml`` over ``conf/fit/_stage.yaml``.

    ``method``/``params``: the engine (``fit=<name>``) and its parameters; ``module``: a module
    to import first, which registers an engine of the user's (docs/interactions.md). Targets:
    a list (``targets``), a range (``start``..``stop - 1``) or all; ``part`` of ``parts``
    contiguous ranges of them for SLURM arrays. Judging: ``heldout_fraction`` of the mask ids,
    chosen by ``split_seed``. ``alpha``: fit only the masks drawn at that alpha. ``workers``:
    processes.
    """

    section = "fit"
    method: str = "proxyspex"
    params: dict = field(default_factory=dict)
    module: str | None = None
    targets: list[int] | None = None
    start: int | None = None
    stop: int | None = None
    part: int | None = None
    parts: int | None = None
    heldout_fraction: float = 0.2
    split_seed: int = 0
    alpha: float | None = None
    workers: int = 2

    def __post_init__(self):
        self.params = dict(self.params or {})
        self.check_integers(("start", "stop", "part", "parts", "split_seed"))
        self.check_integers(("workers",), least=1)
        for name in ("heldout_fraction", "alpha"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise UserError(f"fit.{name}={value!r} must be a number")
        if self.part is not None and self.parts is None:
            raise UserError(f"fit.part={self.part} needs fit.parts, the number of parts the targets are split into")
        self.engine()  # an unknown method, module or parameter fails before any reading

    def engine(self):
        """The unfitted engine these settings name (its module imported first)."""
        if self.module:
            try:
                import_module(self.module)
            except ImportError as err:
                raise UserError(f"fit.module={self.module!r} cannot be imported ({err})") from err
        return make_engine(self.method, **self.params)

    def recorded(self) -> dict:
        """What decides a whole fit's tables (not how many processes make them, nor the parts)."""
        return {k: v for k, v in asdict(self).items() if k not in ("workers", "part", "parts")}


def select_targets(run_dir, targets=None, start=None, stop=None) -> list[int]:
    """Target columns to fit: a list, a ``start``..``stop - 1`` range, or every target.

    Checked against the run's ``T`` (its ``run.json``): an error names the setting at fault.
    """
    T = RunFolder(run_dir).read_run()["T"]
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


def save_fit(folder: RunFolder, alpha: float | None, interactions: pd.DataFrame, metrics: pd.DataFrame,
             meta: dict) -> list:
    """Write both tables, keeping rows of other methods or targets already there.

    ``meta["methods"]`` (method -> its settings) is merged with the files' own, so the metadata
    says how every method in the tables was fitted.
    """
    for method in meta["methods"]:  # these rows change: a record of a whole fit's inputs no longer holds
        folder.fit_record(method, alpha).unlink(missing_ok=True)
    written = []
    for path, new in zip(folder.fit_tables(alpha), (interactions, metrics)):
        file_meta = meta
        if path.exists():
            old, old_meta = read_frame(path, STAGE)
            if "members" in old:
                old = with_current_columns(old)
            replaced = old["method"].isin(new["method"].unique()) & old["target"].isin(new["target"])
            new = pd.concat([old[~replaced], new], ignore_index=True).sort_values(
                ["method", "target"], kind="stable", ignore_index=True)
            file_meta = meta | {"methods": old_meta.get("methods", {}) | meta["methods"]}
        written.append((path, new, file_meta))
    return [write_frame(path, frame, m) for path, frame, m in written]


def with_current_columns(interactions: pd.DataFrame) -> pd.DataFrame:
    """An interactions table written before its newer columns, with them: ``tested`` true for the
    interactions of an engine that tests them (ProxySPEX then kept only interactions that passed
    its test), false for the rest, and ``shrunk`` equal to ``mobius`` (the only coefficients recorded)."""
    defaults = {"tested": _tested_then, "shrunk": lambda t: t["mobius"]}
    return interactions.assign(**{column: fill for column, fill in defaults.items() if column not in interactions})


def _tested_then(table: pd.DataFrame):
    """``tested`` for a table written before the column: its interactions of an engine that tests
    them (a bare table without ``method`` names no engine: nothing marked)."""
    if "method" not in table:
        return False
    order = table["order"] if "order" in table else table["members"].map(len)
    return (order >= 2) & table["method"].map(_tests_interactions).astype(bool)


def _tests_interactions(method: str) -> bool:
    """Whether the engine of ``method`` tests its interactions (False for a name that is no engine: ``trak``)."""
    return getattr(ENGINES.get(method), "tests_interactions", False)


def untested_interactions(table: pa.Table) -> np.ndarray:
    """Bool per row of an interactions table: an interaction (order >= 2) that its engine tests
    and did not mark tested (ProxySPEX's ``untested="cv"``): a predictor only, which the report,
    the views and the removal checks do not state as a finding. Engines that never test (SPEX,
    linear) and tables without a ``tested`` column have none. Computed in Arrow: millions of rows."""
    testing = [m for m in pc.unique(table.column("method")).to_pylist() if _tests_interactions(m)]
    if "tested" not in table.column_names or not testing:
        return np.zeros(table.num_rows, dtype=bool)
    untested = pc.and_(pc.is_in(table.column("method"), pa.array(testing)),
                       pc.and_(pc.greater_equal(table.column("order"), 2), pc.invert(table.column("tested"))))
    return pc.fill_null(untested, False).to_numpy(zero_copy_only=False)


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


def _fit(run_dir, settings: FitSettings, targets: list[int], progress: bool, announce=None):
    """Fit the ``targets`` columns of a run's sweep: both tables and their metadata."""
    ready = open_fit_ready(run_dir, progress=progress)
    run = ready.meta
    if len(ready.model_index) < run["num_models"]:
        log.warning(f"fitting {len(ready.model_index):,} of the sweep's {run['num_models']:,} models: the others are "
                    f"not collected (jobs/collect.py run_dir={run_dir} lists them)")
    models = None if settings.alpha is None else models_at_alpha(run, ready.mask_id, settings.alpha)
    params = type(settings.engine()).params_from_run(run, settings.params)
    interactions, metrics = fit_and_evaluate(
        ready.masks, ready.target_margins.T, ready.mask_id, settings.method, params, None, settings.heldout_fraction,
        settings.split_seed, settings.workers, progress, columns=targets, models=models, announce=announce)
    meta = tables_meta(run, settings.alpha, settings.method, params, settings.heldout_fraction, settings.split_seed)
    return interactions, metrics, meta


def tables_meta(run: dict, alpha: float | None, method: str, params: dict, heldout_fraction: float,
                split_seed: int) -> dict:
    """The metadata of a fit's tables: the sweep they were fitted on (``run``, its ``run.json``),
    which :func:`merge_fit_parts` and the readers check, and how ``method`` was fitted."""
    return {"fingerprint": run["fingerprint"], "n": run["n"], "T": run["T"], "config_hash": run.get("config_hash"),
            "alpha": alpha,
            "methods": {method: {"params": params, "heldout_fraction": heldout_fraction, "split_seed": split_seed}}}


def fit_inputs(run_dir, settings: FitSettings, progress: bool = True) -> StageInputs:
    """The recorded inputs of a whole fit: the fit-ready layout it reads (checked against the
    shards first, built if missing) and its settings."""
    layout = open_fit_ready(run_dir, progress=progress).path
    return StageInputs(RunFolder(run_dir).fit_record(settings.method, settings.alpha),
                       {"layout": layout / MANIFEST}, settings.recorded())


def run_fit(run_dir, settings: FitSettings, *, progress: bool = True, force: bool = False,
            announce=None) -> StageResult:
    """The whole stage for one run folder: its :class:`~datamodels.run.stage_result.StageResult`
    (``outputs``: the fitted ``interactions`` and ``metrics``), up to date when the fit's inputs
    and settings are those of its last run and its tables are in place (``force`` redoes it).
    ``announce`` (e.g. ``print``) is told the projected time."""
    folder = RunFolder(run_dir)
    inputs = fit_inputs(run_dir, settings, progress)
    if not force and inputs.unchanged(folder.fit_tables(settings.alpha)):
        return StageResult("fit", up_to_date=True)
    chosen = select_targets(run_dir, settings.targets, settings.start, settings.stop)
    interactions, metrics, meta = _fit(run_dir, settings, chosen, progress, announce)
    paths = save_fit(folder, settings.alpha, interactions, metrics, meta)
    inputs.save()
    return StageResult("fit", paths, outputs={"interactions": interactions, "metrics": metrics})


def run_fit_part(run_dir, settings: FitSettings, *, progress: bool = True, force: bool = False,
                 announce=None) -> StageResult:
    """Fit part ``settings.part`` of ``settings.parts`` contiguous ranges of the selected targets,
    to its part files: the stage's :class:`~datamodels.run.stage_result.StageResult` (``written``:
    the part files; ``outputs``: the part's ``interactions`` and ``metrics``), up to date when the
    part was already written (it is not redone, unless ``force``)."""
    part, parts = settings.part, settings.parts
    if not 0 <= part < parts:
        raise UserError(f"fit.part={part} must lie in 0..{parts - 1} (fit.parts={parts})")
    paths = RunFolder(run_dir).fit_part(settings.method, part, settings.alpha)
    if not force and all(p.exists() for p in paths):
        return StageResult("fit", up_to_date=True)
    selected = select_targets(run_dir, settings.targets, settings.start, settings.stop)
    chosen = [int(t) for t in np.array_split(np.asarray(selected), parts)[part]]
    if not chosen:
        raise UserError(f"fit.parts={parts} is more than the {len(selected)} targets to fit")
    interactions, metrics, meta = _fit(run_dir, settings, chosen, progress, announce)
    meta |= {"part": part, "parts": parts, "targets": chosen}
    written = [write_frame(path, frame, meta) for path, frame in zip(paths, (interactions, metrics))]
    return StageResult("fit", written, outputs={"interactions": interactions, "metrics": metrics})


def merge_fit_parts(run_dir, method: str, parts: int, alpha: float | None = None):
    """Merge the ``parts`` part files of ``method`` into the run's fit tables; returns the paths.

    Refuses (naming them) missing parts, parts written with another ``parts``, parts of
    another sweep, and targets present in two parts.
    """
    folder = RunFolder(run_dir)
    tables, metas = [[], []], []
    missing = []
    for part in range(parts):
        paths = folder.fit_part(method, part, alpha)
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
                         f"{folder.fit_parts(method, alpha)}: run jobs/fit.py -m "
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


def residual_scale(r2, margin_sd=None, margin_var=None):
    """Per target: the sd of what its fit leaves unexplained, ``sqrt(1 - R^2) sd`` with the
    held-out ``r2`` (floored at 5% of the variance, so no target counts as noiseless) and the
    margin's sd over the models, or its variance ``margin_var``: the unit the report and
    :func:`summary` rank terms in, and pruning judges a target's terms in.

    The two spellings differ in the last bit; each is kept for the callers that have always
    used it (the views pass the sd, pruning's surrogate the variance), so that their rankings
    and keep-sets stay those of the runs already made."""
    unexplained = np.clip(1.0 - np.asarray(r2, float), 0.05, 1.0)
    if margin_var is not None:
        return np.sqrt(unexplained * np.asarray(margin_var, float)) + 1e-12
    return np.sqrt(unexplained) * np.asarray(margin_sd, float) + 1e-12


def summary(interactions: pd.DataFrame, metrics: pd.DataFrame, margin_sd=None) -> str:
    """Median faithfulness per method and the strongest synergy and redundancy pair: largest
    ``|m|`` in units of its target's residual sd (:func:`residual_scale`, with ``margin_sd``: every
    target's margin sd, indexed by target), as the report ranks them; without ``margin_sd``, by
    ``|m|``; of the pairs the report states (:func:`untested_interactions` left out)."""
    lines = [f"{method}: {len(rows)} targets, median held-out R^2 {rows['r2'].median():.3f}, "
             f"median Spearman (LDS) {rows['spearman'].median():.3f}"
             + (f"; {rows['penalty_at_floor'].sum()} held at the penalty floor of their working set of "
                f"{rows['working_set'].median():.0f} players (a larger fit.params.screen_k fits them better)"
                if rows["penalty_at_floor"].any() else "")
             + (f"; {rows['tested_zeroed'].sum()} tested interactions zeroed by the final refit (the L1 refit "
                f"without fit.params.relax; with it, only those too small for the penalty)"
                if rows["tested_zeroed"].any() else "")
             for method, rows in metrics.groupby("method")]
    claimed = ~untested_interactions(pa.Table.from_pandas(interactions[
        [c for c in ("method", "order", "tested") if c in interactions]], preserve_index=False))
    pairs = interactions[(interactions["order"] == 2).to_numpy() & claimed].reset_index(drop=True)
    if margin_sd is not None:
        scale = pd.Series(residual_scale(metrics["r2"], np.asarray(margin_sd)[metrics["target"].to_numpy(np.int64)]),
                          index=pd.MultiIndex.from_frame(metrics[["method", "target"]]))
        size = pairs["mobius"].abs() / scale.reindex(pd.MultiIndex.from_frame(pairs[["method", "target"]])).to_numpy()
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
