"""Screening: the players a target's fit looks at, and the check that it left out none that count.

**Screening.** ProxySPEX's premise is hierarchy: players that interact also matter alone. So per
target the ``n`` players are ranked by ``g_j = |x_j^T (y - mean(y))| / m``, the covariance of
their mask column with the margin (sure independence screening, Fan & Lv, JRSS-B 2008) and the
Lasso's gradient at the empty model, the order in which the Lasso path admits players (the
basic strong rule, Tibshirani et al., JRSS-B 2012). It is computed for a block of targets in
one pass over the packed masks (``X^T Y`` in row chunks), and the fit (trees, tests, L1
regressions) runs on the top ``screen_k``. With ``screen_k >= n`` nothing is screened and the
fit is exactly the unscreened one.

**The penalty floor.** Cross-validating the penalty on a working set alone is biased: the
players left out cannot overfit, so small penalties look better than they are (on a planted
game, n = 1,500, a working set of 100 chose a penalty 3x smaller than the full Lasso's, and
the KKT check then let in 867 noise players). By the strong rule, a working set ``W`` stands
for all ``n`` players at any penalty above ``floor = max_{j not in W} g_j``; the penalty
search is restricted to those. Against the residual of the fit on ``W`` the players left out
have smaller gradients (the margin's explained part no longer inflates their covariances),
except the few that matter and were masked. So a target whose best penalty lands on the floor
takes the outside players of largest gradient against its residual into ``W`` (a quarter of
``screen_k`` per round), its floor falls to the largest gradient left outside, and its penalty
is searched again, for a few rounds (one pass over the masks each, for the block). On that
planted game a working set of 200 then gives the unscreened fit's penalty and held-out R^2
(0.855); doubling the working set blindly instead took a target at n = 50,000 from 10 s to
69 s. A target still held at the floor after the rounds says so (``penalty_at_floor_``,
counted in the fit stage's metrics): a larger ``screen_k`` fits it better, at a cost that grows
with its square (the Gram).

**What screening can miss.** A player enters only through its *marginal* effect at the sweep's
keep probability ``alpha``: ``E[f | x_i = 1] - E[f | x_i = 0]``. For a pair with Möbius terms
``m(i)``, ``m(j)``, ``m(ij)`` that is ``m(i) + alpha m(ij)`` for player ``i``. A pair whose
members matter only together in the Möbius sense (``m(i) = 0``) still has a marginal effect of
``alpha m(ij)`` and is screened in; what is lost is a pair whose members' marginal effects
cancel (``m(i) = -alpha m(ij)``: an exclusive-or-like pair, invisible to any one player
alone). The trees of ProxySPEX split greedily and miss those too, screened or not
(docs/benchmarks.md measures both on a planted game).

**KKT check** (strong rules with a KKT check, Tibshirani et al., JRSS-B 2012). After the L1 fit
on the working set at penalty ``lambda``, a player ``j`` outside it would enter the Lasso over all
``n`` players exactly when ``|x_j^T r| / m > lambda``, with ``r`` the fit's residual (it sums to
zero with an intercept, so centring changes nothing). One more pass over the packed masks
checks every player of a block of targets; violators join the working set and the fit is
redone at the same penalty, until none is left. The main effects are then the exact Lasso
solution over all ``n`` players at the chosen penalty (up to the solver's tolerance), while
only the working set's columns were ever unpacked.

Working-set solvers (skglm, celer) were the alternative: both take the design matrix as a
dense or scipy-sparse array, and a 0/1 mask matrix at ``alpha = 0.5`` is half ones, so either
form costs the ``[m, n]`` floats that this module exists to avoid. The two passes over packed
bits are the part no library does.
"""

from __future__ import annotations

import numpy as np

from ..packed import PackedMasks
from .spectra import mobius_predict

# screen_k=None: no screening up to this many players, the top this many above.
DEFAULT_SCREEN_K = 1000
# A KKT violation must exceed the penalty by more than the solver's tolerance can explain.
KKT_TOL = 1e-3
# Floor refinements: at most this many passes, each while some floor falls by this fraction and
# growing the working set of a held target by 1/GROW.
FLOOR_ROUNDS, FLOOR_STEP, GROW = 3, 0.05, 4


def resolve_screen_k(screen_k: int | None, n: int) -> int:
    """The working-set size for ``n`` players; a clear error for a ``screen_k`` outside ``1..n``."""
    if screen_k is None:
        return min(n, DEFAULT_SCREEN_K)
    if not isinstance(screen_k, (int, np.integer)) or not 1 <= screen_k <= n:
        raise ValueError(f"fit.params.screen_k={screen_k!r} must be an integer in 1..{n} (the sweep has n={n} "
                         f"players), or null for min(n, {DEFAULT_SCREEN_K})")
    return int(screen_k)


