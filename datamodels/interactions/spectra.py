"""Sparse spectra: Fourier/Möbius transforms, interaction indices, exact tree spectra, kinds.

Conventions (``../shared/DESIGN.md``, and docs/interactions.md): Fourier ``f(x) = sum_k F(k) (-1)^<k,x>``; Möbius
``f(x) = sum_{S subset of kept(x)} m(S)``. Spectra are dicts from a sorted tuple of player
indices (``()`` for the constant) to a coefficient. Internally they are ``(keys, vals)`` arrays:
``keys`` int64 ``[K, d]`` with each row's members sorted ascending after ``-1`` padding, so that
every transform below is a vectorised pass over subsets of rows instead of a loop over dicts.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd

from ..packed import PackedMasks, as_packed

_PAD = -1
# Float dust left by cancelling tree contributions is dropped relative to the largest coefficient.
_REL_TOL = 1e-12
# Möbius features are built in row chunks of about this many float64 values.
_CHUNK_VALUES = 1 << 22

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
    """Columns ``prod_{i in S} x_i`` (Möbius features) for each key row ``S``, as float64.

    Only the columns of ``X`` that some key names are converted, so ``X`` may be wide.
    """
    used, index = np.unique(keys, return_inverse=True)
    index = index.reshape(keys.shape)
    has_pad = len(used) > 0 and used[0] == _PAD
    cols = X[:, used[1:] if has_pad else used].astype(float)
    # A leading column of ones stands in for the padding, so every key row is a plain gather.
    cols = np.hstack([np.ones((X.shape[0], 1)), cols]) if has_pad else cols
    phi = np.ones((X.shape[0], len(keys)))
    for j in range(keys.shape[1]):
        phi *= np.take(cols, index[:, j], axis=1)
    return phi


def mobius_eval(X: PackedMasks, keys: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """``sum_r vals[r] prod_{i in keys[r]} x_i`` on packed masks, in row chunks: only the
    members' columns are read, and no ``[m, len(keys)]`` float matrix is built."""
    players = np.unique(keys[keys != _PAD])
    local = np.where(keys == _PAD, _PAD, np.searchsorted(players, keys))
    columns = X.columns(players)
    out = np.empty(len(columns))
    step = max(256, _CHUNK_VALUES // max(len(keys), 1))
    for start in range(0, len(columns), step):
        out[start:start + step] = _design_matrix(columns[start:start + step], local) @ vals
    return out


# ---------------------------------------------------------------------------------------------
# Conversions and indices (closed forms from the Möbius transform)


def mobius_to_fourier(mobius: dict) -> dict:
    """``F(A) = (-1)^|A| sum_{S superset A} 2^-|S| m(S)``, from ``x_i = (1 - (-1)^x_i) / 2``."""
    keys, vals = _to_arrays(mobius)
    return _to_dict(*_expand_subsets(keys, vals, lambda t, s: 0.5**t * (-1.0) ** s))


def fourier_to_mobius(fourier: dict) -> dict:
    """``m(S) = sum_{k superset S} (-2)^|S| F(k)`` (``../shared/DESIGN.md``)."""
    keys, vals = _to_arrays(fourier)
    return _to_dict(*_expand_subsets(keys, vals, lambda t, s: (-2.0) ** s))


def mobius_predict(mobius: dict, X) -> np.ndarray:
    """Evaluate ``f(x) = sum_{S subset kept(x)} m(S)`` on masks ``X [m, n]`` (bool, 0/1 or packed)."""
    X = as_packed(X)
    keys, vals = _to_arrays(mobius)
    if keys.size and keys.max() >= X.n:
        raise ValueError(
            f"mobius has player {keys.max()} but X has only {X.n} players (columns)"
        )
    return mobius_eval(X, keys, vals)


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

    Unrolling the split recursion ``F[k] = (L[k]+R[k])/2, F[k+{i}] = (L[k]-R[k])/2`` (``../shared/DESIGN.md``)
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


def interaction_table(mobius: dict, order: int | None = None, tested=frozenset(), shrunk: dict | None = None
                      ) -> pd.DataFrame:
    """Non-constant Möbius terms sorted by ``|m|``: columns members, order, mobius, kind, tested
    (whether the term is among ``tested``, the member tuples that passed the engine's test) and
    shrunk (the term's value in ``shrunk``, 0 where absent; ``mobius`` when ``shrunk`` is None:
    an engine's :attr:`~.engine.Engine.shrunk_mobius_`, what pruning optimises).

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
        rows.append((list(members), len(members), value, kind, members in tested,
                     value if shrunk is None else shrunk.get(members, 0.0)))
    table = pd.DataFrame(rows, columns=["members", "order", "mobius", "kind", "tested", "shrunk"])
    return table.iloc[np.argsort(-table["mobius"].abs().to_numpy(), kind="stable")]
