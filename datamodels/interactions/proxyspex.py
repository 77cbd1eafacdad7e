"""ProxySPEX, after Butler et al., "ProxySPEX: Inference-Efficient Interpretability via Sparse
Feature Interactions in LLMs" (NeurIPS 2025): gradient-boosted trees of bounded depth are a
proxy whose exact Fourier spectrum names the candidate interactions; tests and a sparse
regression on those candidates then estimate their coefficients."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np

from ..packed import PackedMasks
from .engine import as_items, is_integer, is_real
from .lasso import allowed_penalties, cv_above
from .screened import ScreenedEngine, _spectrum, _to_global
from .selection import Selection
from .spectra import _booster_fourier_arrays, _design_matrix, _expand_subsets
from .spectra import _PAD
from .term_keys import best, rows_in, widen

# Beyond this many models the trees see an even subsample: they only propose, and every
# proposal is tested on all models, so their cost stops growing with the sweep.
PROXY_ROWS = 32768
# Penalties of the final refit, as multiples of the linear datamodel's.
_SHORT_PATH = np.geomspace(1.0, 0.05, 12)[:7]


class _TreeProxy:
    """LightGBM ensembles of depth ``<= max_order`` on fixed mask columns, for a target and then
    for residuals of its model; the binned datasets (most of LightGBM's setup) are built once.

    ``proposals(y)`` gives the interactions (order >= 2, column positions, ``max_order`` wide)
    in the exact spectrum of the best ensemble fitted to ``y``: one thread, early-stopped on a
    ``val_fraction`` split, over the search ``depths`` x ``learning_rates``.
    """

    def __init__(self, estimator: "ProxySPEX", X: np.ndarray):
        self.estimator = estimator
        rng = np.random.default_rng(estimator.random_state)
        self._rows = np.arange(0, len(X), -(-len(X) // PROXY_ROWS))
        self._val = rng.random(len(self._rows)) < estimator.val_fraction
        Xf = X[self._rows].astype(np.float32)
        self._train = lgb.Dataset(Xf[~self._val], np.zeros((~self._val).sum()), params={"verbose": -1},
                                  free_raw_data=False)
        self._valid = lgb.Dataset(Xf[self._val], np.zeros(self._val.sum()), reference=self._train)
        self.params = None

    def proposals(self, y: np.ndarray) -> np.ndarray:
        est = self.estimator
        y = y[self._rows]
        self._train.set_label(y[~self._val])
        self._valid.set_label(y[self._val])
        base = dict(
            objective="regression",
            verbose=-1,
            num_threads=1,
            deterministic=True,
            force_row_wise=True,  # 3-4x faster than col-wise on dense 0/1 masks (measured)
            min_child_samples=est.min_child_samples,
            seed=0 if est.random_state is None else est.random_state,
        )
        best = None
        for depth in est.depths or (est.max_order,):
            for lr in est.learning_rates:
                params = {**base, "max_depth": depth, "num_leaves": 2**depth, "learning_rate": lr}
                booster = lgb.train(params, self._train, num_boost_round=est.n_estimators, valid_sets=[self._valid],
                                    callbacks=[lgb.early_stopping(est.early_stopping_rounds, verbose=False)])
                score = booster.best_score["valid_0"]["l2"]
                if best is None or score < best[0]:
                    best = (score, booster, params)
        _, booster, params = best
        self.params = {"max_depth": params["max_depth"], "learning_rate": params["learning_rate"],
                       "n_trees": booster.best_iteration}
        # Keep only the early-stopped trees; their spectrum is what the validation loss vouched for.
        kept = lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))
        fourier_keys, fourier_vals = _booster_fourier_arrays(kept)
        keys, _ = _expand_subsets(fourier_keys, fourier_vals, lambda t, s: (-2.0) ** s, min_size=2)
        return widen(keys, est.max_order)


class ProxySPEX(ScreenedEngine, name="proxyspex"):
    """Sparse interactions of order <= ``max_order`` from a tree proxy (Butler et al., 2025).

    0. Working set: above ``screen_k`` players (default 1,000) every step below runs on the
       ``screen_k`` players most correlated with the margin, and a KKT check over all ``n``
       players completes the main effects (:mod:`.screening`).
    1. Proxy: LightGBM trees of depth ``<= max_order`` fitted to the raw target, one thread,
       early-stopped on a ``val_fraction`` split, for each ``(depth, learning rate)`` in the small
       search ``depths`` x ``learning_rates``; the best validation loss wins.
    2. Proposals: every interaction in the exact Fourier spectrum of that ensemble
       (:func:`booster_fourier`), converted to Möbius.
    3. Selection in rounds (:mod:`.selection`): each round ranks the proposals against the residual
       of the current model (the mains and the interactions accepted so far) and tests the top
       ``n_candidates`` and their sub-terms with a Bonferroni score test at familywise
       ``level``, so that almost no false interactions are reported; passing terms enter. A
       ranking, not a cumulative-energy cut, so moderate pairs that hold little of the
       spectrum's energy are kept. When nothing passes, every proposal is ranked again against
       the current residual, then new trees are grown on the residual; accepted terms that
       differ in one member propose their union, and a term may replace several of its
       accepted sub-terms when it fits at least as well. Sub-terms are judged on their own
       evidence against a model that contains their supersets.
    4. Refinement: L1 regression of ``y`` on the Möbius features ``prod_{i in S} x_i`` of the
       mains and accepted interactions, with intercept, penalty by ``cv``-fold cross-validation
       along a short path below the linear datamodel's penalty (down to 0.2 times it); exact
       for any mask density, so designs with ``alpha != 1/2`` need nothing special. All L1
       fits share one Gram matrix per target (:class:`.GramLasso`).
    5. With ``untested="cv"``, prediction need not wait for the tests: the ``n_candidates``
       proposals that rank highest against the tested model's residual without having passed
       (:meth:`_with_untested`) join the refinement's support when cross-validation prefers the
       wider model. They improve prediction where the tests admit little (a low budget, dense
       games); ``tested_`` and the fit tables' ``tested`` column keep them apart from the terms
       that passed a test, which alone carry the engine's error-rate guarantee.
    6. With ``relax=True`` (the default), a relaxed refit of the tested terms (:meth:`_set_fit`):
       the accepted interactions and their members' main effects by least squares, the other
       mains (and untested terms) held at their L1 values, so that a tested term keeps its size
       and is not zeroed by the penalty: ``mobius_``. The L1 refit's coefficients stay beside
       them as ``shrunk_mobius_``, which pruning optimises: trusted at their least-squares size,
       the redundancies made the demo's keep-sets worse (the optimiser's curse), while the sizes
       are truer against retraining (docs/benchmarks.md, "The relaxed refit").

    Trees are fitted to the raw target (not a linear residual) because greedy splits find
    interactions through their members' main effects; the joint refit then shares the variance
    between the dense mains and the few real interactions. The default search is one
    configuration (depth ``max_order``, learning rate 0.3, at most 300 trees): on planted games
    a wider search (learning rate 0.1 as well) gave the same refitted surrogate at twice the
    cost, and capping at 300 trees instead of 1000 lost no planted pair at n = 1000 (the
    interactions are proposed by early trees; late ones chase the small mains).

    Fitted: ``mobius_``, ``shrunk_mobius_`` (the final L1 refit's, which ``mobius_`` is too
    with ``relax=False``), ``fourier_``, ``penalty_`` (the final L1 penalty), ``players_`` (the
    working set), ``kkt_added_`` (players the KKT check added), ``proxy_params_``
    (the chosen tree settings), ``proxy_interactions_`` (interactions in the first proxy's
    spectrum), ``n_candidates_`` (interactions tested), ``tree_rounds_`` (ensembles grown on
    the residual), ``interaction_z_`` (accepted interaction -> its test statistic when it entered),
    ``dropped_terms_`` (accepted terms so small that the penalty would zero them alone),
    ``tested_`` (the interactions that passed a test; with ``relax=False`` the L1 refit may zero
    some, which are then absent from ``mobius_``), ``untested_terms_`` (the
    untested proposals the refinement was given, 0 unless ``untested="cv"`` chose them).
    """

    tests_interactions = True  # an interaction not in ``tested_`` (``untested="cv"``) only predicts

    def __init__(
        self,
        max_order: int = 3,
        depths: tuple[int, ...] | None = None,
        learning_rates: tuple[float, ...] = (0.3,),
        n_estimators: int = 300,
        early_stopping_rounds: int = 30,
        val_fraction: float = 0.2,
        min_child_samples: int = 10,
        n_candidates: int = 100,
        cv: int = 5,
        n_penalties: int = 40,
        level: float = 0.05,
        screen_k: int | None = None,
        random_state: int | None = 0,
        relax: bool = True,
        error_rate: str = "fwer",
        untested: str = "drop",
    ):
        self.max_order = max_order
        self.depths = depths
        self.learning_rates = learning_rates
        self.n_estimators = n_estimators
        self.early_stopping_rounds = early_stopping_rounds
        self.val_fraction = val_fraction
        self.min_child_samples = min_child_samples
        self.n_candidates = n_candidates
        self.cv = cv
        self.n_penalties = n_penalties
        self.level = level
        self.screen_k = screen_k
        self.random_state = random_state
        self.relax = relax
        self.error_rate = error_rate
        self.untested = untested

    def _check_params(self) -> None:
        super()._check_params()
        self._require("max_order", is_integer(self.max_order) and self.max_order >= 1, "be an integer >= 1")
        depths = [] if self.depths is None else as_items(self.depths)  # empty: (max_order,), as None
        self._require("depths", depths is not None and all(is_integer(d) and 1 <= d <= self.max_order for d in depths),
                      f"be None (null) or a list of integers in [1, max_order={self.max_order}]")
        rates = as_items(self.learning_rates)
        self._require("learning_rates", bool(rates) and all(is_real(r) and r > 0 for r in rates),
                      "be a non-empty list of numbers > 0")
        for name in ("n_estimators", "early_stopping_rounds", "n_candidates"):
            self._require(name, is_integer(getattr(self, name)) and getattr(self, name) >= 1, "be an integer >= 1")
        self._require("min_child_samples", is_integer(self.min_child_samples) and self.min_child_samples >= 0,
                      "be an integer >= 0")
        for name in ("val_fraction", "level"):
            self._require(name, is_real(getattr(self, name)) and 0 < getattr(self, name) < 1, "lie in (0, 1)")
        self._require("relax", isinstance(self.relax, (bool, np.bool_)), "be true or false")
        self._require("error_rate", isinstance(self.error_rate, str) and self.error_rate in ("fwer", "fdr"),
                      "be 'fwer' (familywise) or 'fdr' (false discovery rate)")
        self._require("untested", isinstance(self.untested, str) and self.untested in ("drop", "cv"),
                      "be 'drop' (only tested interactions) or 'cv' (untested proposals too, where "
                      "cross-validation prefers them)")

    def _start(self, X: PackedMasks, y: np.ndarray, players: np.ndarray, floor: float) -> None:
        super()._start(X, y, players, floor)
        self._screened = len(players)

    def _finish(self, X: PackedMasks, y: np.ndarray) -> None:
        gram, linear, players = self._gram, self._linear, self.players_
        mains = np.arange(len(players))
        # The trees and the tests look at the screened players; the players that the penalty
        # floor added later are main effects only (see .screening).
        columns = gram.columns(mains[:self._screened])
        proxy = _TreeProxy(self, columns)
        selection = Selection(columns, y, gram, len(players), linear, proxy.proposals, self.max_order,
                              self.n_candidates, self.level, self.error_rate)
        self.proxy_params_, self.proxy_interactions_ = proxy.params, len(selection.proposals)
        accepted, terms, z = selection.run()
        self.n_candidates_, self.tree_rounds_ = len(selection.tested), selection.tree_rounds
        self.tested_ = frozenset(tuple(int(i) for i in players[key[key >= 0]]) for key in accepted)
        tested = len(accepted)
        if self.untested == "cv":
            accepted, terms = self._with_untested(selection, accepted, terms, y)
        self.untested_terms_ = len(accepted) - tested
        del columns, proxy, selection
        penalty, coef, intercept = linear
        if len(accepted):
            support = np.concatenate([mains, terms])
            # A short path down from the linear datamodel's penalty (whose solution, interactions
            # at 0, warm-starts every fold): once interactions explain part of the target the
            # mains want less shrinkage. The chosen penalty was 0.44 to 1 times the linear one
            # on planted games; the path stops at 0.2 (the small penalties cost the most).
            start = np.concatenate([linear[1], np.zeros(len(terms))])
            (penalty, coef, intercept), at_floor = cv_above(gram, support, linear[0] * _SHORT_PATH, self._floor, start)
            self.penalty_at_floor_ |= at_floor
        self.interaction_z_ = {tuple(int(i) for i in players[key[key >= 0]]): float(value)
                               for key, value in zip(accepted, z)}
        self._set_fit(players, mains, _to_global(accepted, players), terms, penalty, coef, intercept, X.n)

    def _with_untested(self, selection: Selection, accepted: np.ndarray, terms: np.ndarray, y: np.ndarray):
        """Step 5: ``(accepted, terms)`` with untested proposals appended when the L1 fit with
        them has the lower cross-validated error, by more than its standard error (both over the
        refinement's penalties).

        The untested terms are the ``n_candidates`` proposals (less the accepted) that score
        highest against the tested model's residual, as each round of the tests ranks them. In
        the cross-validation each fold proposes and chooses its own, from trees grown on its
        training rows and their residual: proposed or chosen on every model, they fitted the
        noise of the rows that judge them (measured: noisy planted games got worse while the
        biased error said better).
        """
        resid, _ = selection.fit(terms)
        gram, linear = self._gram, self._linear

        def chosen(keys: np.ndarray, rows: np.ndarray) -> np.ndarray:
            keys = keys[~rows_in(keys, accepted)]
            on = np.zeros_like(resid)
            on[rows] = resid[rows]
            return best(keys, selection.centred.scores(keys, on, sample=True), self.n_candidates)

        every = np.arange(len(y))
        pools = [chosen(_TreeProxy(self, selection.X[train]).proposals(y[train]), train)
                 for train in (np.setdiff1d(every, rows) for rows in gram.fold_rows)]
        pools.append(chosen(selection.proposals, every))
        if not len(pools[-1]):
            return accepted, terms
        union, index = np.unique(np.concatenate(pools), axis=0, return_inverse=True)
        parts = np.split(index.ravel(), np.cumsum([len(pool) for pool in pools])[:-1])
        extra = gram.add_columns(_design_matrix(selection.X, union) > 0)
        narrow = np.concatenate([np.arange(len(self.players_)), terms])
        supports = [np.concatenate([narrow, extra[part]]) for part in parts[:-1]]
        penalties = allowed_penalties(linear[0] * _SHORT_PATH, self._floor)

        def start(support):
            return np.concatenate([linear[1], np.zeros(len(support) - len(linear[1]))])

        tested = gram.cv_errors(narrow, penalties, start(narrow))[1]
        wider = gram.cv_errors(supports, penalties, [start(s) for s in supports], per_fold=True)[1]
        # Each at its best penalty, fold by fold: the wider model must be better by more than
        # one standard error of the difference, a guard against fold noise. It does not catch
        # masks drawn unlike the held-out ones (shapiq's sampler at n = 100 and 500 masks: gains
        # of 2.1 to 4.2 standard errors where the wider model predicted worse; docs/benchmarks.md).
        gain = tested[:, tested.sum(axis=0).argmin()] - wider[:, wider.sum(axis=0).argmin()]
        if gain.mean() > gain.std(ddof=1) / np.sqrt(len(gain)):
            return np.concatenate([accepted, union[parts[-1]]]), np.concatenate([terms, extra[parts[-1]]])
        return accepted, terms

    def _set_fit(self, players, mains, terms, term_cols, penalty, coef, intercept, n):
        """Step 6 with ``relax`` (after every L1 fit of the terms: the refinement's and the KKT
        check's): the tested terms and their members' mains by least squares, the other mains
        and the untested terms held at their L1 values; the L1 fit itself is ``shrunk_mobius_``.

        The L1 refit shrank the demo's strongest pairs by about a tenth against their retrained
        size, and zeroed some tested redundant pairs outright: moving a redundant pair into its
        members' mains lowers the L1 norm at any penalty (docs/ablation.md, "After the relaxed
        refit"). The members are refitted with their terms, or their shrinkage would move to
        the terms. The other mains keep the L1 fit (left to least squares too, they changed the
        demo's pruning worse still). A term so small that the penalty would zero it alone (an
        orthogonal design's soft threshold, ``|m| var(x_S) <= penalty``) is dropped and the
        rest refitted: what a noiseless game's rounding lets through the tests, at 1e-5.
        """
        self.dropped_terms_ = 0
        if not self.relax:
            return super()._set_fit(players, mains, terms, term_cols, penalty, coef, intercept, n)
        fitted, l1_intercept = np.asarray(coef, dtype=float), intercept
        tested = np.array([tuple(int(p) for p in key if p != _PAD) in self.tested_ for key in terms], dtype=bool)
        coef, keep = fitted.copy(), tested.copy()
        position = {int(p): i for i, p in enumerate(players)}
        columns = np.concatenate([mains, term_cols]).astype(np.int64)
        share = self._gram.columns(term_cols).mean(axis=0) if len(terms) else np.empty(0)
        while keep.any():
            members = np.unique([position[int(p)] for p in terms[keep].ravel() if p != _PAD])
            free = np.concatenate([members, len(mains) + np.flatnonzero(keep)])
            # The other mains, and untested terms (untested="cv"), stay at their L1 values.
            held = np.setdiff1d(np.arange(len(columns)), free)
            coef[len(mains):][tested & ~keep] = 0.0
            coef[free], intercept = self._gram.ols(columns[free], fixed=(columns[held], coef[held]))
            small = keep & (np.abs(coef[len(mains):]) * share * (1 - share) <= penalty)
            if not small.any():
                break
            keep &= ~small
        if not keep.any():
            coef, intercept = fitted, l1_intercept  # no tested term left: the L1 fit, mains and all
        self.dropped_terms_ = int((tested & ~keep).sum())
        final = keep | ~tested
        super()._set_fit(players, mains, terms[final], term_cols[final], penalty,
                         np.concatenate([coef[:len(mains)], coef[len(mains):][final]]), intercept, n)
        self.shrunk_mobius_ = _spectrum(players, terms, fitted, l1_intercept)
