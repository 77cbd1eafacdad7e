"""What every fitted surrogate shares: input checks, a sparse Möbius spectrum, a working set.

A surrogate is fitted on a **working set** of players (``players_``, the screened ones; all
``n`` when ``n`` is small): its trees, tests and L1 regressions see only their columns. The
KKT check of :mod:`.screening` may then add players through :meth:`_MobiusSurrogate._add_players`,
which refits the same terms at the same penalty with more main effects.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import RegressorMixin
from sklearn.base import BaseEstimator

from ..packed import PackedMasks, as_packed
from .lasso import GramLasso
from .spectra import _PAD, _design_matrix, _to_arrays, _to_dict, interaction_table, mobius_design, mobius_to_fourier

MIN_MODELS = 20


def _check_y(y, models: int, estimator: str, min_models: int = MIN_MODELS) -> np.ndarray:
    y = np.asarray(y, dtype=float)
    if y.ndim != 1:
        raise ValueError(f"{estimator}.fit: y must be 1-D [models]; got shape {y.shape}")
    if y.shape[0] != models:
        raise ValueError(f"{estimator}.fit: X has {models} models (rows) but y has {y.shape[0]} values")
    if not np.isfinite(y).all():
        i = int(np.flatnonzero(~np.isfinite(y))[0])
        raise ValueError(f"{estimator}.fit: y must be finite; y[{i}] = {y[i]}")
    if models < min_models:
        raise ValueError(f"{estimator}.fit needs at least {min_models} models for its validation split and "
                         f"cross-validation; got {models}")
    if np.ptp(y) == 0:
        raise ValueError(f"{estimator}.fit: y is constant ({y[0]}); there is nothing to attribute")
    return y


def _check_fit_input(X, y, estimator: str) -> tuple[PackedMasks, np.ndarray]:
    """Masks as :class:`PackedMasks` (from bool, 0/1 or packed input) and ``y`` as float, checked."""
    X = as_packed(X)
    return X, _check_y(y, len(X), estimator)


def _mains(players: np.ndarray, width: int) -> np.ndarray:
    keys = np.full((len(players), max(width, 1)), _PAD, dtype=np.int64)
    keys[:, -1] = players
    return keys


def _to_global(keys: np.ndarray, players: np.ndarray) -> np.ndarray:
    """Key rows of working-set positions as key rows of player ids (padding kept)."""
    return np.where(keys == _PAD, _PAD, players[np.where(keys == _PAD, 0, keys)])


class _MobiusSurrogate(RegressorMixin, BaseEstimator):
    """Shared state of fitted surrogates: a sparse Möbius spectrum and what follows from it.

    Subclasses implement ``_fit_players(X, y, players)``: fit on the working set ``players``,
    setting ``players_``, ``alpha_`` (the final L1 penalty) and ``_terms`` (the interaction
    keys, by player id, that the final regression holds).
    """

    def fit(self, X, y):
        """Fit to masks ``X`` (bool, 0/1 ``[m, n]`` or :class:`PackedMasks`) and margins ``y [m]``."""
        from .screening import fit_screened

        X, y = _check_fit_input(X, y, type(self).__name__)
        fit_screened([self], X, y[:, None])
        return self

    def _set_spectrum(self, keys: np.ndarray, coef: np.ndarray, intercept: float, n: int):
        keep = coef != 0
        self.n_players_ = n
        self.mobius_ = {(): float(intercept), **_to_dict(keys[keep], coef[keep])}
        self.fourier_ = mobius_to_fourier(self.mobius_)
        self._keys, self._vals = _to_arrays(self.mobius_)

    def predict(self, X) -> np.ndarray:
        X = as_packed(X)
        if X.n != self.n_players_:
            raise ValueError(f"X has {X.n} players but the model was fitted on {self.n_players_}")
        return mobius_design(X, self._keys) @ self._vals

    def top_interactions(self, k: int = 20, order: int | None = None) -> pd.DataFrame:
        """The ``k`` largest Möbius terms by magnitude (all orders >= 1, or only ``order``)."""
        return interaction_table(self.mobius_, order=order).head(k).reset_index(drop=True)

    def _add_players(self, X: PackedMasks, y: np.ndarray, players) -> None:
        """Grow the working set by ``players`` and refit mains and ``_terms`` at ``alpha_``."""
        self.players_ = np.union1d(self.players_, players)
        terms = self._terms
        columns = X.columns(self.players_)
        features = columns
        if len(terms):
            local = np.where(terms == _PAD, _PAD, np.searchsorted(self.players_, terms))
            features = np.hstack([columns, _design_matrix(columns, local) > 0])
        gram = GramLasso(features, y, np.zeros(len(y), dtype=np.int64))
        coef, intercept = gram.fit(np.arange(features.shape[1]), self.alpha_)
        width = terms.shape[1] if len(terms) else 1
        keys = np.concatenate([_mains(self.players_, width), terms.reshape(-1, width)])
        self._set_spectrum(keys, coef, intercept, X.n)
