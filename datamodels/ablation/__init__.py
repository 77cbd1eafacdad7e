"""Retraining checks of what a fit claims: pair confirmations and counterfactual removals.

A fit claims, per target, which players matter and which pairs are synergistic or redundant.
These checks retrain models with chosen players in or out and compare what happens with what
the fitted polynomial predicts in closed form (:mod:`.polynomial`):

- ``pairs``: for the fit's strongest pairs (or a sample stratified by rank) and as many random
  control pairs on the same targets, a 2x2 factorial on random backgrounds drawn at the run's
  alpha (both, only ``i``, only ``j``, neither; one seed per background); the measured double
  difference is tested against zero (Benjamini-Hochberg over the checked pairs) and a pair is
  confirmed when it passes with the predicted sign (:mod:`.measure`).
- ``removal``: for chosen targets, sets of ``k`` players whose removal should lower the target's
  margin most, by each method (the adaptive greedy on the interaction fit, the linear
  datamodel's top ``k``, random players of the target's class); trained with and without the
  set, on backgrounds at alpha or on the whole training set with several seeds (the data
  support protocol of Ilyas et al. 2022).
- ``heldout``: the pairs' double differences on the fit's own held-out models (free; the first
  filter before retraining).

One module per concern: :mod:`.polynomial` (predictions and the greedy), :mod:`.design` (the
checks and their masks), :mod:`.measure` (statistics), :mod:`.figures`, :mod:`.planning` (the
settings, and the checks chosen from a run's fit: :func:`plan_ablation`), :mod:`.stage` (the stage
of a run folder, :func:`run_ablate`: the child sweep trained, the checks measured). The checks'
models are an ordinary child sweep in ``<run_dir>/ablations/<name>/``
(:class:`~datamodels.run.folder.RunFolder`).
"""
from .design import AblationError, Design, exact_pairs
from .measure import heldout_pairs, measure_pairs, measure_removals, pair_summary, removal_comparison
from .polynomial import TargetPolynomial
from .planning import DESIGNS, AblateSettings, Plan, plan_ablation
from .stage import run_ablate

__all__ = ["DESIGNS", "AblateSettings", "AblationError", "Design", "Plan", "TargetPolynomial", "exact_pairs",
           "heldout_pairs", "measure_pairs", "measure_removals", "pair_summary", "plan_ablation", "removal_comparison",
           "run_ablate"]
