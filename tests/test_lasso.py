"""L1 regression from sufficient statistics against scikit-learn's LassoCV and Lasso."""

import numpy as np
import pytest
from sklearn.linear_model import Lasso, LassoCV
from sklearn.model_selection import KFold

from datamodels.interactions.lasso import GramLasso, fold_ids


def data(m, p, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((m, p)) < 0.5
    y = 3.0 + X[:, :8] @ rng.normal(size=8) + 2 * X[:, 0] * X[:, 1] + rng.normal(size=m)
    return X, y


@pytest.mark.parametrize("m, p", [(400, 30), (2000, 150), (150, 300)])
def test_cross_validated_path_is_lassocv(m, p):
    X, y = data(m, p)
    folds = fold_ids(m, 5, random_state=0)
    reference = LassoCV(alphas=40, cv=KFold(5, shuffle=True, random_state=0), precompute=True, max_iter=5000,
                        tol=1e-4).fit(X.astype(float), y)
    gram = GramLasso(X, y, folds)
    cols = np.arange(p)
    grid = gram.penalty_grid(cols, 40)
    np.testing.assert_allclose(grid, reference.alphas_, rtol=1e-12)
    with pytest.warns(DeprecationWarning, match="penalty_grid"):
        np.testing.assert_array_equal(gram.alpha_grid(cols, 40), grid)
    penalty, coef, intercept = gram.cv(cols, grid)
    assert penalty == pytest.approx(reference.alpha_, rel=1e-12)
    np.testing.assert_allclose(coef, reference.coef_, atol=1e-6)
    assert intercept == pytest.approx(reference.intercept_, abs=1e-6)


def test_added_columns_and_subsets_fit_like_lasso_on_that_design():
    X, y = data(1500, 40, seed=1)
    gram = GramLasso(X[:, :30], y, np.zeros(1500, dtype=np.int64))
    pair = X[:, [0]] & X[:, [1]]
    added = gram.add_columns(np.hstack([X[:, 30:], pair]))
    assert list(added) == list(range(30, 41))
    cols = np.array([0, 1, 2, 35, 40])
    design = np.hstack([X, pair])[:, cols].astype(float)
    reference = Lasso(0.01, precompute=True, max_iter=5000, tol=1e-4).fit(design, y)
    coef, intercept = gram.fit(cols, 0.01)
    np.testing.assert_allclose(coef, reference.coef_, atol=1e-5)
    assert intercept == pytest.approx(reference.intercept_, abs=1e-5)
    np.testing.assert_allclose(gram.residual(cols, coef, intercept), y - design @ coef - intercept, atol=1e-9)


def test_fold_count_is_checked():
    with pytest.raises(ValueError, match="cv=1 folds need 2 <= cv <= the 30 models"):
        fold_ids(30, 1, 0)


def test_least_squares_with_held_columns_fits_what_they_leave():
    rng = np.random.default_rng(3)
    X = rng.random((500, 12)) < 0.5
    y = X @ rng.normal(size=12) + rng.normal(0, 0.1, 500)
    gram = GramLasso(X, y, fold_ids(500, 5, 0))
    free, held, values = np.array([0, 3, 7]), np.array([1, 5]), np.array([0.4, -1.2])
    offset = y - X[:, held] @ values
    design = np.column_stack([np.ones(500), X[:, free]])
    expected = np.linalg.lstsq(design, offset, rcond=None)[0]
    coef, intercept = gram.ols(free, fixed=(held, values))
    np.testing.assert_allclose(coef, expected[1:], atol=1e-9)
    assert np.isclose(intercept, expected[0])
    for fold in range(5):  # and on the other folds only
        train = fold_ids(500, 5, 0) != fold
        expected = np.linalg.lstsq(design[train], offset[train], rcond=None)[0]
        np.testing.assert_allclose(gram.ols(free, held_out=fold, fixed=(held, values))[0], expected[1:], atol=1e-9)


def test_cross_validated_errors_take_one_support_per_fold():
    """``cv_errors(per_fold=True)`` with one column list per fold is, fold by fold, the held-out
    error of that fold's support fitted on the other folds (computed here on the rows
    themselves); with the same support everywhere, the shared call."""
    rng = np.random.default_rng(0)
    X = rng.random((300, 8)) < 0.5
    y = X[:, :3] @ np.array([1.0, -0.5, 0.3]) + rng.normal(0, 0.3, 300)
    folds = fold_ids(300, 3, 0)
    gram = GramLasso(X, y, folds)
    penalties, shared = gram.cv_errors(np.arange(8), gram.penalty_grid(np.arange(8), 10))
    np.testing.assert_allclose(gram.cv_errors([np.arange(8)] * 3, penalties, [None] * 3, per_fold=True)[1], shared)
    supports = [np.arange(4), np.arange(8), np.array([0, 2, 5])]
    expected = np.zeros((3, len(penalties)))
    for f, support in enumerate(supports):
        coefs, intercepts = gram.path(support, penalties, held_out=f)
        held = folds == f
        predictions = X[held][:, support].astype(float) @ coefs.T + intercepts
        expected[f] = ((y[held, None] - predictions) ** 2).mean(axis=0)
    np.testing.assert_allclose(gram.cv_errors(supports, penalties, [None] * 3, per_fold=True)[1], expected, rtol=1e-6)