def null_gradients(X: PackedMasks, Y: np.ndarray) -> np.ndarray:
    """``g[j, t] = |x_j^T (y_t - mean(y_t))| / m`` as ``[n, T]``, from one pass over the packed masks."""
    Y = np.asarray(Y, dtype=float)
    return np.abs(X.t_dot(Y - Y.mean(axis=0))) / len(Y)


def working_set(gradient: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """The ``k`` players of largest ``gradient`` (sorted by id) and the floor: the largest left out."""
    if k >= len(gradient):
        return np.arange(len(gradient)), 0.0
    order = np.argpartition(-gradient, k)
    return np.sort(order[:k]), float(gradient[order[k]])


def screen(X: PackedMasks, Y: np.ndarray, k: int) -> list[np.ndarray]:
    """Per column of ``Y [m, T]``: the working set of ``k`` players (sorted by id)."""
    if k >= X.n:
        return [np.arange(X.n) for _ in range(Y.shape[1])]
    gradients = null_gradients(X, Y)
    return [working_set(gradients[:, t], k)[0] for t in range(Y.shape[1])]


def kkt_violations(X: PackedMasks, residuals: np.ndarray, penalties, working: list[np.ndarray]) -> list[np.ndarray]:
    """Per column of ``residuals [m, T]``: the players outside ``working[t]`` with
    ``|x_j^T r_t| / m > penalties[t] (1 + KKT_TOL)``, who would enter that target's Lasso."""
    gradient = np.abs(X.t_dot(residuals)) / len(residuals)
    out = []
    for t, players in enumerate(working):
        outside = np.ones(X.n, dtype=bool)
        outside[players] = False
        out.append(np.flatnonzero(outside & (gradient[:, t] > penalties[t] * (1 + KKT_TOL))))
    return out


def fit_screened(estimators: list, X: PackedMasks, Y: np.ndarray) -> list:
    """Fit ``estimators[t]`` to column ``t`` of ``Y``: screen, fit on the working sets, KKT-check.

    The estimators are fitted in place (and returned); each records ``kkt_added_``, the players
    the KKT check added to its working set. Screening, each floor refinement and each KKT round
    cost one pass over the masks for the whole block of targets.
    """
    k = resolve_screen_k(estimators[0].screen_k, X.n)
    screened = k < X.n
    gradients = null_gradients(X, Y) if screened else None
    for t, estimator in enumerate(estimators):
        players, floor = working_set(gradients[:, t], k) if screened else (np.arange(X.n), 0.0)
        estimator._start(X, Y[:, t], players, floor)
        estimator._park()
    if screened:
        _lower_floors(X, estimators)
    for t, estimator in enumerate(estimators):
        estimator._finish(X, Y[:, t])
        estimator._park()
        estimator.kkt_added_ = 0
    pending = list(range(len(estimators))) if screened else []
    while pending:
        # The Lasso's optimality conditions, so its residual: a relaxed refit's coefficients
        # (ProxySPEX, relax=True) are not the solution being checked.
        residuals = np.stack([Y[:, t] - mobius_predict(estimators[t].shrunk_mobius_, X) for t in pending], axis=1)
        found = kkt_violations(X, residuals, [estimators[t].penalty_ for t in pending],
                               [estimators[t].players_ for t in pending])
        for t, players in zip(pending, found):
            if len(players):
                estimators[t]._add_players(X, Y[:, t], players)
                estimators[t]._park()
                estimators[t].kkt_added_ += len(players)
        pending = [t for t, players in zip(pending, found) if len(players)]
    for estimator in estimators:
        estimator._release()
    return estimators


def _lower_floors(X: PackedMasks, estimators: list) -> None:
    """Grow the working set of the targets held at the penalty floor, and lower their floor.

    Against the residual of the working set's fit, the gradients of the players left out are
    smaller than against the margin (by the share of its spread left unexplained), except for
    those that matter and were masked by the others. So, in a few rounds, a held target's
    working set takes the ``1/GROW`` of ``screen_k`` outside players of largest gradient
    against its residual, its floor falls to the largest gradient left outside, and its penalty
    is searched again (the Gram only gains the new columns).
    """
    for _ in range(FLOOR_ROUNDS):
        held = [e for e in estimators if e.penalty_at_floor_]
        if not held:
            return
        gradients = np.abs(X.t_dot(np.stack([e._linear_residual() for e in held], axis=1))) / len(X)
        lowered = False
        for estimator, gradient in zip(held, gradients.T):
            gradient[estimator.players_] = -1.0
            grow = max(1, len(estimator.players_) // GROW)
            order = np.argsort(-gradient)
            floor = max(float(gradient[order[grow]]), 0.0) if grow < len(order) else 0.0
            if floor < (1 - FLOOR_STEP) * estimator._floor:
                estimator._grow(X, order[:grow][gradient[order[:grow]] >= 0])
                estimator._lower_floor(floor)
                estimator._park()
                lowered = True
        if not lowered:
            return
