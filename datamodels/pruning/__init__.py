"""Data pruning: keep-sets of players at kept fractions, and how to judge them by retraining.

The promise of interaction-aware curation is to keep the synergies and safely remove the
redundancies. Every method below turns one kind of knowledge into a keep-set of
``round(f * n)`` players for each kept fraction ``f``; its objective is written next to it.

Surrogate-driven (the fitted Möbius polynomials ``f_t(x) = sum_S m_t(S) prod_{i in S} x_i`` of
every target ``t``, :class:`Surrogate`):

- ``interactions`` (the fit engine ``prune.fit_engine``, ProxySPEX by default) and ``linear``
  (the linear datamodel, mains only) maximise the **expected accuracy on the targets**
  ``A(x) = mean_t Phi(f_t(x) / tau_t)``: the probability that target ``t``'s margin is positive
  when the true margin is the surrogate's prediction plus Gaussian error of the surrogate's
  held-out residual sd ``tau_t``. Each target weighs at most ``1/T`` and a target already safe,
  or already lost, barely moves ``A``, so no single target dominates (the earlier objective,
  the mean margin, let the targets with the largest margins decide; docs/pruning.md).
  Greedy backward elimination removes, at each step, the player whose removal lowers ``A``
  least. That is **redundancy-aware removal**: removing a player ``i`` changes ``f_t`` by its
  current contribution ``c_t(i) = sum over kept S containing i of m_t(S)``; for a member of a
  redundant pair (``m_t({i,j}) < 0``) the pair term offsets its main effect, so it goes before
  an independent player of the same main effect, and once it is gone its partner's
  contribution rises by ``-m_t({i,j})``, so the partner is kept. A **strong synergy** (a pair or
  triple whose Möbius coefficients sum over the targets, in units of ``tau_t``, to more than
  ``synergy_threshold``) is never split: its members are removed together or not at all.
  **Class quotas** keep every class within one player of its share of the full set at every
  size (``floor(k * n_c / n)`` of class ``c`` when ``k`` players are kept) and at least
  ``min_per_class`` players: the surrogates' targets need some classes more than others, and
  an accuracy on unseen data needs every class.
- **Matched surrogates** (``surrogates="matched"``): the keep-set at fraction ``f`` is chosen with
  the fit made on the masks of alpha ``f`` only (a sweep over an alpha grid and
  ``jobs/fit.py fit.alpha=f``), as the datamodels paper fits at the alpha it predicts (Ilyas et
  al. 2022); ``surrogates="sweep"`` uses the run's one fit for every fraction and extrapolates
  far from its alpha.

Baselines (:mod:`.baselines`): EL2N (Paul et al. 2021), CCS (Zheng et al. 2023), random, and
class-stratified random. The randomised ones are distributions, not one draw:
:func:`make_keep_sets` draws ``draws`` keep-sets of each (``prune.draws``, default
``prune.eval_seeds``), and the evaluation trains draw ``d`` with seed ``d mod eval_seeds``, so
their spread includes the draw's.

Evaluation follows the pruning literature: retrain on each keep-set under a **fixed number of
SGD steps** (that of training on the full set), so smaller sets get more epochs; the same seeds
for every method; accuracy on the **holdout** split only (never on the targets that drove the
attribution). :func:`summarize` gives each method's mean and 95% t-interval per fraction and
:func:`paired_differences` each method's difference to the best baseline, paired by seed.

One module per concern: :mod:`.quotas` (fractions, quotas), :mod:`.surrogate` (the
fitted polynomials in sparse form, synergy blocks), :mod:`.greedy` (the elimination, on the
sparse terms: CIFAR-10's 50,000 players x 10,000 targets in minutes), :mod:`.baselines`,
:mod:`.retraining` (what trains models: evaluation, EL2N), :mod:`.results` (summaries and their
figure), :mod:`.curation` (one keep-set for a curation script), :mod:`.stage` (the stages of a
run folder, :func:`run_prune` and :func:`run_evaluation`). The players' classes, which the quotas
count, are :func:`datamodels.sweep.masks.player_classes`: the run's data (:mod:`datamodels.sweep.run_data`)
reads them too, and this package imports the run's data, not the other way round.
"""
from ..sweep.masks import player_classes
from .baselines import BASELINES, ccs_keep_set, hardest_keep_set, stratified_keep_set
from .curation import CurateSettings, curate, load_keep_sets, run_curate
from .greedy import greedy_keep_set, greedy_keep_sets
from .quotas import PruningError, check_fractions, class_quotas
from .results import COMPARED_WITH, paired_differences, plot_pruning, summarize
from .stage import METHODS, SURROGATE_METHODS, PruneSettings, make_keep_sets, run_evaluation, run_prune
from .surrogate import SURROGATES, Surrogate, load_surrogates, synergy_blocks

__all__ = [
    "BASELINES", "COMPARED_WITH", "CurateSettings", "METHODS", "SURROGATES", "SURROGATE_METHODS", "PruneSettings",
    "PruningError", "Surrogate", "ccs_keep_set", "check_fractions", "class_quotas", "curate", "greedy_keep_set",
    "greedy_keep_sets",
    "hardest_keep_set", "load_keep_sets", "load_surrogates", "make_keep_sets", "paired_differences", "player_classes",
    "plot_pruning", "run_curate", "run_evaluation", "run_prune", "stratified_keep_set", "summarize", "synergy_blocks",
]
