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
from .lasso import GramLasso, cv_above, fold_ids
from .spectra import _PAD, _to_arrays, _to_dict, interaction_table, mobius_eval, mobius_to_fourier

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

    A fit on a working set has two steps, so that the screening of :mod:`.screening` can
    lower the penalty floor between them: :meth:`_start` (the cross-validated L1 regression on
    the working set's mains, from one Gram: the linear datamodel) and ``_finish`` (what the
    subclass adds, ending in :meth:`_set_fit`).
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
        return mobius_eval(X, self._keys, self._vals)

    def top_interactions(self, k: int = 20, order: int | None = None) -> pd.DataFrame:
        """The ``k`` largest Möbius terms by magnitude (all orders >= 1, or only ``order``)."""
        return interaction_table(self.mobius_, order=order).head(k).reset_index(drop=True)

    def _start(self, X: PackedMasks, y: np.ndarray, players: np.ndarray, floor: float) -> None:
        """Cross-validated L1 regression on the mains of ``players``, penalties not below ``floor``."""
        self.players_ = players
        self._gram = GramLasso(X.columns(players), y, fold_ids(len(y), self.cv, self.random_state))
        self._lower_floor(floor)

    def _lower_floor(self, floor: float) -> None:
        """Search the penalty again, down to ``floor`` (same working set, same Gram)."""
        mains = np.arange(len(self.players_))
        self._floor = floor
        self._linear, self.penalty_at_floor_ = cv_above(self._gram, mains, self._gram.alpha_grid(mains, self.n_alphas),
                                                        floor)

    def _grow(self, X: PackedMasks, players: np.ndarray) -> None:
        """Add ``players`` to the working set before the penalty is searched again."""
        self._gram.add_columns(X.columns(players))
        self.players_ = np.concatenate([self.players_, players])

    def _linear_residual(self) -> np.ndarray:
        return self._gram.residual(np.arange(len(self.players_)), *self._linear[1:])

    def _set_fit(self, players, mains, terms, term_cols, alpha, coef, intercept, n):
        """Record a fit: the final regression's columns in the Gram are ``mains`` (one per
        player) then ``term_cols`` (the interaction keys ``terms``, by player id)."""
        width = terms.shape[1] if len(terms) else 1
        self.alpha_, self.players_, self._terms = float(alpha), players, terms.reshape(-1, width)
        self._gram_cols = np.concatenate([mains, term_cols]).astype(np.int64)
        self._set_spectrum(np.concatenate([_mains(players, width), self._terms]), coef, intercept, n)

    def _add_players(self, X: PackedMasks, y: np.ndarray, players) -> None:
        """Grow the working set by ``players`` and refit mains and ``_terms`` at ``alpha_``.

        Only the new players' columns are read; their products with the others extend the
        Gram of the fit.
        """
        gram, mains, terms = self._gram, self._gram_cols[:len(self.players_)], self._gram_cols[len(self.players_):]
        mains = np.concatenate([mains, gram.add_columns(X.columns(players))])
        coef, intercept = gram.fit(np.concatenate([mains, terms]), self.alpha_)
        self._set_fit(np.concatenate([self.players_, players]), mains, self._terms, terms, self.alpha_, coef,
                      intercept, X.n)

    def _park(self) -> None:
        """Between passes over the masks: keep the fit's statistics, not its unpacked features."""
        self._gram.park()

    def _release(self) -> None:
        """Drop the fit's statistics and columns: large, and not part of the fitted surrogate."""
        for name in ("_gram", "_gram_cols", "_linear", "_floor"):
            self.__dict__.pop(name, None)
