"""Engines fitted on a screened working set by an L1 path: the linear datamodel and ProxySPEX.

A screened engine is fitted on a **working set** of players (``players_``, the screened ones;
all ``n`` when ``n`` is small): its trees, tests and L1 regressions see only their columns. The
KKT check of :mod:`.screening` may then add players through :meth:`ScreenedEngine._add_players`,
which refits the same terms at the same penalty with more main effects. Targets are fitted in
blocks (:meth:`ScreenedEngine.fit_block`): screening, the floor refinements and each KKT round
cost one pass over the packed masks for the whole block.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.base import clone

from ..packed import PackedMasks, as_packed
from .engine import Engine, check_margins, is_integer
from .lasso import GramLasso, cv_above, fold_ids
from .screening import fit_screened, resolve_screen_k
from .spectra import _PAD, _to_dict
from .targets import TargetFit

# Targets per block: each pass over the masks serves a block, and each target of a block keeps
# its statistics (fold Grams, working-set bits) alive between passes, about 80 MB at 10^5
# models and a working set of 2,000.
BLOCK_SIZE = 16


def _mains(players: np.ndarray, width: int) -> np.ndarray:
    keys = np.full((len(players), max(width, 1)), _PAD, dtype=np.int64)
    keys[:, -1] = players
    return keys


def _to_global(keys: np.ndarray, players: np.ndarray) -> np.ndarray:
    """Key rows of working-set positions as key rows of player ids (padding kept)."""
    return np.where(keys == _PAD, _PAD, players[np.where(keys == _PAD, 0, keys)])


def _as_keys(terms: np.ndarray) -> np.ndarray:
    """Interaction keys as rows (one column when there are none)."""
    return terms.reshape(-1, terms.shape[1] if len(terms) else 1)


def _spectrum(players: np.ndarray, terms: np.ndarray, coef: np.ndarray, intercept: float) -> dict:
    """The Möbius dict of a regression on one column per player of ``players`` then one per
    interaction key of ``terms`` (by player id): its non-zero coefficients and the constant."""
    terms = _as_keys(terms)
    keys = np.concatenate([_mains(players, terms.shape[1]), terms])
    keep = coef != 0
    return {(): float(intercept), **_to_dict(keys[keep], coef[keep])}


class ScreenedEngine(Engine):
    """Shared machinery of the screened engines: a working set, one Gram, an L1 path.

    A fit on a working set has two steps, so that the screening of :mod:`.screening` can
    lower the penalty floor between them: :meth:`_start` (the cross-validated L1 regression on
    the working set's mains, from one Gram: the linear datamodel) and ``_finish`` (what the
    subclass adds, ending in :meth:`_set_fit`).
    """

    def _check_params(self) -> None:
        self._require("cv", is_integer(self.cv) and self.cv >= 2, "be an integer >= 2")
        self._require("n_penalties", is_integer(self.n_penalties) and self.n_penalties >= 1, "be an integer >= 1")
        # The bound by n (resolve_screen_k) waits for the masks.
        self._require("screen_k", self.screen_k is None or is_integer(self.screen_k) and self.screen_k >= 1,
                      "be None (null) or an integer >= 1")
        # It seeds scikit-learn's KFold, which takes 0..2**32 - 1.
        self._require("random_state", self.random_state is None or is_integer(self.random_state)
                      and 0 <= self.random_state < 2**32, "be None (null) or an integer in 0..2**32 - 1")

    def fit(self, X, y):
        """Fit to masks ``X`` (bool, 0/1 ``[m, n]`` or :class:`PackedMasks`) and margins ``y [m]``."""
        self._check_params()
        X = as_packed(X)
        y = check_margins(y, len(X), type(self).__name__)
        fit_screened([self], X, y[:, None])
        return self

    def block_size(self, n: int) -> int:
        """A block shares the passes over the masks when there is screening; else one target."""
        return BLOCK_SIZE if resolve_screen_k(self.screen_k, n) < n else 1

    def fit_block(self, X: PackedMasks, Y: np.ndarray, block: list[int]) -> list[TargetFit]:
        self._check_params()
        start = time.perf_counter()
        name = type(self).__name__
        for target, y in zip(block, Y.T):
            try:
                check_margins(y, len(X), name)
            except ValueError as err:
                raise ValueError(f"target {target}: {err}") from err
        try:
            fitted = fit_screened([clone(self) for _ in block], X, Y)
        except ValueError as err:
            raise ValueError(f"targets {block[0]}..{block[-1]}: {err}") from err
        seconds = (time.perf_counter() - start) / len(block)
        return [TargetFit(target, engine, seconds) for target, engine in zip(block, fitted)]

    def _start(self, X: PackedMasks, y: np.ndarray, players: np.ndarray, floor: float) -> None:
        """Cross-validated L1 regression on the mains of ``players``, penalties not below ``floor``."""
        self.players_ = players
        self._gram = GramLasso(X.columns(players), y, fold_ids(len(y), self.cv, self.random_state))
        self._lower_floor(floor)

    def _lower_floor(self, floor: float) -> None:
        """Search the penalty again, down to ``floor`` (same working set, same Gram)."""
        mains = np.arange(len(self.players_))
        self._floor = floor
        grid = self._gram.penalty_grid(mains, self.n_penalties)
        self._linear, self.penalty_at_floor_ = cv_above(self._gram, mains, grid, floor)

    def _grow(self, X: PackedMasks, players: np.ndarray) -> None:
        """Add ``players`` to the working set before the penalty is searched again."""
        self._gram.add_columns(X.columns(players))
        self.players_ = np.concatenate([self.players_, players])

    def _linear_residual(self) -> np.ndarray:
        return self._gram.residual(np.arange(len(self.players_)), *self._linear[1:])

    def _set_fit(self, players, mains, terms, term_cols, penalty, coef, intercept, n):
        """Record a fit: the final regression's columns in the Gram are ``mains`` (one per
        player) then ``term_cols`` (the interaction keys ``terms``, by player id)."""
        self.penalty_, self.players_, self._terms = float(penalty), players, _as_keys(terms)
        self._gram_cols = np.concatenate([mains, term_cols]).astype(np.int64)
        self._set_spectrum(_spectrum(players, self._terms, coef, intercept), n)

    def _add_players(self, X: PackedMasks, y: np.ndarray, players) -> None:
        """Grow the working set by ``players`` and refit mains and ``_terms`` at ``penalty_``.

        Only the new players' columns are read; their products with the others extend the
        Gram of the fit.
        """
        gram, mains, terms = self._gram, self._gram_cols[:len(self.players_)], self._gram_cols[len(self.players_):]
        mains = np.concatenate([mains, gram.add_columns(X.columns(players))])
        coef, intercept = gram.fit(np.concatenate([mains, terms]), self.penalty_)
        self._set_fit(np.concatenate([self.players_, players]), mains, self._terms, terms, self.penalty_, coef,
                      intercept, X.n)

    def _park(self) -> None:
        """Between passes over the masks: keep the fit's statistics, not its unpacked features."""
        self._gram.park()

    def _release(self) -> None:
        """Drop the fit's statistics and columns: large, and not part of the fitted surrogate."""
        for name in ("_gram", "_gram_cols", "_linear", "_floor"):
            self.__dict__.pop(name, None)
