"""The linear datamodel (Ilyas et al., "Datamodels: Predicting Predictions from Training Data",
ICML 2022): an L1-regularised linear regression of a target's margin on the mask."""

from __future__ import annotations

import numpy as np

from ..packed import PackedMasks
from .lasso import GramLasso, fold_ids
from .surrogate import _MobiusSurrogate


def fit_linear(columns: np.ndarray, y: np.ndarray, cv: int, n_alphas: int, random_state, floor: float = 0.0):
    """``(gram, (alpha, coef, intercept), at_floor)``: L1 regression of ``y`` on the bool
    ``columns``, penalty by ``cv``-fold cross-validation along scikit-learn's grid of
    ``n_alphas`` values, those below ``floor`` left out (:mod:`.screening`)."""
    gram = GramLasso(columns, y, fold_ids(len(y), cv, random_state))
    mains = np.arange(columns.shape[1])
    fit, at_floor = cv_above(gram, mains, gram.alpha_grid(mains, n_alphas), floor)
    return gram, fit, at_floor


def cv_above(gram: GramLasso, cols, alphas, floor: float):
    """``((alpha, coef, intercept), at_floor)``: :meth:`GramLasso.cv` over the ``alphas`` not
    below ``floor``; ``at_floor`` when the best is the smallest of them and some were left out."""
    allowed = alphas[alphas >= floor]
    allowed = allowed if len(allowed) else alphas[:1]
    fit = gram.cv(cols, allowed)
    return fit, len(allowed) < len(alphas) and fit[0] == allowed.min()


class LinearDatamodel(_MobiusSurrogate):
    """Linear datamodel: ``y ~ b + sum_i w_i x_i`` with an L1 penalty, over all ``n`` players.

    The penalty is chosen by ``cv``-fold cross-validation along a path of ``n_alphas`` values
    (models held out of each fold judge each lambda), then refitted on all models; the same
    fit as scikit-learn's ``LassoCV`` (tests/test_lasso.py), from one Gram matrix.

    Above ``screen_k`` players (default: 1,000; see :mod:`.screening`) the path and the
    cross-validation run on the ``screen_k`` players most correlated with the margin (penalties
    above the floor that set stands for), and a KKT check over all ``n`` adds any player the
    Lasso at the chosen penalty would use: the result is the exact Lasso over all players at
    that penalty, without an ``[m, n]`` float matrix.

    Fitted: ``mobius_``, ``fourier_``, ``alpha_`` (the penalty), ``players_`` (the working set),
    ``kkt_added_``, ``penalty_at_floor_``.
    """

    def __init__(self, cv: int = 5, n_alphas: int = 40, screen_k: int | None = None,
                 random_state: int | None = 0):
        self.cv = cv
        self.n_alphas = n_alphas
        self.screen_k = screen_k
        self.random_state = random_state

    def _fit_players(self, X: PackedMasks, y: np.ndarray, players: np.ndarray, floor: float) -> None:
        _, (alpha, coef, intercept), self.penalty_at_floor_ = fit_linear(
            X.columns(players), y, self.cv, self.n_alphas, self.random_state, floor)
        self.alpha_ = float(alpha)
        self.players_ = players
        self._terms = np.empty((0, 1), dtype=np.int64)
        self._set_spectrum(players[:, None], coef, intercept, X.n)
