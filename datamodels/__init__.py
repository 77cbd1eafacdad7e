"""Interaction-aware data attribution by retraining.

The packages in pipeline order (each stage a Hydra job under ``jobs/``, each a plain function
``run_<stage>(run_dir, settings, *, progress, force)`` here):

- :mod:`datamodels.sweep`: everything that produces a run. The sweep trains models on masked
  subsets (:mod:`~datamodels.sweep.stage`; datasets, mask designs, networks, training and
  loaders beside it); a run may instead be imported (:mod:`~datamodels.sweep.importing`, its
  source's arrays read by :mod:`~datamodels.sweep.import_source`) or planted
  (:mod:`~datamodels.sweep.planted`, the games of :mod:`~datamodels.sweep.games`).
- :mod:`datamodels.store`: what the sweep writes, one parquet shard per job
  (:mod:`~datamodels.store.shard_file`; collected and loaded by :mod:`~datamodels.store.shards`),
  and the fit-ready layout ``collect`` builds from it (:mod:`~datamodels.store.fit_ready`).
- :mod:`datamodels.fit`: the fit stage (:mod:`~datamodels.fit.stage`), one engine of
  :mod:`datamodels.interactions` per target (ProxySPEX, the linear datamodel, SPEX), judged on
  held-out models (:mod:`~datamodels.fit.faithfulness`), its two tables
  (:mod:`~datamodels.fit.outputs`) read back by :mod:`~datamodels.fit.results`; exact ground
  truth (:mod:`~datamodels.fit.exhaustive`); TRAK (:mod:`~datamodels.fit.trak`).
- :mod:`datamodels.pruning`: keep-sets from a fit, judged by retraining; curated datasets;
  duplicate groups (:mod:`~datamodels.pruning.duplicates`).
- :mod:`datamodels.ablation`: retraining checks of what a fit claims, planned
  (:mod:`~datamodels.ablation.planning`) and run (:mod:`~datamodels.ablation.stage`).
- :mod:`datamodels.views`: the notebooks' DataFrames and figures
  (:mod:`~datamodels.views.analysis`, one namespace over :mod:`~datamodels.views.run_view`,
  :mod:`~datamodels.views.terms`, :mod:`~datamodels.views.comparisons` and
  :mod:`~datamodels.views.figures`) and the HTML report (:mod:`~datamodels.views.report`, written
  as a page by :mod:`~datamodels.views.report_page`).

Beneath them all: :mod:`datamodels.run` (the run folder's paths, identity, shard claims and
recorded stage inputs), :mod:`datamodels.interactions` (the engines: estimators that know nothing
of runs), :mod:`datamodels.cli` (the jobs' shell: a run folder's recorded settings, the job
wrapper, interrupts, the sweep's Hydra callback, the command-line check), and single modules:
:mod:`~datamodels.errors`, :mod:`~datamodels.settings`, :mod:`~datamodels.renamed` (the names an
earlier release used, accepted for one more), :mod:`~datamodels.tables`,
:mod:`~datamodels.packed` and :mod:`~datamodels.processes`. A package imports only the ones above
it in this list's reverse order (``tests/test_architecture.py``): nothing runs back up the pipeline.
"""

from . import _moved

__version__ = "0.1.0"

_moved.install()
