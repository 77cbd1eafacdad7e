"""ProxySPEX, after Butler et al., "ProxySPEX: Inference-Efficient Interpretability via Sparse
Feature Interactions in LLMs" (NeurIPS 2025): gradient-boosted trees of bounded depth are a
proxy whose exact Fourier spectrum names the candidate interactions; tests and a sparse
regression on those candidates then estimate their coefficients."""

from __future__ import annotations

from math import comb
from statistics import NormalDist

import lightgbm as lgb
import numpy as np

from ..packed import PackedMasks, bool_t_dot
from .lasso import cv_above
from .spectra import _PAD, _booster_fourier_arrays, _design_matrix, _expand_subsets
from .surrogate import _MobiusSurrogate, _to_global

# Centred candidate features are scored in column chunks of about this many float32 values.
_CHUNK_VALUES = 1 << 24
# Proposals kept for re-ranking (their centred features at hand), per candidate tested in a round.
_POOL_PER_CANDIDATE = 5
# Models (at most) on which all proposals are ranked, and on which the trees are grown.
_RANK_ROWS, _PROXY_ROWS = 16384, 32768
# Times new trees are grown on the residual when the proposals run dry, and times every
# proposal is ranked again against the current residual when the pool runs dry.
MAX_TREE_ROUNDS, MAX_RERANKS = 5, 4
# The smallest noise scale a test assumes, relative to the margin's standard deviation.
_RESOLUTION = 1e-6


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
        # Beyond _PROXY_ROWS models the trees see an even subsample: they only propose, and
        # every proposal is tested on all models; their cost stops growing with the sweep.
        self._rows = np.arange(0, len(X), -(-len(X) // _PROXY_ROWS))
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
            if not 1 <= depth <= est.max_order:
                raise ValueError(f"ProxySPEX: depth {depth} is outside [1, max_order={est.max_order}]")
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
        return _widen(keys, est.max_order)


class _CentredTerms:
    """Scores of terms against residuals: ``|<r, c_S>| / ||c_S||`` with the centred feature
    ``c_S = prod_{i in S} (x_i - mean_i)``.

    How much of what the model leaves unexplained each term would explain: the proxy proposes
    terms, this ranks them, and divided by the noise scale it is each term's test statistic.
    Ranking by the proxy's own coefficients instead put planted pairs behind hundreds of
    spurious higher-order terms (each leaf gives all subsets of its path equal Möbius weight);
    ranking by this score put them near the top. The centred columns are made once (float32,
    one row per player, a row of ones standing in for padding).
    """

    def __init__(self, X: np.ndarray):
        self.mean = X.mean(axis=0)
        self._rows = np.vstack([(X - self.mean).T, np.ones((1, len(X)))]).astype(np.float32)

    def features(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The terms' centred features (float32 ``[len(keys), m]``) and their norms."""
        index = np.where(keys == _PAD, len(self._rows) - 1, keys)
        features = self._rows[index[:, 0]]
        for j in range(1, index.shape[1]):
            features *= self._rows[index[:, j]]
        return features, np.sqrt(np.einsum("ij,ij->i", features, features, dtype=float))

    def scores(self, keys: np.ndarray, resid: np.ndarray, sample: bool = False) -> np.ndarray:
        """Scores against ``resid``; with ``sample``, on at most ``_RANK_ROWS`` evenly spaced
        models: enough to rank thousands of proposals, which are then tested on all of them."""
        rows = self._rows
        if sample and rows.shape[1] > _RANK_ROWS:
            every = -(-rows.shape[1] // _RANK_ROWS)
            rows, resid = rows[:, ::every], resid[::every]
        out = np.empty(len(keys))
        chunk = max(16, _CHUNK_VALUES // rows.shape[1])
        index = np.where(keys == _PAD, len(rows) - 1, keys)
        for start in range(0, len(keys), chunk):
            part = index[start:start + chunk]
            features = rows[part[:, 0]]
            for j in range(1, part.shape[1]):
                features *= rows[part[:, j]]
            norms = np.sqrt(np.einsum("ij,ij->i", features, features, dtype=float))
            out[start:start + chunk] = _scored(features, norms, resid)
        return out


def _scored(features: np.ndarray, norms: np.ndarray, resid: np.ndarray) -> np.ndarray:
    # A constant feature (a player never or always kept) explains nothing: score 0.
    numerators = np.abs(features @ resid.astype(np.float32))
    return np.where(norms > 0, numerators / np.where(norms > 0, norms, 1.0), 0.0)


def _has_superset(keys: np.ndarray, among: np.ndarray) -> np.ndarray:
    """Bool per key row: is it a proper subset of some row flagged in ``among``?"""
    sets = [frozenset(row[row != _PAD].tolist()) for row in keys]
    flagged = [sets[i] for i in np.flatnonzero(among)]
    return np.array([any(s < other for other in flagged) for s in sets], dtype=bool)


class ProxySPEX(_MobiusSurrogate):
    """Sparse interactions of order <= ``max_order`` from a tree proxy (Butler et al., 2025).

    0. Working set: above ``screen_k`` players (default 1,000) every step below runs on the
       ``screen_k`` players most correlated with the margin, and a KKT check over all ``n``
       players completes the main effects (:mod:`.screening`).
    1. Proxy: LightGBM trees of depth ``<= max_order`` fitted to the raw target, one thread,
       early-stopped on a ``val_fraction`` split, for each ``(depth, learning rate)`` in the small
       search ``depths`` x ``learning_rates``; the best validation loss wins.
    2. Proposals: every interaction in the exact Fourier spectrum of that ensemble
       (:func:`booster_fourier`), converted to Möbius.
    3. Selection in rounds (``_select``): each round ranks the proposals against the residual
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
       along a short path below the linear datamodel's penalty; exact for any mask density, so
       designs with ``alpha != 1/2`` need nothing special. All L1 fits share one Gram matrix
       per target (:class:`.GramLasso`).

    Trees are fitted to the raw target (not a linear residual) because greedy splits find
    interactions through their members' main effects; the joint refit then shares the variance
    between the dense mains and the few real interactions. The default search is one
    configuration (depth ``max_order``, learning rate 0.3, at most 300 trees): on planted games
    a wider search (learning rate 0.1 as well) gave the same refitted surrogate at twice the
    cost, and capping at 300 trees instead of 1000 lost no planted pair at n = 1000 (the
    interactions are proposed by early trees; late ones chase the small mains).

    Fitted: ``mobius_``, ``fourier_``, ``alpha_`` (the final L1 penalty), ``players_`` (the
    working set), ``kkt_added_`` (players the KKT check added), ``proxy_params_``
    (the chosen tree settings), ``proxy_interactions_`` (interactions in the first proxy's
    spectrum), ``n_candidates_`` (interactions tested), ``tree_rounds_`` (ensembles grown on
    the residual), ``interaction_z_`` (accepted interaction -> its test statistic when it entered).
    """

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
        n_alphas: int = 40,
        level: float = 0.05,
        screen_k: int | None = None,
        random_state: int | None = 0,
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
        self.n_alphas = n_alphas
        self.level = level
        self.screen_k = screen_k
        self.random_state = random_state

    def _start(self, X: PackedMasks, y: np.ndarray, players: np.ndarray, floor: float) -> None:
        if self.max_order < 1:
            raise ValueError(f"ProxySPEX: max_order must be >= 1; got {self.max_order}")
        super()._start(X, y, players, floor)
        self._screened = len(players)

    def _finish(self, X: PackedMasks, y: np.ndarray) -> None:
        gram, linear, players = self._gram, self._linear, self.players_
        mains = np.arange(len(players))
        # The trees and the tests look at the screened players; the players that the penalty
        # floor added later are main effects only (see .screening).
        columns = gram.columns(mains[:self._screened])
        accepted, terms = self._select(columns, y, gram, linear)
        del columns
        alpha, coef, intercept = linear
        if len(accepted):
            support = np.concatenate([mains, terms])
            (alpha, coef, intercept), at_floor = cv_above(gram, support, linear[0] * np.geomspace(1.0, 0.05, 12),
                                                          self._floor)
            self.penalty_at_floor_ |= at_floor
        self.interaction_z_ = {tuple(int(i) for i in players[key[key != _PAD]]): z
                               for key, z in zip(accepted, self._accepted_z)}
        self._set_fit(players, mains, _to_global(accepted, players), terms, alpha, coef, intercept, X.n)

    def _select(self, X: np.ndarray, y: np.ndarray, gram, linear) -> tuple[np.ndarray, np.ndarray]:
        """The interactions that pass their tests, and their columns in ``gram``.

        Rounds. Each round ranks the proposals against the residual ``r`` of the current model
        (the mains plus the interactions accepted so far, L1 at the linear datamodel's penalty
        ``linear[0]``) by ``|<r, c_S>| / ||c_S||``, takes the top ``n_candidates`` with all their
        sub-terms, and tests each: ``z_S = <r, c_S> / (sigma ||c_S||)``, with
        ``c_S = prod_{i in S} (x_i - mean_i)`` the part of ``S`` that its sub-terms cannot
        explain (orthogonal to every other such feature for independent mask entries, at any
        alpha) and ``sigma^2 = RSS / (m - nonzeros - 1)``. Passing terms enter and the model is
        refitted: strong terms leave the residual first, and weaker ones are judged against
        less unexplained signal. When nothing passes, new trees are grown on the residual and
        their proposals join (up to ``MAX_TREE_ROUNDS`` times); when those bring nothing that
        passes, selection ends.

        Sub-terms are judged on their own evidence: a passing term whose passing superset has
        not entered yet waits one round, so that it is tested against a model that contains the
        superset (``x_i x_j x_k`` carries ``mean_k c_ij``, as detectable as the pair's own
        signal, until the triple is in the model). At the end each accepted term with an
        accepted superset is tested again without itself and dropped if it fails. (Before,
        every subset of an accepted term was kept out for good: a hierarchical triple came back
        as the triple alone, at 0.80 for a true 0.5, with its pairs at 0 at any number of models.)

        Multiplicity: a term's statistic does not depend on which other terms were proposed or
        in which round, so the trees' and the ranking's choices on the same data are covered by
        correcting for every subset of its order, ``C(n, k)``. ``level / (max_order - 1)`` per
        order is shared by that family and, equally, by smaller ones a term may belong to (a
        union bound): the hereditary family, terms all of whose members have clearly non-zero
        main effects (familywise over the ``n`` mains), ``C(n_strong, k)`` of them; and for
        ``k >= 3`` the extensions of accepted terms of order ``k - 1``, ``n - k + 1`` each.
        The mains' statistics use features orthogonal to the terms' (independent entries), so
        choosing a family this way does not bias the terms' tests; and in retraining games the
        near-duplicates and complements that interact are examples that matter alone too.
        A joint L1 fit over all candidates, debiased, was tried first: its estimates of null
        candidates were inflated by the other candidates, and 2-6 false pairs per target got
        through on planted games.
        """
        m, n = X.shape  # the screened players, whose terms are proposed and tested
        centred = _CentredTerms(X)
        mean, spread = centred.mean, y.std()
        per_order = self.level / max(self.max_order - 1, 1)
        mains = np.arange(len(self.players_))  # every main effect of the working set, in gram
        accepted = np.empty((0, self.max_order), dtype=np.int64)
        columns = np.empty(0, dtype=np.int64)  # of the accepted terms, in gram

        def fit(keys_cols):
            """Residual and noise scale of the model of the mains plus the terms in those
            ``gram`` columns: least squares on the mains that L1 at the linear datamodel's
            penalty keeps, and the terms. Unshrunk, so that a term in the model leaves none of
            its signal to its sub-terms' tests."""
            support = np.concatenate([mains, keys_cols])
            coef = gram.fit(support, linear[0])[0] if len(keys_cols) else linear[1]
            active = np.concatenate([mains[coef[:len(mains)] != 0], keys_cols])
            resid = gram.residual(active, *gram.ols(active))
            # A residual below _RESOLUTION of the margin's spread is rounding (a noiseless game
            # fitted exactly), not signal: tests against it would pass anything.
            return resid, max(np.sqrt(resid @ resid / (m - len(active) - 1)), _RESOLUTION * spread)

        # Heredity: mains clearly non-zero (debiased like the terms, familywise over n) name a
        # small family of interactions among their players.
        resid, sigma = fit(columns)
        norm = np.sqrt(m * mean * (1 - mean))  # of the centred 0/1 columns
        along = bool_t_dot(X, resid[:, None])[:, 0] - mean * resid.sum()
        main_z = np.abs(linear[1][:n] * norm + along / np.where(norm > 0, norm, 1)) / sigma
        strong = main_z > _z_bonferroni(self.level, n)
        n_strong = int(strong.sum())

        def critical(keys):
            """Per term: the lowest critical value among the families it belongs to."""
            orders = (keys != _PAD).sum(axis=1)
            parents = [frozenset(row[row != _PAD].tolist()) for row in accepted]
            crit = np.empty(len(keys))
            for i, (k, row) in enumerate(zip(orders, keys)):
                members = frozenset(row[row != _PAD].tolist())
                k = int(k)
                share = per_order / (2 if k == 2 else 3)
                families = [comb(n, k)] + ([comb(n_strong, k)] if strong[list(members)].all() else [])
                extended = [p for p in parents if len(p) == k - 1]
                if k > 2 and any(p < members for p in extended):
                    families.append(len(extended) * (n - k + 1))
                crit[i] = min(_z_bonferroni(share, size) for size in families)
            return crit


        proxy = _TreeProxy(self, X)
        proposals = proxy.proposals(y)
        self.proxy_params_, self.proxy_interactions_ = proxy.params, len(proposals)

        def rank(keys, resid):
            """The proposals most worth a look against ``resid``, with their centred features:
            the pool each round re-ranks."""
            keys = keys[~_rows_in(keys, accepted)]
            keys = _best(keys, centred.scores(keys, resid, sample=True), _POOL_PER_CANDIDATE * self.n_candidates)
            return (keys, *centred.features(keys))

        pool = rank(proposals, resid)
        tested, tried, by_merge, accepted_z, tree_rounds, reranks = set(), set(), {}, [], 0, 0
        fresh_pool = grown = True  # this pool was ranked against this residual; trees just grown
        while True:
            resid, sigma = fit(columns)
            pool_keys, pool_features, pool_norms = pool
            fresh = ~_rows_in(pool_keys, accepted)
            top = _best(pool_keys[fresh], _scored(pool_features[fresh], pool_norms[fresh], resid), self.n_candidates)
            # A proposed triple brings its pairs, so each is tested on its own (and theirs, in
            # turn, when they rank).
            candidates = _with_subterms(top)
            candidates = candidates[~_rows_in(candidates, accepted)]
            tested.update(map(tuple, candidates.tolist()))
            z = centred.scores(candidates, resid) / sigma
            passing = z > critical(candidates)
            new = passing & ~_has_superset(candidates, passing)
            if new.any():
                # Hierarchy: accepted terms that share all members but one propose their union.
                proposals = np.concatenate([proposals, _completions(accepted, candidates[new], self.max_order)])
                accepted = np.concatenate([accepted, candidates[new]])
                accepted_z.extend(z[new])
                columns = np.concatenate([columns, gram.add_columns(_design_matrix(X, candidates[new]) > 0)])
                fresh_pool = grown = False
                continue
            merged = self._merge(candidates, accepted, columns, accepted_z, fit, tried, X, gram, centred)
            if merged is not None:
                replaced = {tuple(row) for row in accepted.tolist()}
                accepted, columns, accepted_z = merged
                by_merge[tuple(accepted[-1].tolist())] = replaced - {tuple(row) for row in accepted.tolist()}
                fresh_pool = grown = False
                continue
            if not fresh_pool and reranks < MAX_RERANKS:
                # The pool ran dry: rank every proposal against the current residual (a term
                # masked by the others at the start may stand out now).
                pool, fresh_pool, reranks = rank(proposals, resid), True, reranks + 1
                continue
            if grown or tree_rounds == MAX_TREE_ROUNDS:
                break
            # Every proposal ran dry: trees on the residual look for what the model still lacks.
            extra = proxy.proposals(resid)
            extra = extra[~_rows_in(extra, proposals)]
            if not len(extra):
                break
            proposals = np.concatenate([proposals, extra])
            pool = rank(proposals, resid)
            tree_rounds, grown = tree_rounds + 1, True
        keep = np.ones(len(accepted), dtype=bool)
        # A merged term whose replaced sub-terms all came back in on their own evidence stands
        # on its test like any other term.
        rows = {tuple(row) for row in accepted.tolist()}
        merged = np.array([tuple(row) in by_merge and by_merge[tuple(row)] <= rows for row in accepted.tolist()],
                          dtype=bool)
        for i in np.flatnonzero(_has_superset(accepted, keep) | merged):
            keep[i] = False
            resid, sigma = fit(columns[keep])
            keep[i] = centred.scores(accepted[i:i + 1], resid)[0] / sigma > critical(accepted[i:i + 1])[0]
        self.n_candidates_, self.tree_rounds_ = len(tested), tree_rounds
        self._accepted_z = [z for z, k in zip(accepted_z, keep) if k]
        return accepted[keep], columns[keep]

    @staticmethod
    def _merge(candidates, accepted, columns, accepted_z, fit, tried, X, gram, centred):
        """One term in place of two or more of its accepted sub-terms, when it alone fits at
        least as well; ``(accepted, columns, accepted_z)`` after it, or None.

        Several accepted sub-terms of one proposal are what a real higher-order term leaves on
        its sub-pairs while its own test is still out of reach (a pure triple shows as its three
        pairs at ``alpha`` times its size): fewer terms, no worse a fit. The sub-terms are not
        locked out: each is tested again, on its own evidence, against the model with the
        merged term; a merged term whose sub-terms all came back is tested again at the end.
        """
        resid, sigma = fit(columns)
        for row, parts in _merge_candidates(candidates, accepted):
            attempt = (tuple(row.tolist()), tuple(np.flatnonzero(parts)))
            if attempt in tried:
                continue
            tried.add(attempt)
            column = gram.add_columns(_design_matrix(X, row[None]) > 0)
            trial_resid, _ = fit(np.concatenate([columns[~parts], column]))
            if trial_resid @ trial_resid <= resid @ resid:
                z = centred.scores(row[None], resid)[0] / sigma
                return (np.concatenate([accepted[~parts], row[None]]), np.concatenate([columns[~parts], column]),
                        [v for v, part in zip(accepted_z, parts) if not part] + [z])
        return None


def _merge_candidates(candidates: np.ndarray, accepted: np.ndarray):
    """Candidates of order > 2 with at least two accepted proper subsets: ``(row, parts)``."""
    sets = [frozenset(row[row != _PAD].tolist()) for row in accepted]
    for row in candidates[(candidates != _PAD).sum(axis=1) > 2]:
        members = frozenset(row[row != _PAD].tolist())
        parts = np.array([other < members for other in sets], dtype=bool)
        if parts.sum() >= 2:
            yield row, parts


def _completions(accepted: np.ndarray, new: np.ndarray, max_order: int) -> np.ndarray:
    """Sets of ``k + 1 <= max_order`` players that unite a ``new`` term of order ``k`` with
    another accepted one of that order (``{i,j}`` and ``{j,l}`` give ``{i,j,l}``), as key rows.

    Trees grown on a residual cannot propose what the model lacks when it is a pure
    higher-order part (its sub-terms already in the model leave it no main effect to split
    on); a real triple's pairs, once accepted, name it instead.
    """
    sets = [frozenset(row[row != _PAD].tolist()) for row in np.concatenate([accepted, new])]
    fresh = sets[len(accepted):]
    united = {tuple(sorted(a | b)) for a in fresh for b in sets
              if len(a) == len(b) < max_order and len(a | b) == len(a) + 1}
    keys = np.full((len(united), max_order), _PAD, dtype=np.int64)
    for row, members in zip(keys, sorted(united)):
        row[max_order - len(members):] = members
    return keys


def _widen(keys: np.ndarray, width: int) -> np.ndarray:
    """Key rows padded on the left to ``width`` columns."""
    out = np.full((len(keys), width), _PAD, dtype=np.int64)
    if keys.shape[1]:
        out[:, width - keys.shape[1]:] = keys[:, -width:]
    return out


def _rows_in(keys: np.ndarray, among: np.ndarray) -> np.ndarray:
    """Bool per row of ``keys``: does it appear in ``among``?"""
    if not len(among) or not len(keys):
        return np.zeros(len(keys), dtype=bool)
    known = set(map(tuple, among.tolist()))
    return np.array([row in known for row in map(tuple, keys.tolist())], dtype=bool)


def _best(keys: np.ndarray, scores: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` rows of largest score, best first."""
    if count < len(keys):
        top = np.argpartition(-scores, count - 1)[:count]
        return keys[top[np.argsort(-scores[top], kind="stable")]]
    return keys[np.argsort(-scores, kind="stable")]


def _with_subterms(keys: np.ndarray) -> np.ndarray:
    """``keys`` and every term one member smaller (of order >= 2), each once."""
    parts = [keys]
    for j in range(keys.shape[1]):
        smaller = keys[(keys[:, j] != _PAD) & ((keys != _PAD).sum(axis=1) > 2)].copy()
        smaller[:, j] = _PAD
        parts.append(np.sort(smaller, axis=1))
    return np.unique(np.concatenate(parts), axis=0)


def _z_bonferroni(level: float, tests: int) -> float:
    """Two-sided normal critical value for ``tests`` tests at familywise ``level``."""
    return NormalDist().inv_cdf(1 - level / (2 * tests))
