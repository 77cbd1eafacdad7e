"""The pruning stages of a run folder: keep-sets (``jobs/prune.py``) and their retraining
(``jobs/evaluate_pruning.py``), each skipped when its recorded inputs are unchanged."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..run.folder import RunFolder
from ..run.stage_inputs import StageInputs
from ..run.stage_result import StageResult
from ..settings import Settings
from ..sweep.run_data import RunData
from ..tables import write_frame
from .baselines import BASELINES, Choice, stream
from .curation import load_keep_sets
from .greedy import greedy_keep_sets
from .quotas import PruningError, check_fractions
from .results import paired_differences, plot_pruning, summarize
from .surrogate import SURROGATES, Surrogate, load_surrogates

# The methods that optimise a fitted surrogate, and the fit engine whose tables drive each by default.
# trak: the same objective and quotas over TRAK's linear surrogate (jobs/trak.py, datamodels.fit.trak).
SURROGATE_METHODS = {"interactions": "proxyspex", "linear": "linear", "trak": "trak"}
METHODS = (*SURROGATE_METHODS, *BASELINES)
# Chosen only when asked for: their fit needs an optional extra (trak: dattri) and a job of its own.
OPT_IN_METHODS = ("trak",)
# prune.methods when not given (conf/prune/default.yaml: null)
DEFAULT_METHODS = tuple(m for m in METHODS if m not in OPT_IN_METHODS)


def make_keep_sets(methods, fractions, n: int, classes: np.ndarray,
                   surrogates: dict[str, dict[float, Surrogate]] | None = None, difficulty=None, draws: int = 5,
                   seed: int = 0, quotas: bool = True, min_per_class: int = 1, synergy_threshold: float = 1.0,
                   ccs_cutoff: float = 0.1, ccs_bins: int = 10, progress: bool = True) -> pd.DataFrame:
    """One row per (method, fraction, draw): the kept players (sorted) and how many.

    ``classes``: each of the ``n`` players' class; ``surrogates``: :func:`load_surrogates`'s
    answer for the surrogate methods; ``difficulty``: a function returning the players' EL2N
    scores (called once, only when a method needs them). Deterministic methods have draw 0
    only; the randomised ones ``draws`` draws, each from a stream of its own
    (:func:`~.baselines.stream`).
    """
    fractions = check_fractions(fractions)
    if unknown := [m for m in methods if m not in METHODS]:
        raise PruningError(f"unknown pruning method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    if draws < 1:
        raise PruningError(f"the randomised methods need at least one draw, got {draws}")
    needs = [m for m in methods if m in BASELINES and BASELINES[m].needs_difficulty]
    if needs and difficulty is None:
        raise PruningError(f"pruning methods {', '.join(needs)} rank players by EL2N, which trains models on the "
                           f"run's data, and this run has none linked: drop them from prune.methods")
    scores = difficulty() if needs else None
    greedy = {}  # (method, size) -> keep-set: one elimination per surrogate gives all its fractions

    def surrogate_keep_set(method: str, fraction: float, size: int) -> np.ndarray:
        if surrogates is None or fraction not in surrogates.get(method, {}):
            raise PruningError(f"pruning method {method!r} needs its fitted surrogate for fraction {fraction}")
        if (method, size) not in greedy:
            mine = surrogates[method][fraction]
            same = [f for f in fractions if round(f * n) >= 1 and surrogates[method].get(f) is mine]
            found = greedy_keep_sets(mine, [round(f * n) for f in same],
                                     classes if quotas else None, min_per_class, synergy_threshold, seed)
            greedy.update({(method, k): keep for k, keep in found.items()})
        return greedy[(method, size)]

    rows = []
    jobs = [(m, f) for m in methods for f in fractions]
    for method, fraction in tqdm(jobs, desc="keep-sets", disable=not progress):
        size = round(fraction * n)
        if size < 1:
            raise PruningError(f"kept fraction {fraction} of {n} players keeps nobody")
        baseline = BASELINES.get(method)
        times = draws if baseline is not None and baseline.randomised else 1
        if size == n:
            picks = [np.arange(n)] * times
        elif baseline is None:
            picks = [surrogate_keep_set(method, fraction, size)]
        else:
            choice = Choice(n, classes, scores, seed, min_per_class, ccs_cutoff, ccs_bins)
            picks = [baseline.choose(choice, size, stream(seed, method, draw, fraction)) for draw in range(times)]
        rows += [{"method": method, "fraction": fraction, "draw": d, "size": len(p), "players": np.sort(p).tolist()}
                 for d, p in enumerate(picks)]
    return pd.DataFrame(rows)


def linked_sweep(run_dir, what: str):
    """The run's sweep with its dataset, for ``what`` (something that retrains models); refused in
    one line on a run without a linked dataset (planted, or imported with ``dataset=none``)."""
    run = RunData.open(run_dir).sweep_run
    if run is None:
        raise PruningError(f"{what} retrains models on the run's data, and {run_dir} has no dataset linked: "
                           f"the surrogate methods and random/stratified work without one")
    return run


@dataclass
class PruneSettings(Settings):
    """The pruning stages' settings (``conf/prune/default.yaml`` says what each does)."""

    section = "prune"
    fractions: list[float] = field(default_factory=lambda: [0.9, 0.7, 0.5, 0.3, 0.2])
    # None: every method but the opt-in ones, less those the run cannot take (:meth:`for_run`)
    methods: list[str] | None = None
    fit_engine: str = "proxyspex"
    surrogates: str = "sweep"
    class_quotas: bool = True
    min_per_class: int = 1
    synergy_threshold: float = 1.0
    seed: int = 0
    el2n_seeds: int = 3
    el2n_epochs: int = 2
    ccs_cutoff: float = 0.1
    ccs_bins: int = 10
    eval_seeds: int = 5
    draws: int | None = None
    workers: int = 2
    keep_sets: str | None = None

    def __post_init__(self):
        self.fractions = check_fractions(self.fractions)
        # not a field: whether the methods were chosen, or are the default that adapts to the run
        self.methods_chosen = self.methods is not None
        if self.methods is None:
            self.methods = list(DEFAULT_METHODS)
        if self.surrogates not in SURROGATES:
            raise PruningError(f"prune.surrogates={self.surrogates!r}; choose one of {', '.join(SURROGATES)}")
        if unknown := [m for m in self.methods if m not in METHODS]:
            raise PruningError(f"prune.methods: unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
        self.draws = self.eval_seeds if self.draws is None else self.draws
        self.check_integers(("min_per_class", "seed", "el2n_seeds", "el2n_epochs", "ccs_bins", "eval_seeds", "draws",
                             "workers"), least=0)

    @property
    def fits(self) -> dict[str, str]:
        """Surrogate pruning method -> the fit engine whose tables drive it."""
        return {m: self.fit_engine if m == "interactions" else SURROGATE_METHODS[m]
                for m in self.methods if m in SURROGATE_METHODS}

    def keep_set_settings(self) -> dict:
        """What decides the keep-sets (not their evaluation, nor how many processes run it). The fit
        engine is recorded under its earlier name, ``fit_method``, so that the keep-sets recorded
        before the rename stay up to date."""
        recorded = {k: v for k, v in asdict(self).items() if k not in ("workers", "keep_sets", "eval_seeds")}
        return {("fit_method" if k == "fit_engine" else k): v for k, v in recorded.items()}

    def for_run(self, folder: RunFolder) -> tuple[PruneSettings, list[str]]:
        """These settings for the run in ``folder``, and the default methods left out of them.

        Methods the user chose are kept, and a method the run cannot take is refused later in one
        line. The default methods drop those that cannot run there: EL2N and CCS (they train on
        the run's images) on a run without its dataset linked (planted, imported with
        ``dataset=none``), and stratified on a run whose players' classes are unknown.
        """
        if self.methods_chosen:
            return self, []
        config = folder.read_config() if folder.config_json.exists() else {}
        linked = (config.get("dataset") or {}).get("name") not in (None, "none")
        classes = linked or any(path.exists() for path in folder.label_files)
        dropped = [m for m in self.methods if (not linked and m in BASELINES and BASELINES[m].needs_difficulty)
                   or (not classes and m == "stratified")]
        if not dropped:
            return self, []
        kept = replace(self, methods=[m for m in self.methods if m not in dropped])
        kept.methods_chosen = False
        return kept, dropped


def run_prune(run_dir, settings: PruneSettings, *, progress: bool = True, force: bool = False,
              announce=None) -> StageResult:
    """Keep-sets of every method at every fraction, to ``prune/keep_sets.parquet``: the stage's
    :class:`~datamodels.run.stage_result.StageResult` (``outputs``: the ``keep_sets``), up to date
    when the fits and settings are those of its last run (``force`` redoes it). A run without its
    dataset linked (planted, imported without images) takes the methods that need no training,
    and the players' classes from its labels file where it has one: the default methods leave out
    the others (:meth:`PruneSettings.for_run`; ``announce``, e.g. ``print``, is told which),
    chosen ones are refused."""
    folder = RunFolder(run_dir)
    settings, dropped = settings.for_run(folder)
    if dropped and announce is not None:
        reason = ("no dataset linked: they train on its images" if "stratified" not in dropped
                  else "no dataset linked and no players' classes")
        announce(f"prune: left out {', '.join(dropped)} ({folder.root} has {reason}); "
                 f"prune.methods=[...] chooses the methods")
    alphas = {f if settings.surrogates == "matched" else None for f in settings.fractions if f < 1}
    reads = {"run": folder.run_json}
    if settings.fits:
        reads |= {str(path.relative_to(folder.root)): path for alpha in alphas for path in folder.fit_tables(alpha)}
    inputs = StageInputs(folder.keep_sets_record, reads, settings.keep_set_settings())
    if not force and inputs.unchanged([folder.keep_sets_file]):
        return StageResult("prune", up_to_date=True)
    view = RunData.open(run_dir)  # a run with or without its dataset linked
    run, n = view.sweep_run, view.n
    if view.player_labels is None and "stratified" in settings.methods:
        raise PruningError(f"pruning method stratified draws within classes, and the players' classes of {run_dir} "
                           f"are unknown (no dataset linked, no labels file): drop it from prune.methods")
    # only the surrogate methods read the fit (millions of terms at CIFAR scale)
    surrogates = (load_surrogates(run_dir, settings.fits, settings.fractions, settings.surrogates)
                  if settings.fits else {})

    def difficulty():
        from .retraining import el2n_scores

        return el2n_scores(run, settings.el2n_seeds, settings.el2n_epochs)

    # unknown classes: one class, so the class quotas keep no share
    classes = view.player_labels if view.player_labels is not None else np.zeros(n, dtype=np.int64)
    keep = make_keep_sets(settings.methods, settings.fractions, n, classes, surrogates,
                          difficulty if run is not None else None, settings.draws, settings.seed,
                          settings.class_quotas, settings.min_per_class, settings.synergy_threshold,
                          settings.ccs_cutoff, settings.ccs_bins, progress)
    path = write_frame(folder.keep_sets_file, keep, {"fingerprint": view.meta["fingerprint"], "n": n,
                                                "source_run": str(folder.root),
                                                "settings": settings.keep_set_settings()})
    inputs.save()
    return StageResult("prune", [path], outputs={"keep_sets": keep})


def run_evaluation(run_dir, settings: PruneSettings, *, progress: bool = True, force: bool = False,
                   threads: int = 1) -> StageResult:
    """Retrain every keep-set (``prune.keep_sets``, default the run's) under the full set's step
    budget with ``eval_seeds`` seeds, in ``workers`` processes of ``threads`` torch threads each:
    the stage's :class:`~datamodels.run.stage_result.StageResult` (``outputs``: the ``summary``
    and the ``paired`` differences), up to date when the keep-sets and settings are those of its
    last run (``force`` redoes it)."""
    from .retraining import evaluate_keep_sets

    folder = RunFolder(run_dir)
    source = folder.keep_sets_file if settings.keep_sets is None else settings.keep_sets
    written = [folder.evaluation, *folder.evaluation_summaries]
    inputs = StageInputs(folder.evaluation_record, {"keep_sets": source, "run": folder.run_json},
                         {"eval_seeds": settings.eval_seeds})
    if not force and inputs.unchanged(written):
        return StageResult("evaluate", up_to_date=True)
    run = linked_sweep(run_dir, "evaluating keep-sets")
    keep, meta, source = load_keep_sets(run.meta["fingerprint"], source)
    evaluation = evaluate_keep_sets(run, keep, settings.eval_seeds, settings.workers, progress, threads)
    write_frame(folder.evaluation, evaluation, meta | {"keep_sets": str(source)})
    table, paired = summarize(evaluation), paired_differences(evaluation)
    table_csv, paired_csv, figure = folder.evaluation_summaries
    table.to_csv(table_csv, index=False)
    paired.to_csv(paired_csv, index=False)
    plot_pruning(table).savefig(figure, dpi=120)
    inputs.save()
    return StageResult("evaluate", written, outputs={"summary": table, "paired": paired})
