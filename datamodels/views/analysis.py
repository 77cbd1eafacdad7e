"""Views of a run for a researcher: DataFrames and matplotlib figures, nothing computed twice.

Everything reads the stage outputs of one run folder (:class:`~datamodels.run.folder.RunFolder`)
through :class:`RunView`, with the stages' own checked readers:

- the sweep: ``run.json``, ``config.json`` and the fit-ready layout of its shards
  (:mod:`datamodels.store.fit_ready`: margins memory-mapped, one target read at a time);
- ``fit/interactions.parquet``: one row per (target, engine, interaction): ``members`` (list of
  players), ``order``, ``mobius``, ``kind`` (main / synergy / redundancy);
- ``fit/fit_metrics.parquet``: faithfulness per (target, engine);
- ``prune/keep_sets.parquet``, ``prune/evaluation.parquet``: keep-sets, and the holdout
  accuracy of each retrained on (pruning method, fraction, seed).

The notebooks under ``analysis/`` and the report (:mod:`datamodels.views.report`) only call these
functions. At CIFAR-10 scale (10,000 targets, millions of fitted terms) the views choose: terms
and targets are ranked by ``|m(S)|`` in units of the target's residual sd
(:func:`term_strength`), and the tables return the top ``k``. A run without its dataset (a
planted sweep, an import without the archive) names players by index and class instead of
drawing their images.

This module is the notebooks' one namespace (``from datamodels.views import analysis as A``); each
name lives in the module of its concern: opening a run (:mod:`~datamodels.views.run_view`), the
tables of fitted terms (:mod:`~datamodels.views.terms`), the engines and pruning methods compared
(:mod:`~datamodels.views.comparisons`) and the figures (:mod:`~datamodels.views.figures`).
"""

from ..fit.results import default_engine, default_method, fitted_metrics, residual_sd
from ..sweep.run_data import AnalysisError
from .comparisons import (QUANTILES, compare_sentence, faithfulness_conclusion, faithfulness_summary,
                          faithfulness_vs_models, keep_set_overlap, pruning_conclusion, pruning_grid, pruning_paired,
                          pruning_table, worst_fitted_targets)
from .figures import plot_candidates, plot_faithfulness, plot_interactions, plot_player, plot_target
from .run_view import RunView, run_dir_from_environment
from .terms import (KINDS, class_pair_patterns, judge_triples, pair_sentence, strongest_pair, strongest_targets,
                    strongest_terms, target_summary, term_counts, term_strength, top_effects)

__all__ = [
    "AnalysisError", "KINDS", "QUANTILES", "RunView", "class_pair_patterns", "compare_sentence", "default_engine",
    "default_method", "faithfulness_conclusion", "faithfulness_summary", "faithfulness_vs_models", "fitted_metrics",
    "judge_triples", "keep_set_overlap", "pair_sentence", "plot_candidates", "plot_faithfulness", "plot_interactions",
    "plot_player", "plot_target", "pruning_conclusion", "pruning_grid", "pruning_paired", "pruning_table",
    "residual_sd", "run_dir_from_environment", "strongest_pair", "strongest_targets", "strongest_terms",
    "target_summary", "term_counts", "term_strength", "top_effects", "worst_fitted_targets",
]
