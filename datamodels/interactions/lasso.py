"""L1 regression with intercept from sufficient statistics: one Gram per target, any fold, any columns.

Every surrogate of this package is an L1 regression (scikit-learn's ``Lasso`` objective,
``(1/2m) ||y - b - F w||^2 + penalty ||w||_1``) of one target's margin on 0/1 features: players of
the working set and products of them. The L1 weight is called ``penalty`` here (an engine's chosen
one is its ``penalty_``) and ``alpha`` only in the calls into scikit-learn, because everywhere
else in this package ``alpha`` is a kept fraction. :class:`GramLasso` computes, once per target and per
cross-validation fold ``f``, the cross-products ``F_f^T F_f``, ``F_f^T y``, column sums and the
sums of ``y``. From these alone it solves the Lasso at any penalty, on any subset of the
columns, on all models or on the training models of any fold (coordinate descent on the
centred Gram: scikit-learn's ``lasso_path`` with a precomputed Gram), and scores any
coefficients on a held-out fold. So cross-validation over ``K`` folds costs one Gram, where
``LassoCV`` computes one per fold plus one for the final fit, and the many refits of ProxySPEX's
tests cost no pass over the models at all.

The Gram of 0/1 features is computed in float32, which is exact (its entries are counts below
2^24); the ``K`` fold Grams are kept as uint16 counts while folds hold fewer than 65,536
models, and the features as bits, because a block of targets keeps its statistics alive
between passes over the masks (:mod:`.screening`). Everything after the Gram is float64.
Written here because scikit-learn's estimators take the design matrix, not its statistics, and
recompute the Gram for every fold and every refit.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.linear_model import lasso_path

MAX_ITER, TOL = 5000, 1e-4
_EXACT_FLOAT32_COUNTS = 2**24
_CHUNK_VALUES = 1 << 22  # residuals are computed in row chunks of about this many float64 values
_MAX_BLOCKS = 16  # packed column blocks kept before they are joined into one


class GramLasso:
    """Sufficient statistics of ``(features, y)`` per fold, and Lasso fits from them.

    ``features`` is a 0/1 (or bool) array ``[m, p]``; ``folds`` gives each row's fold
    ``0..K-1``. Columns are addressed by their index in ``features`` (and in later
    :meth:`add_columns`).
    """

    def __init__(self, features: np.ndarray, y: np.ndarray, folds: np.ndarray):
        self._y_mean = float(np.mean(y))
        self._y = np.asarray(y, dtype=float) - self._y_mean  # centred: the expanded sums keep their precision
        self._folds = [np.flatnonzero(folds == f) for f in range(int(folds.max()) + 1)]
        self._bits: list[np.ndarray] = []  # the features, packed column blocks, in order
        self._widths: list[int] = []
        self._unpacked: np.ndarray | None = None  # and unpacked, while the fit works on them
        self._n = np.array([len(rows) for rows in self._folds], dtype=float)
        self._sy = np.array([self._y[rows].sum() for rows in self._folds])
        self._syy = np.array([self._y[rows] @ self._y[rows] for rows in self._folds])
        self._sx = np.zeros((len(self._folds), 0))
        self._xy = np.zeros((len(self._folds), 0))
        counts = np.uint16 if self._n.max() < 2**16 else np.float32 if len(self._y) < _EXACT_FLOAT32_COUNTS \
            else np.float64
        self._G = np.zeros((len(self._folds), 0, 0), dtype=counts)
        self._G_total = np.zeros((0, 0), dtype=np.float32 if len(self._y) < _EXACT_FLOAT32_COUNTS else np.float64)
        self.add_columns(features)

    @property
    def n_columns(self) -> int:
        return sum(self._widths)

    def columns(self, cols=None) -> np.ndarray:
        """The features (bool ``[m, len(cols)]``; all when ``cols`` is None), unpacked: only the
        blocks that hold a wanted column, or from the unpacked copy kept until :meth:`park`."""
        cols = np.arange(self.n_columns) if cols is None else np.asarray(cols, dtype=np.int64)
        if self._unpacked is not None:
            return self._unpacked[:, cols]
        out = np.empty((len(self._y), len(cols)), dtype=bool)
        start = 0
        for bits, width in zip(self._bits, self._widths):
            inside = (cols >= start) & (cols < start + width)
            if inside.any():
                out[:, inside] = np.unpackbits(bits, axis=1, count=width)[:, cols[inside] - start]
            start += width
        return out

    def add_columns(self, features: np.ndarray) -> np.ndarray:
        """Append 0/1 columns; returns their indices. Costs their products with every column."""
        new = np.asarray(features, dtype=bool)
        dtype = self._G_total.dtype
        p, q = self.n_columns, new.shape[1]
        G = np.zeros((len(self._folds), p + q, p + q), dtype=self._G.dtype)
        G[:, :p, :p] = self._G
        old = self.columns()
        sx, xy = [], []
        for f, rows in enumerate(self._folds):
            fresh = new[rows].astype(dtype)
            cross = old[rows].astype(dtype).T @ fresh
            G[f, :p, p:], G[f, p:, :p] = cross, cross.T
            G[f, p:, p:] = fresh.T @ fresh
            sx.append(fresh.sum(axis=0, dtype=float))
            xy.append(self._y[rows] @ fresh)
        self._G, self._G_total = G, G.sum(axis=0, dtype=dtype)
        self._sx = np.hstack([self._sx, np.array(sx).reshape(len(self._folds), q)])
        self._xy = np.hstack([self._xy, np.array(xy).reshape(len(self._folds), q)])
        self._bits.append(np.packbits(new, axis=1))
        self._widths.append(q)
        self._unpacked = np.hstack([old, new])
        if len(self._bits) > _MAX_BLOCKS:  # one-column additions (tested terms) would pile up
            self._bits, self._widths = [np.packbits(np.hstack([old, new]), axis=1)], [p + q]
        return np.arange(p, p + q)

    def _centred(self, cols, held_out: int | None):
        """Centred Gram, ``X^T y``, ``||y||^2``, means and count of the training models."""
        train = np.ones(len(self._folds), dtype=bool)
        if held_out is not None:
            train[held_out] = False
        n, sy, syy = self._n[train].sum(), self._sy[train].sum(), self._syy[train].sum()
        sx, xy = self._sx[train][:, cols].sum(axis=0), self._xy[train][:, cols].sum(axis=0)
        square = np.ix_(cols, cols)
        G = self._G_total[square].astype(float) - (0 if held_out is None else self._G[held_out][square])
        mu, y_bar = sx / n, sy / n
        return G - n * np.outer(mu, mu), xy - mu * sy, syy - n * y_bar**2, mu, y_bar, int(n)

    def path(self, cols, penalties, held_out: int | None = None, init=None) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients ``[len(penalties), len(cols)]`` and intercepts along ``penalties`` (descending).

        Fitted on every model, or on all folds but ``held_out``; coordinate descent starts from
        ``init`` (coefficients of ``cols``) when given, else from zero.
        """
        cols = np.asarray(cols, dtype=np.int64)
        penalties = np.asarray(penalties, dtype=float)
        if len(cols) == 0:
            _, _, _, _, y_bar, _ = self._centred(cols, held_out)
            return np.zeros((len(penalties), 0)), np.full(len(penalties), y_bar + self._y_mean)
        gram, xy, yy, mu, y_bar, n = self._centred(cols, held_out)
        # lasso_path with a precomputed Gram reads X for its shape only and y for its norm (the
        # duality-gap tolerance): a zero-stride X and a one-entry y of that norm stand in for
        # the data. tests/test_lasso.py checks the results against scikit-learn's Lasso.
        shape_only = np.broadcast_to(np.zeros((1, 1)), (n, len(cols)))
        y_norm = np.zeros(n)
        y_norm[0] = np.sqrt(max(yy, 0.0))
        start = None if init is None else np.asfortranarray(init, dtype=float)
        _, coefs, _ = lasso_path(shape_only, y_norm, alphas=penalties, precompute=np.ascontiguousarray(gram),
                                 Xy=np.ascontiguousarray(xy), check_input=False, max_iter=MAX_ITER, tol=TOL,
                                 coef_init=start)
        coefs = coefs.T
        return coefs, y_bar - coefs @ mu + self._y_mean

    def fit(self, cols, penalty: float) -> tuple[np.ndarray, float]:
        """``(coef, intercept)`` of the Lasso at ``penalty`` on every model."""
        coefs, intercepts = self.path(cols, [penalty])
        return coefs[0], float(intercepts[0])

    def park(self) -> None:
        """Drop the unpacked copy of the features: between passes over the masks a block of
        targets keeps only bits (``columns`` unpacks on demand until the next addition)."""
        self._unpacked = None

    def ols(self, cols, held_out: int | None = None, fixed=None) -> tuple[np.ndarray, float]:
        """``(coef, intercept)`` of least squares on ``cols`` (minimum norm when they are
        collinear, e.g. a player every model kept), on every model or all folds but ``held_out``.

        ``fixed``: ``(columns, coefficients)`` held at those values (an offset), so that ``cols``
        are fitted to what they leave; the intercept then includes their means.
        """
        cols = np.asarray(cols, dtype=np.int64)
        fixed_cols, fixed_coef = (np.empty(0, dtype=np.int64), np.empty(0)) if fixed is None else fixed
        k = len(cols)
        gram, xy, _, mu, y_bar, _ = self._centred(np.concatenate([cols, np.asarray(fixed_cols, dtype=np.int64)]),
                                                  held_out)
        target = xy[:k] - gram[:k, k:] @ fixed_coef
        coef = np.linalg.lstsq(gram[:k, :k], target, rcond=None)[0] if k else np.zeros(0)
        return coef, float(y_bar - coef @ mu[:k] - fixed_coef @ mu[k:] + self._y_mean)

    def penalty_grid(self, cols, n_penalties: int, eps: float = 1e-3) -> np.ndarray:
        """scikit-learn's grid: ``n_penalties`` values from the smallest all-zero penalty down ``eps``."""
        _, xy, _, _, _, n = self._centred(np.asarray(cols, dtype=np.int64), None)
        top = np.abs(xy).max() / n if len(xy) else 0.0
        top = top if top > 0 else np.finfo(float).resolution
        return np.geomspace(top, top * eps, n_penalties)

    def alpha_grid(self, cols, n_alphas: int, eps: float = 1e-3) -> np.ndarray:
        """Deprecated name of :meth:`penalty_grid`, kept for one release: ``alpha`` is a kept
        fraction everywhere else in this package."""
        warnings.warn("GramLasso.alpha_grid is deprecated; use GramLasso.penalty_grid", DeprecationWarning,
                      stacklevel=2)
        return self.penalty_grid(cols, n_alphas, eps)

    @property
    def fold_rows(self) -> list[np.ndarray]:
        """The rows (models) of each cross-validation fold."""
        return self._folds

    def cv_errors(self, cols, penalties, init=None, per_fold: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(penalties, errors)``: the penalties from the largest down, and each one's held-out mean
        squared error on each fold (``[folds, penalties]``). ``cols`` are the columns fitted and ``init`` a warm
        start for every fold's path (a nearby solution; the errors do not depend on it beyond the
        solver's tolerance); with ``per_fold``, each is a list of one per fold (a support chosen
        on that fold's training rows alone)."""
        penalties = np.sort(np.asarray(penalties, dtype=float))[::-1]
        mse = np.zeros((len(self._folds), len(penalties)))
        for f in range(len(self._folds)):
            fold_cols = np.asarray(cols[f] if per_fold else cols, dtype=np.int64)
            coefs, intercepts = self.path(fold_cols, penalties, held_out=f, init=init[f] if per_fold else init)
            b = intercepts - self._y_mean  # on the centred y of the statistics
            G = self._G[f][np.ix_(fold_cols, fold_cols)].astype(float)
            sse = (self._syy[f] - 2 * b * self._sy[f] - 2 * coefs @ self._xy[f, fold_cols] + self._n[f] * b**2
                   + 2 * b * (coefs @ self._sx[f, fold_cols]) + np.einsum("ap,pq,aq->a", coefs, G, coefs))
            mse[f] = sse / self._n[f]
        return penalties, mse

    def cv(self, cols, penalties, init=None) -> tuple[float, np.ndarray, float]:
        """``(penalty, coef, intercept)``: the penalty of least held-out squared error over the
        folds (:meth:`cv_errors`; the first on ties, as ``LassoCV``), refitted on every model."""
        penalties, mse = self.cv_errors(cols, penalties, init)
        penalty = float(penalties[np.argmin(mse.sum(axis=0))])
        return (penalty, *self.fit(cols, penalty))

    def residual(self, cols, coef, intercept: float) -> np.ndarray:
        """``y - intercept - F[:, cols] @ coef`` on every model (only the non-zero columns are read)."""
        coef = np.asarray(coef, dtype=float)
        used = np.flatnonzero(coef)
        features, pred = self.columns(np.asarray(cols)[used]), np.empty(len(self._y))
        step = max(256, _CHUNK_VALUES // max(len(used), 1))
        for start in range(0, len(pred), step):  # no [m, p] float copy
            pred[start:start + step] = features[start:start + step].astype(float) @ coef[used]
        return self._y + self._y_mean - intercept - pred


def fold_ids(models: int, cv: int, random_state) -> np.ndarray:
    """The cross-validation fold of each model: shuffled ``KFold`` splits, as ``LassoCV`` takes them."""
    from sklearn.model_selection import KFold

    if not 2 <= cv <= models:
        raise ValueError(f"cv={cv} folds need 2 <= cv <= the {models} models fitted")
    folds = np.empty(models, dtype=np.int64)
    for fold, (_, held) in enumerate(KFold(cv, shuffle=True, random_state=random_state).split(np.empty(models))):
        folds[held] = fold
    return folds


def allowed_penalties(penalties: np.ndarray, floor: float) -> np.ndarray:
    """The ``penalties`` not below ``floor`` (the first of them if none is)."""
    allowed = penalties[penalties >= floor]
    return allowed if len(allowed) else penalties[:1]


def cv_above(gram: GramLasso, cols, penalties, floor: float, init=None):
    """``((penalty, coef, intercept), at_floor)``: :meth:`GramLasso.cv` over the
    :func:`allowed_penalties`; ``at_floor`` when the best is the smallest of them and some were
    left out."""
    allowed = allowed_penalties(penalties, floor)
    fit = gram.cv(cols, allowed, init)
    return fit, bool(len(allowed) < len(penalties) and fit[0] == allowed.min())
