"""Sparse interaction surrogates of retraining games: ProxySPEX and the linear datamodel.

A retraining game maps a mask ``x in {0,1}^n`` (1 = player kept in the training set) to one
target's margin. Two surrogates of that map are fitted here from ``(masks, margins)`` arrays:

- :class:`LinearDatamodel`, the datamodel of Ilyas et al., "Datamodels: Predicting Predictions
  from Training Data" (ICML 2022): an L1-regularised linear regression of the margin on the mask.
- :class:`ProxySPEX`, after Butler et al., "ProxySPEX: Inference-Efficient Interpretability via
  Sparse Feature Interactions in LLMs" (NeurIPS 2025): gradient-boosted trees of bounded depth
  are a proxy whose exact Fourier spectrum names the candidate interactions; a sparse regression
  on those candidates then estimates their coefficients.

Conventions (``DESIGN.md``): Fourier ``f(x) = sum_k F(k) (-1)^<k,x>``; Möbius
``f(x) = sum_{S subset of kept(x)} m(S)``. Spectra are dicts from a sorted tuple of player
indices (``()`` for the constant) to a coefficient. Internally they are ``(keys, vals)`` arrays:
``keys`` int64 ``[K, d]`` with each row's members sorted ascending after ``-1`` padding, so that
every transform below is a vectorised pass over subsets of rows instead of a loop over dicts.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from math import comb
from multiprocessing import get_context
from statistics import NormalDist

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.linear_model import Lasso, LassoCV
from sklearn.model_selection import KFold
from tqdm.auto import tqdm

_PAD = -1
# Float dust left by cancelling tree contributions is dropped relative to the largest coefficient.
_REL_TOL = 1e-12
MIN_MODELS = 20

# ---------------------------------------------------------------------------------------------
# Validation


def _check_masks(X, name: str = "X", n: int | None = None) -> np.ndarray:
    """Return ``X`` as a bool ``[m, n]`` array, or raise naming what is wrong."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D mask array [models, players]; got shape {X.shape}")
    if X.dtype != bool:
        if not np.issubdtype(X.dtype, np.number):
            raise ValueError(f"{name} must hold 0/1 or bool mask entries; got dtype {X.dtype}")
        bad = ~np.isin(X, (0, 1))
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise ValueError(
                f"{name} must hold only 0/1 (1 = kept); found {X[r, c].item()!r} at row {r}, column {c}"
            )
        X = X.astype(bool)
    if n is not None and X.shape[1] != n:
        raise ValueError(f"{name} has {X.shape[1]} players but the model was fitted on {n}")
    return X


def _check_fit_input(X, y, estimator: str, min_models: int = MIN_MODELS):
    X = _check_masks(X)
    y = np.asarray(y, dtype=float)
    if y.ndim != 1:
        raise ValueError(f"{estimator}.fit: y must be 1-D [models]; got shape {y.shape}")
    if y.shape[0] != X.shape[0]:
        raise ValueError(
            f"{estimator}.fit: X has {X.shape[0]} models (rows) but y has {y.shape[0]} values"
        )
    if not np.isfinite(y).all():
        i = int(np.flatnonzero(~np.isfinite(y))[0])
        raise ValueError(f"{estimator}.fit: y must be finite; y[{i}] = {y[i]}")
    if X.shape[0] < min_models:
        raise ValueError(
            f"{estimator}.fit needs at least {min_models} models for its validation split and "
            f"cross-validation; got {X.shape[0]}"
        )
    if np.ptp(y) == 0:
        raise ValueError(f"{estimator}.fit: y is constant ({y[0]}); there is nothing to attribute")
    return X, y


# ---------------------------------------------------------------------------------------------
# Sparse spectra as arrays


def _to_arrays(spectrum: dict) -> tuple[np.ndarray, np.ndarray]:
    width = max((len(k) for k in spectrum), default=0)
    keys = np.full((len(spectrum), width), _PAD, dtype=np.int64)
    for r, members in enumerate(spectrum):
        if members:
            keys[r, width - len(members) :] = sorted(members)
    return keys, np.fromiter(spectrum.values(), dtype=float, count=len(spectrum))


def _to_dict(keys: np.ndarray, vals: np.ndarray) -> dict[tuple[int, ...], float]:
    return {tuple(int(i) for i in row if i != _PAD): float(v) for row, v in zip(keys, vals)}


