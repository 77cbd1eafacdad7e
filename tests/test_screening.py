"""Screening and the KKT check against ground truth: brute-force correlations, the Lasso over
all players, planted interactions found through a working set."""

import numpy as np
import pytest
from sklearn.linear_model import Lasso

from datamodels.fit.faithfulness import r2
from datamodels.interactions import LinearDatamodel, screening, ProxySPEX, mobius_predict, null_gradients, screen
from datamodels.packed import PackedMasks
from datamodels.sweep.planted import planted_game


def sparse_game(n, active, seed):
    """Planted pairs and a triple, small mains on ``active`` players only, the rest null."""
    game = planted_game(n, n_synergy=2, n_redundancy=2, n_triples=1, main_sd=0.0, seed=seed)
    rng = np.random.default_rng(seed)
    for i in rng.choice(n, active, replace=False):
        if game.get((int(i),), 0.0) == 0.0:
            game[(int(i),)] = float(rng.normal(0, 0.3))
    return game


def sample(game, n, m, noise, seed):
    rng = np.random.default_rng(seed)
    X = rng.random((m, n)) < 0.5
    f = mobius_predict(game, X)
    return X, f + rng.normal(0, noise * f.std(), m)


def test_screening_scores_are_the_lasso_gradient_at_the_empty_model():
    rng = np.random.default_rng(0)
    X = rng.random((500, 30)) < 0.3
    X[:, 4] = True  # kept by every model: no covariance to speak of
    Y = np.stack([X[:, 1] - 2 * X[:, 2], rng.normal(size=500)], axis=1) + rng.normal(0, 0.5, (500, 2))
    scores = null_gradients(PackedMasks.from_bool(X), Y)
    for t in range(2):
        for j in range(30):
            expected = abs(np.cov(X[:, j], Y[:, t], bias=True)[0, 1])
            assert scores[j, t] == pytest.approx(expected, abs=1e-6)
    top = screen(PackedMasks.from_bool(X), Y, 2)[0]
    assert list(top) == [1, 2]


@pytest.mark.parametrize("estimator", [LinearDatamodel, ProxySPEX])
def test_working_set_of_every_player_is_the_unscreened_fit(estimator):
    game = sparse_game(80, 30, seed=2)
    X, y = sample(game, 80, 1500, 0.5, seed=3)
    default = estimator().fit(X, y)  # n = 80 is below the default screen_k: nothing screened
    explicit = estimator(screen_k=80).fit(PackedMasks.from_bool(X), y)
    assert default.mobius_ == explicit.mobius_
    assert len(default.players_) == 80 and default.kkt_added_ == 0


@pytest.mark.parametrize("floor_rounds", [0, screening.FLOOR_ROUNDS])
def test_kkt_check_gives_the_lasso_over_all_players(monkeypatch, floor_rounds):
    # 60 active players, a working set of 25. Without the floor's rounds (which grow the working
    # set) the KKT check must bring in the players that count; with them, fewer are left to it.
    monkeypatch.setattr(screening, "FLOOR_ROUNDS", floor_rounds)
    game = sparse_game(400, 60, seed=4)
    X, y = sample(game, 400, 3000, 0.3, seed=5)
    screened = LinearDatamodel(screen_k=25).fit(X, y)
    assert screened.kkt_added_ > 0 or floor_rounds > 0
    full = Lasso(screened.penalty_, precompute=True, max_iter=5000, tol=1e-6).fit(X.astype(float), y)
    coef = np.zeros(400)
    for key, value in screened.mobius_.items():
        if len(key) == 1:
            coef[key[0]] = value
    np.testing.assert_allclose(coef, full.coef_, atol=2e-3)
    assert set(np.flatnonzero(full.coef_)) <= set(screened.players_)
    assert screened.mobius_[()] == pytest.approx(full.intercept_, abs=2e-3)


def test_planted_interactions_are_found_through_screening():
    game = sparse_game(1500, 40, seed=6)
    X, y = sample(game, 1500, 4000, 0.3, seed=7)
    X_test, y_test = sample(game, 1500, 3000, 0.3, seed=8)
    planted = {k: v for k, v in game.items() if len(k) > 1}
    screened = ProxySPEX(screen_k=200).fit(X, y)
    unscreened = ProxySPEX(screen_k=1500).fit(X, y)
    for fit in (screened, unscreened):
        found = {k: v for k, v in fit.mobius_.items() if len(k) > 1}
        assert set(planted) <= set(found)
        assert all(np.sign(found[k]) == np.sign(v) for k, v in planted.items())
        assert len(set(found) - set(planted)) <= 1
    assert r2(y_test, screened.predict(X_test)) >= r2(y_test, unscreened.predict(X_test)) - 0.01


@pytest.mark.parametrize("k", [81, 200])  # 0, 2.5, "10": tests/test_engines.py, before any work
def test_screen_k_outside_the_players_is_refused(k):
    X, y = sample(sparse_game(80, 10, seed=1), 80, 200, 0.5, seed=1)
    with pytest.raises(ValueError, match=rf"fit.params.screen_k={k!r} must be an integer in 1..80 .*n=80"):
        ProxySPEX(screen_k=k).fit(X, y)
