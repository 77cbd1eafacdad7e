"""The batched (GPU) linear datamodel, run on the CPU: the Lasso's solution at the chosen
penalty, the faithfulness of the CPU path, bad input refused."""

import numpy as np
import pytest
from sklearn.linear_model import Lasso

from datamodels.fitting import r2
from datamodels.interactions import LinearDatamodel, mobius_predict
from datamodels.interactions.batched_lasso import fit_linear_batched
from datamodels.packed import PackedMasks
from datamodels.planted import planted_game

GAME = dict(n_synergy=2, n_redundancy=2, n_triples=0, main_sd=0.1, strength=1.0)


def planted(n, m, targets, seed=0):
    rng = np.random.default_rng(seed)
    X, X_test = rng.random((m, n)) < 0.5, rng.random((3000, n)) < 0.5
    Y, F_test = [], []
    for t in range(targets):
        game = planted_game(n, seed=seed + t, **GAME)
        f = mobius_predict(game, X)
        Y.append(f + rng.normal(0, 0.5 * f.std(), m))
        F_test.append(mobius_predict(game, X_test))
    return X, np.stack(Y, 1), X_test, np.stack(F_test, 1)


def test_solution_is_the_lasso_at_the_chosen_penalty():
    X, Y, _, _ = planted(120, 2000, 3)
    fit = fit_linear_batched(PackedMasks.from_bool(X), Y, device="cpu", target_batch=2, tol=1e-6, max_iter=5000,
                             progress=False)
    assert fit.coef.shape == (120, 3) and np.all(fit.alpha > 0)
    for t in range(3):
        reference = Lasso(alpha=fit.alpha[t], tol=1e-10, max_iter=100_000).fit(X.astype(float), Y[:, t])
        assert (reference.coef_ != 0).sum() > 10  # a real path point, not the empty model
        np.testing.assert_allclose(fit.coef[:, t], reference.coef_, atol=1e-5)
        assert fit.intercept[t] == pytest.approx(reference.intercept_, abs=1e-5)
        # The chosen penalty is the path's best on validation; the path stopped early after it.
        best = np.nanargmin(fit.val_mse[:, t])
        assert fit.alpha[t] == pytest.approx(fit.alphas[best, t])
        assert np.isnan(fit.val_mse[:, t]).any()


def test_faithful_as_the_cpu_path():
    X, Y, X_test, F_test = planted(300, 4000, 3, seed=5)
    fit = fit_linear_batched(X, Y, device="cpu", progress=False)
    batched = [r2(F_test[:, t], fit.predict(X_test)[:, t]) for t in range(3)]
    cpu = [r2(F_test[:, t], LinearDatamodel().fit(X, Y[:, t]).predict(X_test)) for t in range(3)]
    assert min(batched) > 0.8
    np.testing.assert_allclose(batched, cpu, atol=0.03)


def test_repeats_of_a_mask_stay_on_one_side_and_bad_input_is_refused():
    X, Y, _, _ = planted(40, 600, 2)
    groups = np.repeat(np.arange(300), 2)
    fit = fit_linear_batched(X, Y, device="cpu", groups=groups, progress=False)
    assert np.isfinite(fit.coef).all()
    bad = Y.copy()
    bad[7, 1] = np.nan
    with pytest.raises(ValueError, match=r"targets \[1\] hold NaN"):
        fit_linear_batched(X, bad, device="cpu", progress=False)
    with pytest.raises(ValueError, match="Y must be"):
        fit_linear_batched(X, Y[:-1], device="cpu", progress=False)
    with pytest.raises(ValueError, match="val_fraction"):
        fit_linear_batched(X, Y, device="cpu", val_fraction=1.0, progress=False)