def _aggregate(keys: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum the values of equal key rows; drop float dust."""
    if len(keys) == 0:
        return keys, vals
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    sums = np.bincount(inverse.ravel(), weights=vals, minlength=len(uniq))
    keep = np.abs(sums) > _REL_TOL * np.abs(sums).max()
    return uniq[keep], sums[keep]


def _expand_subsets(members, coef, weight, signs=None, min_size=0, max_size=None):
    """``out[A] = sum_r coef[r] * weight(|T_r|, |A|) * prod_{j in A} signs[r, j]`` over ``A subset T_r``.

    ``T_r`` is row ``r`` of ``members`` (padded with ``-1``). Every sparse transform of this module
    (tree leaves to Fourier, Fourier <-> Möbius, Möbius to interaction indices) is this one sum
    with a different weight, so it is written once, as one vectorised pass per subset pattern of
    the ``d`` columns.
    """
    members = np.asarray(members, dtype=np.int64)
    coef = np.asarray(coef, dtype=float)
    rows, d = members.shape
    max_size = d if max_size is None else min(max_size, d)
    present = members != _PAD
    t_size = present.sum(axis=1)
    out_keys, out_vals = [], []
    for pattern in range(1 << d):
        chosen = np.array([(pattern >> j) & 1 for j in range(d)], dtype=bool)
        s = int(chosen.sum())
        if s < min_size or s > max_size:
            continue
        valid = present[:, chosen].all(axis=1)
        if not valid.any():
            continue
        val = coef[valid] * weight(t_size[valid], s)
        if signs is not None and s:
            val = val * np.prod(signs[valid][:, chosen], axis=1)
        out_keys.append(np.where(chosen, members[valid], _PAD))
        out_vals.append(val)
    if not out_keys:
        return np.empty((0, max(max_size, 0)), dtype=np.int64), np.empty(0)
    keys = np.sort(np.concatenate(out_keys), axis=1)[:, d - max_size :]
    return _aggregate(keys, np.concatenate(out_vals))


def _design_matrix(X: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Columns ``prod_{i in S} x_i`` (Möbius features) for each key row ``S``, as float64."""
    # A trailing column of ones stands in for the padding, so every key row is a plain gather.
    padded = np.hstack([X, np.ones((X.shape[0], 1))])
    index = np.where(keys == _PAD, X.shape[1], keys)
    phi = np.ones((X.shape[0], len(keys)))
    for j in range(keys.shape[1]):
        phi *= np.take(padded, index[:, j], axis=1)
    return phi


# ---------------------------------------------------------------------------------------------
# Conversions and indices (closed forms from the Möbius transform)


def mobius_to_fourier(mobius: dict) -> dict:
    """``F(A) = (-1)^|A| sum_{S superset A} 2^-|S| m(S)``, from ``x_i = (1 - (-1)^x_i) / 2``."""
    keys, vals = _to_arrays(mobius)
    return _to_dict(*_expand_subsets(keys, vals, lambda t, s: 0.5**t * (-1.0) ** s))


def fourier_to_mobius(fourier: dict) -> dict:
    """``m(S) = sum_{k superset S} (-2)^|S| F(k)`` (DESIGN.md)."""
    keys, vals = _to_arrays(fourier)
    return _to_dict(*_expand_subsets(keys, vals, lambda t, s: (-2.0) ** s))


def mobius_predict(mobius: dict, X) -> np.ndarray:
    """Evaluate ``f(x) = sum_{S subset kept(x)} m(S)`` on masks ``X [m, n]``."""
    X = _check_masks(X)
    keys, vals = _to_arrays(mobius)
    if keys.size and keys.max() >= X.shape[1]:
        raise ValueError(
            f"mobius has player {keys.max()} but X has only {X.shape[1]} players (columns)"
        )
    return _design_matrix(X, keys) @ vals


def shapley_interaction_index(mobius: dict, order: int = 2) -> dict:
    """Shapley interaction index (Grabisch 1997) of every ``S`` with ``1 <= |S| <= order``.

    ``SII(S) = sum_{T superset S} m(T) / (|T| - |S| + 1)``.
    """
    keys, vals = _to_arrays(mobius)
    return _to_dict(*_expand_subsets(keys, vals, lambda t, s: 1.0 / (t - s + 1), min_size=1, max_size=order))


def banzhaf_interaction_index(mobius: dict, order: int = 2) -> dict:
    """Banzhaf interaction index of every ``S`` with ``1 <= |S| <= order``.

    ``BII(S) = sum_{T superset S} m(T) / 2^(|T| - |S|)``.
    """
    keys, vals = _to_arrays(mobius)
    return _to_dict(*_expand_subsets(keys, vals, lambda t, s: 0.5 ** (t - s), min_size=1, max_size=order))


def _first_order(index: dict, n: int) -> np.ndarray:
    values = np.zeros(n)
    for (i,), v in index.items():
        values[i] = v
    return values


def shapley_values(mobius: dict, n: int) -> np.ndarray:
    """Shapley value of each of ``n`` players: ``phi_i = sum_{T containing i} m(T) / |T|``."""
    return _first_order(shapley_interaction_index(mobius, order=1), n)


def banzhaf_values(mobius: dict, n: int) -> np.ndarray:
    """Banzhaf value of each of ``n`` players: ``b_i = sum_{T containing i} m(T) / 2^(|T|-1)``."""
    return _first_order(banzhaf_interaction_index(mobius, order=1), n)


# ---------------------------------------------------------------------------------------------
# Exact spectrum of a LightGBM ensemble


def _absent_present_children(node: dict) -> tuple[dict, dict] | None:
    """Children reached by ``x_i = 0`` and ``x_i = 1``; ``None`` when both reach the same child.

    Decided per split from LightGBM's own routing rule rather than assumed from the threshold, so
    missing-value handling (``missing_type == "Zero"`` sends 0 the default way) stays exact.
    """
    if node["decision_type"] != "<=":
        raise ValueError(
            f"unexpected split decision_type {node['decision_type']!r} on feature "
            f"{node['split_feature']}: masks are numeric 0/1, only '<=' splits are expected"
        )

    def goes_left(value: float) -> bool:
        if value == 0.0 and node["missing_type"] == "Zero":
            return bool(node["default_left"])
        return value <= node["threshold"]

    left0, left1 = goes_left(0.0), goes_left(1.0)
    if left0 == left1:
        return None
    kids = (node["left_child"], node["right_child"])
    return kids if left0 else kids[::-1]


def _leaf_paths(tree: dict):
    """Yield ``(leaf value, {feature: +1 absent / -1 present})`` for every reachable leaf."""
    stack = [(tree, {})]
    while stack:
        node, path = stack.pop()
        if "leaf_value" in node:
            yield node["leaf_value"], path
            continue
        children = _absent_present_children(node)
        if children is None:
            stack.append((node["left_child"], path))
            continue
        feature = node["split_feature"]
        for child, sign in zip(children, (1, -1)):
            if path.get(feature, sign) == sign:  # a contradicting repeat makes the leaf unreachable
                stack.append((child, {**path, feature: sign}))


def _booster_fourier_arrays(booster: lgb.Booster) -> tuple[np.ndarray, np.ndarray]:
    """Exact Fourier spectrum of a LightGBM regression ensemble on 0/1 inputs, as arrays.

    Unrolling the split recursion ``F[k] = (L[k]+R[k])/2, F[k+{i}] = (L[k]-R[k])/2`` (DESIGN.md)
    gives a leaf's contribution in closed form: the leaf indicator is
    ``prod_{i on path} (1 + s_i (-1)^x_i) / 2`` with ``s_i = +1`` on the absent side, so a leaf of
    value ``v`` at depth ``t`` adds ``v 2^-t prod_{i in A} s_i`` to ``F(A)`` for every ``A``
    subset of its path. All leaves of all trees are expanded together in one vectorised pass.
    """
    values, paths = [], []
    for tree in booster.dump_model()["tree_info"]:
        for value, path in _leaf_paths(tree["tree_structure"]):
            values.append(value)
            paths.append(path)
    depth = max((len(p) for p in paths), default=0)
    members = np.full((len(paths), depth), _PAD, dtype=np.int64)
    signs = np.ones((len(paths), depth))
    for r, path in enumerate(paths):
        members[r, : len(path)] = list(path.keys())
        signs[r, : len(path)] = list(path.values())
    return _expand_subsets(members, np.asarray(values), lambda t, s: 0.5**t, signs=signs)


def booster_fourier(booster: lgb.Booster) -> dict:
    """Exact Fourier spectrum of a LightGBM booster trained on 0/1 features (see above)."""
    return _to_dict(*_booster_fourier_arrays(booster))


# ---------------------------------------------------------------------------------------------
# Estimators


def _lasso_cv(phi: np.ndarray, y: np.ndarray, folds: KFold, n_alphas: int) -> LassoCV:
    """L1 regression with intercept, lambda chosen on held-out folds along a regularisation path."""
    return LassoCV(alphas=n_alphas, cv=folds, precompute=True, max_iter=5000, tol=1e-4).fit(phi, y)


def _folds(cv: int, random_state) -> KFold:
    return KFold(cv, shuffle=True, random_state=random_state)


def _refit(X, y, support: np.ndarray, n: int, linear: LassoCV, folds: KFold | None = None):
    """``(coef, intercept, penalty)`` of an L1 fit on ``support`` (the ``n`` mains first).

    The penalty is the linear datamodel's, or with ``folds`` the best by cross-validation on a
    short path below it: once interactions explain part of the target the mains want less
    shrinkage (held-out R^2 0.716 at the linear penalty, 0.75 re-chosen, n = 100, 500 models
    in bench_fit), and the short path costs a fraction of the first search. Interactions are
    penalised like the mains: left unpenalised, a true pair that only just passed its test
    kept its upward noise (1.93 for a planted 1.0, n = 1000, noise 1x) and the surrogate fell
    below the linear datamodel.
    """
    if len(support) == n:
        return linear.coef_, linear.intercept_, linear.alpha_
    phi = _design_matrix(X, support)
    if folds is None:
        lasso = Lasso(linear.alpha_, precompute=True, max_iter=5000, tol=1e-4).fit(phi, y)
        return lasso.coef_, lasso.intercept_, linear.alpha_
    path = linear.alpha_ * np.geomspace(0.05, 1.0, 12)
    lasso = LassoCV(alphas=path, cv=folds, precompute=True, max_iter=5000, tol=1e-4).fit(phi, y)
    return lasso.coef_, lasso.intercept_, lasso.alpha_


class _MobiusSurrogate(RegressorMixin, BaseEstimator):
    """Shared state of fitted surrogates: a sparse Möbius spectrum and what follows from it."""

    def _set_spectrum(self, keys: np.ndarray, coef: np.ndarray, intercept: float, n: int):
        keep = coef != 0
        self.n_players_ = n
        self.mobius_ = {(): float(intercept), **_to_dict(keys[keep], coef[keep])}
        self.fourier_ = mobius_to_fourier(self.mobius_)
        self._keys, self._vals = _to_arrays(self.mobius_)

    def predict(self, X) -> np.ndarray:
        X = _check_masks(X, n=self.n_players_)
        return _design_matrix(X, self._keys) @ self._vals

    def top_interactions(self, k: int = 20, order: int | None = None) -> pd.DataFrame:
        """The ``k`` largest Möbius terms by magnitude (all orders >= 1, or only ``order``)."""
        return interaction_table(self.mobius_, order=order).head(k).reset_index(drop=True)


def interaction_table(mobius: dict, order: int | None = None) -> pd.DataFrame:
    """Non-constant Möbius terms sorted by ``|m|``: columns members, order, mobius, kind.

    ``kind`` is ``main`` for single players. For an interaction ``S`` (pair or triple) it compares
    ``m(S)`` with the sum of its members' main effects ``M = sum_{i in S} m({i})``: same sign as
    ``M`` means the members do more together than the sum of their parts (``synergy``), opposite
    sign means together they do less, each covering for the others (``redundancy``). Comparing with
    the *sum* is how mixed-sign mains are handled: the pair is judged against its members' net
    additive effect, the direction in which removing both would move the margin. When ``M`` is 0
    (no surviving main effects) the members matter only together, which is ``synergy``.
    """
    mains = {k[0]: v for k, v in mobius.items() if len(k) == 1}
    rows = []
    for members, value in mobius.items():
        if not members or (order is not None and len(members) != order):
            continue
        if len(members) == 1:
            kind = "main"
        else:
            net = sum(mains.get(i, 0.0) for i in members)
            kind = "redundancy" if net * value < 0 else "synergy"
        rows.append((list(members), len(members), value, kind))
    table = pd.DataFrame(rows, columns=["members", "order", "mobius", "kind"])
    return table.iloc[np.argsort(-table["mobius"].abs().to_numpy(), kind="stable")]


class LinearDatamodel(_MobiusSurrogate):
    """Linear datamodel of Ilyas et al. (2022): ``y ~ b + sum_i w_i x_i`` with an L1 penalty.

    The penalty is chosen by ``cv``-fold cross-validation along a path of ``n_alphas`` values
    (models held out of each fold judge each lambda), then refitted on all models.
    """

    def __init__(self, cv: int = 5, n_alphas: int = 40, random_state: int | None = 0):
        self.cv = cv
        self.n_alphas = n_alphas
        self.random_state = random_state

    def fit(self, X, y):
        X, y = _check_fit_input(X, y, "LinearDatamodel")
        n = X.shape[1]
        keys = np.arange(n, dtype=np.int64)[:, None]
        lasso = _lasso_cv(_design_matrix(X, keys), y, _folds(self.cv, self.random_state), self.n_alphas)
        self.alpha_ = float(lasso.alpha_)
        self._set_spectrum(keys, lasso.coef_, lasso.intercept_, n)
        return self


def _residual_scores(centred: np.ndarray, keys: np.ndarray, resid: np.ndarray,
                     chunk: int = 512) -> np.ndarray:
    """``|<resid, c_S>| / ||c_S||`` with ``c_S = prod_{i in S} (x_i - mean_i)``, in column chunks.

    How much of what the mains leave unexplained each term would explain: the proxy proposes
    terms, this ranks them. Ranking by the proxy's own coefficients instead put planted pairs
    behind hundreds of spurious higher-order terms (each leaf gives all subsets of its path
    equal Möbius weight); ranking by this score put them near the top.
    """
    scores = np.empty(len(keys))
    for start in range(0, len(keys), chunk):
        c = _design_matrix(centred, keys[start : start + chunk])
        scores[start : start + chunk] = np.abs(resid @ c) / _norms(c)
    return scores


def _norms(features: np.ndarray) -> np.ndarray:
    """Column norms, infinite for constant columns (a player never or always kept): score 0."""
    norms = np.sqrt((features**2).sum(axis=0))
    return np.where(norms > 0, norms, np.inf)


def _has_superset(keys: np.ndarray, among: np.ndarray) -> np.ndarray:
    """Bool per key row: is it a proper subset of some row flagged in ``among``?"""
    sets = [frozenset(row[row != _PAD].tolist()) for row in keys]
    flagged = [sets[i] for i in np.flatnonzero(among)]
    return np.array([any(s < other for other in flagged) for s in sets], dtype=bool)


class ProxySPEX(_MobiusSurrogate):
    """Sparse interactions of order <= ``max_order`` from a tree proxy (Butler et al., 2025).

    1. Proxy: LightGBM trees of depth ``<= max_order`` fitted to the raw target, one thread,
       early-stopped on a ``val_fraction`` split, for each ``(depth, learning rate)`` in the small
       search ``depths`` x ``learning_rates``; the best validation loss wins.
    2. Exact Fourier spectrum of that ensemble (:func:`booster_fourier`), converted to Möbius.
    3. Support: every first-order term, plus the ``n_candidates`` proposed interactions that best
       explain the residual of the linear datamodel (L1, penalty by ``cv``-fold cross-validation;
       ``_residual_scores``), closed under
       subsets. A ranking, not a cumulative-energy cut, so moderate pairs that hold little of
       the spectrum's energy are kept.
    4. Tests: candidates enter the model only by passing a Bonferroni score test at familywise
       ``level`` (``_forward_tests``), so that almost no false interactions are reported.
    5. Refinement: L1 regression of ``y`` on the Möbius features ``prod_{i in S} x_i`` of the
       mains and accepted interactions, with intercept, penalty by ``cv``-fold cross-validation
       (``_refit``); exact for any mask density, so designs with ``alpha != 1/2`` need nothing
       special.

    Trees are fitted to the raw target (not a linear residual) because greedy splits find
    interactions through their members' main effects; the joint refit then shares the variance
    between the dense mains and the few real interactions. The default search is one
    configuration (depth ``max_order``, learning rate 0.3, at most 300 trees): on planted games
    a wider search (learning rate 0.1 as well) gave the same refitted surrogate at twice the
    cost, and capping at 300 trees instead of 1000 lost no planted pair at n = 1000 (the
    interactions are proposed by early trees; late ones chase the small mains).

    Fitted: ``mobius_``, ``fourier_``, ``alpha_`` (the final L1 penalty), ``proxy_params_``
    (the chosen tree settings), ``proxy_interactions_`` (interactions in the proxy's spectrum),
    ``n_candidates_`` (interactions tested), ``interaction_z_`` (their test statistics).
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
        self.random_state = random_state

    def _fit_proxy(self, X: np.ndarray, y: np.ndarray) -> lgb.Booster:
        rng = np.random.default_rng(self.random_state)
        val = rng.random(len(y)) < self.val_fraction
        Xf = X.astype(np.float32)
        base = dict(
            objective="regression",
            verbose=-1,
            num_threads=1,
            deterministic=True,
            force_row_wise=True,  # 3-4x faster than col-wise on dense 0/1 masks (measured)
            min_child_samples=self.min_child_samples,
            seed=0 if self.random_state is None else self.random_state,
        )
        train = lgb.Dataset(Xf[~val], y[~val], params={"verbose": -1}, free_raw_data=False)
        valid = lgb.Dataset(Xf[val], y[val], reference=train)
        depths = self.depths or (self.max_order,)
        best = None
        for depth in depths:
            if not 1 <= depth <= self.max_order:
                raise ValueError(f"ProxySPEX: depth {depth} is outside [1, max_order={self.max_order}]")
            for lr in self.learning_rates:
                params = {**base, "max_depth": depth, "num_leaves": 2**depth, "learning_rate": lr}
                booster = lgb.train(
                    params,
                    train,
                    num_boost_round=self.n_estimators,
                    valid_sets=[valid],
                    callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
                )
                score = booster.best_score["valid_0"]["l2"]
                if best is None or score < best[0]:
                    best = (score, booster, params)
        _, booster, params = best
        self.proxy_params_ = {
            "max_depth": params["max_depth"],
            "learning_rate": params["learning_rate"],
            "n_trees": booster.best_iteration,
        }
        # Keep only the early-stopped trees; their spectrum is what the validation loss vouched for.
        return lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))

    def fit(self, X, y):
        X, y = _check_fit_input(X, y, "ProxySPEX")
        if self.max_order < 1:
            raise ValueError(f"ProxySPEX: max_order must be >= 1; got {self.max_order}")
        n = X.shape[1]
        folds = _folds(self.cv, self.random_state)
        linear = _lasso_cv(X.astype(float), y, folds, self.n_alphas)
        fourier_keys, fourier_vals = _booster_fourier_arrays(self._fit_proxy(X, y))
        proposals, _ = _expand_subsets(
            fourier_keys, fourier_vals, lambda t, s: (-2.0) ** s, min_size=2
        )
        self.proxy_interactions_ = len(proposals)
        centred = X - X.mean(axis=0)
        score = _residual_scores(centred, proposals, y - linear.predict(X))
        top = proposals[np.argsort(-score, kind="stable")[: self.n_candidates]]
        # Closing under subsets: a kept triple brings its pairs, so each is tested on its own.
        candidates, _ = _expand_subsets(top, np.ones(len(top)), lambda t, s: 1.0, min_size=2)
        self.n_candidates_ = len(candidates)
        mains = np.full((n, max(candidates.shape[1], 1)), _PAD, dtype=np.int64)
        mains[:, -1] = np.arange(n)
        accepted = np.zeros(len(candidates), dtype=bool)
        self.interaction_z_ = np.zeros(len(candidates))
        if len(candidates):  # none when max_order is 1 or the trees split once each
            accepted = self._forward_tests(X, y, centred, mains, candidates, linear)
        support = np.concatenate([mains, candidates[accepted]])
        coef, intercept, penalty = _refit(X, y, support, n, linear, folds)
        self.alpha_ = float(penalty)
        self._set_spectrum(support, coef, intercept, n)
        return self

    def _forward_tests(self, X, y, centred, mains, candidates, linear) -> np.ndarray:
        """Which candidates pass a Bonferroni score test, in rounds; bool over ``candidates``.

        A term's statistic is ``z_S = <r, c_S> / (sigma ||c_S||)``: the residual ``r`` of the
        current model (mains plus the terms accepted so far, L1 at the linear datamodel's
        penalty) against the term's centred feature ``c_S = prod_{i in S} (x_i - mean_i)``, the
        part its sub-terms cannot explain (exact for independent mask entries at any alpha),
        with ``sigma^2 = RSS / (m - nonzeros - 1)``. Passing terms are accepted, the model
        refitted, and the rest tested again until none passes: strong terms leave the residual
        first, so weaker ones are judged against less unexplained signal.

        Multiplicity: a term's statistic does not depend on which other terms were proposed, so
        the trees' and the ranking's choices on the same data are covered by correcting for
        every subset of its order, ``C(n, k)``. ``level / (max_order - 1)`` per order is shared
        by that family and, equally, by smaller ones a term may belong to (a union bound):
        the hereditary family, terms all of whose members have clearly non-zero main effects
        (familywise over the ``n`` mains), ``C(n_strong, k)`` of them; and for ``k >= 3`` the
        extensions of accepted terms of order ``k - 1``, ``n - k + 1`` each. The mains'
        statistics use features orthogonal to the terms' (independent entries), so choosing
        a family this way does not bias the terms' tests; and in retraining games the
        near-duplicates and complements that interact are examples that matter alone too.

        Sub-terms: ``x_i x_j x_k`` has a component ``alpha c_ij`` on each sub-pair's feature,
        as detectable as the triple's own, so sub-pairs of a real triple look significant, and
        at a smaller multiplicity. A passing term with a passing superset waits a round; when no
        term passes, a candidate replaces two or more of its accepted sub-terms if it alone
        fits at least as well (fewer terms, no worse fit), and the rounds go on; at the end each
        accepted term with an accepted superset is tested again without itself and dropped if
        it fails.
        A joint L1 fit over all candidates, debiased, was tried first: its estimates of null
        candidates were inflated by the other candidates, and 2-6 false pairs per target got
        through on planted games.
        """
        m, n = X.shape
        orders = (candidates != _PAD).sum(axis=1)
        per_order = self.level / (self.max_order - 1)
        features = _design_matrix(centred, candidates)
        norms = _norms(features)

        def residual(chosen):
            """Residual and noise scale of the mains plus ``chosen`` terms."""
            support = np.concatenate([mains, candidates[chosen]])
            coef, intercept, _ = _refit(X, y, support, n, linear)
            resid = y - _design_matrix(X, support) @ coef - intercept
            return resid, np.sqrt(resid @ resid / (m - np.count_nonzero(coef) - 1))

        def z_scores(chosen):
            resid, sigma = residual(chosen)
            return np.abs(resid @ features) / (norms * sigma)

        # Heredity: mains clearly non-zero (debiased like the terms, familywise over n) name a
        # small family of interactions among their players, tested at half of each order's level.
        resid, sigma = residual(np.zeros(len(candidates), dtype=bool))
        norm = np.sqrt((centred**2).sum(axis=0))
        main_z = np.abs(linear.coef_ * norm + resid @ centred / np.where(norm > 0, norm, 1)) / sigma
        strong = main_z > _z_bonferroni(self.level, n)
        hereditary = np.where(candidates == _PAD, True, strong[candidates]).all(axis=1)
        n_strong = int(strong.sum())
        sets = [frozenset(row[row != _PAD].tolist()) for row in candidates]

        def critical(chosen):
            """Per term: the lowest critical value among the families it belongs to."""
            crit = np.empty(len(candidates))
            for i, (k, members) in enumerate(zip(orders, sets)):
                k = int(k)
                share = per_order / (2 if k == 2 else 3)
                families = [comb(n, k)] + ([comb(n_strong, k)] if hereditary[i] else [])
                parents = chosen & (orders == k - 1)
                if k > 2 and any(sets[j] < members for j in np.flatnonzero(parents)):
                    families.append(int(parents.sum()) * (n - k + 1))
                crit[i] = min(_z_bonferroni(share, size) for size in families)
            return crit

        def rss(chosen):
            resid, _ = residual(chosen)
            return resid @ resid

        accepted = np.zeros(len(candidates), dtype=bool)
        while True:
            z = z_scores(accepted)
            # A term's statistic when it was accepted, or in the last round.
            self.interaction_z_ = np.where(accepted, self.interaction_z_, z)
            passing = accepted | (z > critical(accepted))
            new = passing & ~accepted & ~_has_superset(candidates, passing)
            if new.any():
                accepted |= new
                continue
            # Several accepted sub-terms of one candidate are what a real higher-order term
            # leaves on its sub-pairs: one term that fits at least as well replaces them.
            merged = False
            for i in np.flatnonzero(~accepted & (orders > 2)):
                parts = accepted & np.array([other < sets[i] for other in sets])
                if parts.sum() < 2:
                    continue
                trial = (accepted & ~parts).copy()
                trial[i] = True
                if rss(trial) <= rss(accepted):
                    accepted, merged = trial, True
            if not merged:
                break
        for i in np.flatnonzero(accepted & _has_superset(candidates, accepted)):
            trial = accepted.copy()
            trial[i] = False
            if z_scores(trial)[i] <= critical(trial)[i]:
                accepted = trial
        return accepted


def _z_bonferroni(level: float, tests: int) -> float:
    """Two-sided normal critical value for ``tests`` tests at familywise ``level``."""
    return NormalDist().inv_cdf(1 - level / (2 * tests))


# ---------------------------------------------------------------------------------------------
# Many targets


METHODS = {"proxyspex": ProxySPEX, "linear": LinearDatamodel}


def make_estimator(method: str, **params):
    """The estimator registered under ``method`` (``proxyspex`` or ``linear``)."""
    if method not in METHODS:
        raise ValueError(f"unknown fit method {method!r}; choose one of {', '.join(METHODS)}")
    return METHODS[method](**params)


@dataclass
class TargetFit:
    target: int
    estimator: _MobiusSurrogate
    seconds: float


_WORKER_X: np.ndarray | None = None


def _init_worker(X: np.ndarray) -> None:
    # One thread per fit: more than one OpenMP/BLAS thread per process is pathologically slow
    # when processes share few cores (DESIGN.md). Env for any child, threadpoolctl (a
    # scikit-learn dependency) for the libraries this process has already loaded.
    global _WORKER_X
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    _WORKER_X = X


def _fit_one(estimator, target: int, y: np.ndarray, X: np.ndarray | None = None) -> TargetFit:
    start = time.perf_counter()
    try:
        fitted = clone(estimator).fit(_WORKER_X if X is None else X, y)
    except ValueError as err:
        raise ValueError(f"target {target}: {err}") from err
    return TargetFit(target, fitted, time.perf_counter() - start)


def fit_targets(estimator, X, Y, targets=None, n_jobs: int = 1, progress: bool = True):
    """Fit a clone of ``estimator`` to each chosen column of ``Y [m, T]``; list in target order.

    ``n_jobs > 1`` fits in that many spawned worker processes (each gets ``X`` once, and one
    thread); ``n_jobs == 1`` fits in this process. A tqdm bar counts finished targets.
    """
    X = _check_masks(X)
    Y = np.asarray(Y)
    if Y.ndim != 2 or Y.shape[0] != X.shape[0]:
        raise ValueError(f"Y must be [models={X.shape[0]}, targets]; got shape {Y.shape}")
    targets = list(range(Y.shape[1]) if targets is None else targets)
    bar = tqdm(total=len(targets), desc=f"fit {type(estimator).__name__}", disable=not progress)
    results = {}
    if n_jobs == 1:
        for t in targets:
            results[t] = _fit_one(estimator, t, Y[:, t], X)
            bar.update()
    else:
        context = get_context("spawn")  # fork after OpenMP has started can deadlock the child
        with ProcessPoolExecutor(n_jobs, context, _init_worker, (X,)) as pool:
            futures = [pool.submit(_fit_one, estimator, t, Y[:, t]) for t in targets]
            for future in as_completed(futures):
                result = future.result()
                results[result.target] = result
                bar.update()
    bar.close()
    return [results[t] for t in targets]


def planted_game(
    n: int,
    n_synergy: int = 2,
    n_redundancy: int = 2,
    n_triples: int = 1,
    main_sd: float = 0.1,
    strength: float = 1.0,
    seed: int = 0,
) -> dict:
    """Möbius spectrum of a synthetic retraining game with known interactions (for tests, benches).

    Dense small main effects ``N(0, main_sd)`` on all ``n`` players, as every training example has
    some; then disjoint planted groups whose members get main effects ``+-strength`` of one sign
    and an interaction of size ``strength``: the sign of the mains for synergy pairs, the opposite
    sign for redundancy pairs (both kept = as good as one kept: near duplicates), and synergy for
    triples. The planted kinds are exactly what :func:`interaction_table` should report.
    """
    rng = np.random.default_rng(seed)
    sizes = [2] * (n_synergy + n_redundancy) + [3] * n_triples
    if sum(sizes) > n:
        raise ValueError(f"planted_game: {sum(sizes)} planted members do not fit in n={n} players")
    mains = rng.normal(0.0, main_sd, n)
    players = rng.permutation(n)
    mobius = {(): float(rng.normal())}
    start = 0
    for g, size in enumerate(sizes):
        group = tuple(sorted(int(i) for i in players[start : start + size]))
        start += size
        sign = rng.choice([-1.0, 1.0])
        mains[list(group)] = sign * strength
        redundant = n_synergy <= g < n_synergy + n_redundancy
        mobius[group] = -sign * strength if redundant else sign * strength
    mobius.update({(i,): float(v) for i, v in enumerate(mains)})
    return mobius
