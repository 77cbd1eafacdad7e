"""The fit stage: split a sweep's models, fit every target, judge on held-out models, save.

Reads the run's fit-ready layout (:mod:`datamodels.store.fit_ready`: packed masks and target-major
margins, memory-mapped; built from ``<run_dir>/shards/`` when missing) and writes, atomically
and only after every fit succeeded, ``<run_dir>/fit/interactions.parquet`` and ``fit_metrics.parquet``
(:mod:`datamodels.fit.outputs` says what each holds), keeping the rows of other engines and
targets already there. Every engine is driven through the same hooks (:mod:`datamodels.interactions.engine`):
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
``<run_dir>/fit/parts/<engine>/part-KKKK.*.parquet`` (a part already written is skipped), and
:func:`merge_fit_parts` (``jobs/fit_merge.py``) merges them into the files above, refusing
missing parts and targets fitted twice.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from importlib import import_module

import numpy as np
import pandas as pd

from ..errors import UserError
from ..interactions import interaction_table, make_engine
from ..packed import as_packed
from ..run.folder import RunFolder
from ..run.stage_inputs import StageInputs
from ..run.stage_result import StageResult
from ..settings import Settings
from ..store.fit_ready import MANIFEST, open_fit_ready
from ..sweep.masks import design_of
from ..tables import write_frame
from .faithfulness import noise_ceiling, r2, spearman
from .outputs import INTERACTION_COLUMNS, METRIC_COLUMNS, save_fit, tables_meta

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Fitting and judging arrays


def fit_and_evaluate(masks, margins, mask_id, engine: str, params: dict | None = None,
                     target_ids=None, heldout_fraction: float = 0.2, split_seed: int = 0,
                     workers: int = 1, progress: bool = True, fit_models: int | None = None,
                     columns=None, models=None, announce=None):
    """Fit engine ``engine`` to columns of ``margins`` on the fit split; judge it on held-out models.

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
    per non-constant Möbius term (target, members, order, mobius, kind, engine, tested: whether
    it passed the engine's test, :attr:`~datamodels.interactions.Engine.tested_`, shrunk: its
    coefficient for decisions, :attr:`~datamodels.interactions.Engine.shrunk_mobius_`); metrics one
    row per target (target, engine, r2, spearman, noise_ceiling, r2_fraction_of_ceiling,
    models_used, seconds, working_set, kkt_added, penalty_at_floor, tested_zeroed). The noise ceiling uses all
    models' repeats (NaN when no mask is repeated).
    """
    estimator = make_engine(engine, **(params or {}))
    masks = as_packed(masks, "masks")
    mask_id = np.asarray(mask_id)
    eligible = np.ones(len(mask_id), dtype=bool) if models is None else np.asarray(models, dtype=bool)
    held = estimator.heldout_models(masks, mask_id, heldout_fraction, split_seed) & eligible
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
    if len(used) < estimator.min_models:
        raise UserError(f"fit={engine} needs at least {estimator.min_models} models to fit on (for its validation "
                        f"split and cross-validation folds); the sweep has {eligible.sum()}, of which {held.sum()} "
                        f"are held out to judge the fit: train more (sweep.num_models)")
    held_masks = masks[held]
    tables, rows = [], []
    total = margins.shape[1] if columns is None else len(columns)
    for fit in estimator.fit_targets(masks, margins, columns, used, mask_id[used], workers, progress):
        if announce is not None and not rows and total > 1:
            announce(projected_time(engine, fit.seconds, total, workers, len(used), masks.n))
        y = np.asarray(margins[:, fit.target], dtype=float)
        pred = fit.estimator.predict(held_masks)
        ceiling = noise_ceiling(y[eligible], mask_id[eligible])
        score = r2(y[held], pred)
        rows.append((target_ids[fit.target], engine, score, spearman(y[held], pred), ceiling,
                     score / ceiling, len(used), fit.seconds, len(fit.estimator.players_),
                     fit.estimator.kkt_added_, fit.estimator.penalty_at_floor_,
                     sum(term not in fit.estimator.mobius_ for term in fit.estimator.tested_)))
        table = interaction_table(fit.estimator.mobius_, tested=fit.estimator.tested_,
                                  shrunk=fit.estimator.shrunk_mobius_)
        tables.append(table.assign(target=target_ids[fit.target], engine=engine))
    metrics = pd.DataFrame(rows, columns=list(METRIC_COLUMNS))
    interactions = pd.concat(tables, ignore_index=True)[list(INTERACTION_COLUMNS)]
    return (interactions.sort_values("target", kind="stable", ignore_index=True),
            metrics.sort_values("target", kind="stable", ignore_index=True))


def projected_time(engine: str, seconds: float, targets: int, workers: int, models: int, n: int) -> str:
    """One line: the fit's projected wall time, ``seconds`` (the first target's) a target over
    ``workers`` processes, said once the first target is fitted (a fit's cost per target depends
    on the engine, the models, the players and the working set: measuring it is the honest way)."""
    wall = seconds * targets / max(1, workers)
    spelled = (f"{wall / 3600:.1f} h" if wall >= 5400 else f"{wall / 60:.0f} min" if wall >= 90
               else f"{wall:.0f} s")
    return (f"fit={engine}: {targets:,} targets on {models:,} models of {n:,} players; the first took "
            f"{seconds:.1f} s, so about {spelled} in all with {workers} worker(s)")


# ---------------------------------------------------------------------------------------------
# The stage


@dataclass
class FitSettings(Settings):
    """The fit stage's settings: ``conf/fit/<engine>.yaml`` over ``conf/fit/_stage.yaml``.

    ``engine``/``params``: the engine (``fit=<name>``) and its parameters; ``module``: a module
    to import first, which registers an engine of the user's (docs/interactions.md). Targets:
    a list (``targets``), a range (``start``..``stop - 1``) or all; ``part`` of ``parts``
    contiguous ranges of them for SLURM arrays. Judging: ``heldout_fraction`` of the mask ids,
    chosen by ``split_seed``. ``alpha``: fit only the masks drawn at that alpha. ``workers``:
    processes.
    """

    section = "fit"
    engine: str = "proxyspex"
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
        self.new_engine()  # an unknown engine, module or parameter fails before any reading

    def new_engine(self):
        """The unfitted engine these settings name (its module imported first)."""
        if self.module:
            try:
                import_module(self.module)
            except ImportError as err:
                raise UserError(f"fit.module={self.module!r} cannot be imported ({err})") from err
        return make_engine(self.engine, **self.params)

    def recorded(self) -> dict:
        """What decides a whole fit's tables (not how many processes make them, nor the parts).
        The engine is recorded under its earlier name, ``method``, so that the fits recorded
        before the rename stay up to date."""
        recorded = {k: v for k, v in asdict(self).items() if k not in ("workers", "part", "parts")}
        return {"method": recorded.pop("engine")} | recorded


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
    params = type(settings.new_engine()).params_from_run(run, settings.params)
    interactions, metrics = fit_and_evaluate(
        ready.masks, ready.target_margins.T, ready.mask_id, settings.engine, params, None, settings.heldout_fraction,
        settings.split_seed, settings.workers, progress, columns=targets, models=models, announce=announce)
    meta = tables_meta(run, settings.alpha, settings.engine, params, settings.heldout_fraction, settings.split_seed)
    return interactions, metrics, meta


def fit_inputs(run_dir, settings: FitSettings, progress: bool = True) -> StageInputs:
    """The recorded inputs of a whole fit: the fit-ready layout it reads (checked against the
    shards first, built if missing) and its settings."""
    layout = open_fit_ready(run_dir, progress=progress).path
    return StageInputs(RunFolder(run_dir).fit_record(settings.engine, settings.alpha),
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
    paths = RunFolder(run_dir).fit_part(settings.engine, part, settings.alpha)
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


