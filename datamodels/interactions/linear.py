"""The linear datamodel (Ilyas et al., "Datamodels: Predicting Predictions from Training Data",
ICML 2022): an L1-regularised linear regression of a target's margin on the mask."""

from __future__ import annotations

import numpy as np

from ..packed import PackedMasks
from .screened import ScreenedEngine


class LinearDatamodel(ScreenedEngine, name="linear"):
    """Linear datamodel: ``y ~ b + sum_i w_i x_i`` with an L1 penalty, over all ``n`` players.

    The penalty is chosen by ``cv``-fold cross-validation along a path of ``n_penalties`` values
    (models held out of each fold judge each lambda), then refitted on all models; the same
    fit as scikit-learn's ``LassoCV`` (tests/test_lasso.py), from one Gram matrix.

    Above ``screen_k`` players (default: 1,000; see :mod:`.screening`) the path and the
    cross-validation run on the ``screen_k`` players most correlated with the margin (penalties
    above the floor that set stands for), and a KKT check over all ``n`` adds any player the
    Lasso at the chosen penalty would use: the result is the exact Lasso over all players at
    that penalty, without an ``[m, n]`` float matrix.

    Fitted: ``mobius_``, ``fourier_``, ``penalty_`` (the penalty), ``players_`` (the working set),
    ``kkt_added_``, ``penalty_at_floor_``.
    """

    def __init__(self, cv: int = 5, n_penalties: int = 40, screen_k: int | None = None,
                 random_state: int | None = 0):
        self.cv = cv
        self.n_penalties = n_penalties
        self.screen_k = screen_k
        self.random_state = random_state

    def _finish(self, X: PackedMasks, y: np.ndarray) -> None:
        mains = np.arange(len(self.players_))
        self._set_fit(self.players_, mains, np.empty((0, 1), dtype=np.int64), [], *self._linear, X.n)

    @classmethod
    def from_solution(cls, coef: np.ndarray, intercept: float, penalty: float) -> LinearDatamodel:
        """A fitted linear datamodel over all ``len(coef)`` players holding a solution found
        elsewhere (the batched GPU path, :mod:`.batched_lasso`)."""
        model = cls()
        players = np.flatnonzero(coef)
        model.penalty_, model.players_ = float(penalty), np.arange(len(coef))
        model.kkt_added_, model.penalty_at_floor_ = 0, False
        model._set_spectrum({(): float(intercept), **{(int(i),): float(coef[i]) for i in players}}, len(coef))
        return model
