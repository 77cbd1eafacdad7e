"""The interaction engine against ground truth: brute force for small n, planted games."""

import itertools
from math import factorial

import lightgbm as lgb
import numpy as np
import pytest

from datamodels.fit.faithfulness import r2
from datamodels.sweep.planted import planted_game, unanimity_game
from datamodels.interactions import (
    LinearDatamodel,
    ProxySPEX,
    banzhaf_interaction_index,
    banzhaf_values,
    booster_fourier,
    fit_targets,
    fourier_to_mobius,
    interaction_table,
    make_engine,
    mobius_predict,
    mobius_to_fourier,
    shapley_interaction_index,
    shapley_values,
)


def all_masks(n):
    return np.array(list(itertools.product([0, 1], repeat=n)), dtype=bool)


def walsh_hadamard(values, n):
    """Dense F(k) = 2^-n sum_x f(x) (-1)^<k,x>, masks in itertools.product order (bit 0 = x_0)."""
    F = np.array(values, dtype=float).reshape((2,) * n)
    for axis in range(n):
        a, b = np.take(F, 0, axis=axis), np.take(F, 1, axis=axis)
        F = np.stack([(a + b) / 2, (a - b) / 2], axis=axis)
    return F.reshape(-1)


def fourier_eval(fourier, X):
    return sum(v * (-1.0) ** X[:, list(k)].sum(axis=1) for k, v in fourier.items())


def random_spectrum(n, orders, rng, size=12):
    spec = {(): rng.normal()}
    for _ in range(size):
        k = rng.choice(orders)
        spec[tuple(sorted(rng.choice(n, k, replace=False).tolist()))] = rng.normal()
    return spec


def planted_data(n, m, alpha, noise, seed, game_seed=None):
    truth = planted_game(n, seed=seed if game_seed is None else game_seed)
    rng = np.random.default_rng(seed + 1000)
    X, X_test = rng.random((m, n)) < alpha, rng.random((4000, n)) < alpha
    f, f_test = mobius_predict(truth, X), mobius_predict(truth, X_test)
    sd = noise * f.std()
    return truth, X, f + rng.normal(0, sd, m), X_test, f_test + rng.normal(0, sd, len(f_test))


# ------------------------------------------------------------------ tree -> Fourier exactness


@pytest.mark.parametrize(
    "n, depth, alpha, extra",
    [(10, 3, 0.5, {}), (12, 5, 0.3, {}), (8, 4, 0.5, {"zero_as_missing": True})],
)
def test_booster_spectrum_is_exact(n, depth, alpha, extra):
    rng = np.random.default_rng(n)
    X = rng.random((3000, n)) < alpha
    y = 2 * X[:, 0] - 3 * X[:, 1] * X[:, 2] + X[:, 3] * X[:, 4] * X[:, 5] + rng.normal(0, 0.5, 3000)
    params = dict(objective="regression", max_depth=depth, num_leaves=2**depth, verbose=-1,
                  num_threads=1, min_child_samples=5, **extra)
    booster = lgb.train(params, lgb.Dataset(X.astype(float), y), num_boost_round=60)
    fourier = booster_fourier(booster)
    grid = all_masks(n)
    pred = booster.predict(grid.astype(float))
    assert max(len(k) for k in fourier) <= depth
    np.testing.assert_allclose(fourier_eval(fourier, grid), pred, atol=1e-9)
    dense = np.zeros(2**n)
    for k, v in fourier.items():
        dense[sum(1 << (n - 1 - i) for i in k)] = v
    np.testing.assert_allclose(dense, walsh_hadamard(pred, n), atol=1e-9)


# ------------------------------------------------------------------ conversions and indices


def test_mobius_fourier_round_trips_and_evaluation():
    rng = np.random.default_rng(0)
    n = 8
    mobius = random_spectrum(n, [1, 2, 3], rng)
    fourier = mobius_to_fourier(mobius)
    back = fourier_to_mobius(fourier)
    assert set(back) == set(mobius)
    np.testing.assert_allclose([back[k] for k in mobius], list(mobius.values()), atol=1e-12)
    grid = all_masks(n)
    np.testing.assert_allclose(mobius_predict(mobius, grid), fourier_eval(fourier, grid), atol=1e-12)
    fourier2 = random_spectrum(n, [1, 2, 3, 4], rng)
    again = mobius_to_fourier(fourier_to_mobius(fourier2))
    np.testing.assert_allclose([again.get(k, 0.0) for k in fourier2], list(fourier2.values()), atol=1e-12)


def brute_indices(v, n, S, shapley):
    """Grabisch's Shapley / Banzhaf interaction index of S from game values v[frozenset]."""
    rest = [i for i in range(n) if i not in S]
    total = 0.0
    for t in range(len(rest) + 1):
        for T in itertools.combinations(rest, t):
            delta = sum((-1) ** (len(S) - len(L)) * v[frozenset(T) | frozenset(L)]
                        for l in range(len(S) + 1) for L in itertools.combinations(S, l))
            if shapley:
                w = factorial(n - t - len(S)) * factorial(t) / factorial(n - len(S) + 1)
            else:
                w = 2.0 ** -(n - len(S))
            total += w * delta
    return total


def test_indices_match_brute_force_definitions():
    rng = np.random.default_rng(1)
    n = 5
    mobius = {S: rng.normal() for k in range(4) for S in itertools.combinations(range(n), k)}
    v = {frozenset(np.flatnonzero(x)): val for x, val in zip(all_masks(n), mobius_predict(mobius, all_masks(n)))}
    sii, bii = shapley_interaction_index(mobius, order=3), banzhaf_interaction_index(mobius, order=3)
    for k in (1, 2, 3):
        for S in itertools.combinations(range(n), k):
            assert sii[S] == pytest.approx(brute_indices(v, n, S, shapley=True), abs=1e-12)
            assert bii[S] == pytest.approx(brute_indices(v, n, S, shapley=False), abs=1e-12)
    shap = [sum(factorial(len(T)) * factorial(n - len(T) - 1) / factorial(n) * (v[T | {i}] - v[T])
                for x in all_masks(n) if not x[i] for T in [frozenset(np.flatnonzero(x))])
            for i in range(n)]
    np.testing.assert_allclose(shapley_values(mobius, n), shap, atol=1e-12)
    # Shapley values are efficient: they share f(all) - f(none).
    assert shapley_values(mobius, n).sum() == pytest.approx(v[frozenset(range(n))] - v[frozenset()])
    banz = [np.mean([v[T | {i}] - v[T] for x in all_masks(n) if not x[i]
                     for T in [frozenset(np.flatnonzero(x))]]) for i in range(n)]
    np.testing.assert_allclose(banzhaf_values(mobius, n), banz, atol=1e-12)


def kinds_of(mobius):
    table = interaction_table(mobius)
    return dict(zip(table["members"].map(tuple), table["kind"]))


def test_kind_rule_with_mixed_sign_mains():
    mobius = {(): 0.0, (0,): 1.0, (1,): 0.5, (2,): -2.0, (3,): 0.1,
              (0, 1): 0.7, (0, 2): 0.4, (1, 3): -0.3, (0, 1, 2): -0.1}
    kinds = kinds_of(mobius)
    assert kinds[(0, 1)] == "synergy"  # same sign as both mains
    assert kinds[(0, 2)] == "redundancy"  # mixed mains, net -1.0, pair +0.4
    assert kinds[(1, 3)] == "redundancy"  # net +0.6, pair -0.3
    assert kinds[(0, 1, 2)] == "synergy"  # net -0.5, triple -0.1
    assert kinds[(0,)] == "main"
    assert kinds_of({(): 1.0, (4, 5): -1.0})[(4, 5)] == "synergy"  # they matter only together
    table = interaction_table(mobius)
    assert list(table["order"]) == [len(k) for k in table["members"]]
    assert list(table["mobius"].abs()) == sorted(table["mobius"].abs(), reverse=True)


# ------------------------------------------------------------------ planted games


def planted_support(truth):
    return {k: v for k, v in truth.items() if len(k) > 1}


@pytest.mark.parametrize("alpha", [0.5, 0.3])
def test_recovers_planted_game_with_sign_and_kind(alpha):
    truth, X, y, X_test, y_test = planted_data(n=40, m=3000, alpha=alpha, noise=0.3, seed=3)
    est = ProxySPEX(max_order=3, random_state=0).fit(X, y)
    found = planted_support(est.mobius_)
    planted = planted_support(truth)
    assert len([k for k in planted if len(k) == 3]) == 1
    truth_kinds, kinds = kinds_of(truth), kinds_of(est.mobius_)
    for members, value in planted.items():
        assert members in found, f"planted {members} = {value} not found"
        assert np.sign(found[members]) == np.sign(value)
        assert kinds[members] == truth_kinds[members]
        assert found[members] == pytest.approx(value, rel=0.3)
    assert len(set(found) - set(planted)) <= 1
    assert r2(y_test, est.predict(X_test)) > 0.85
    assert set(est.top_interactions(3, order=2)["order"]) == {2}


@pytest.mark.parametrize("noise", [0.5, 1.0])
def test_never_less_faithful_than_linear_datamodel(noise):
    # The data-attribution regime: dense small mains on all players, a few strong groups, noise
    # at 0.5x and 1x the signal's standard deviation (held-out R^2 ceilings about 0.8 and 0.5).
    for seed in (11, 12):
        truth, X, y, X_test, y_test = planted_data(n=100, m=1500, alpha=0.5, noise=noise, seed=seed)
        linear = LinearDatamodel().fit(X, y)
        proxy = ProxySPEX(max_order=3).fit(X, y)
        assert r2(y_test, proxy.predict(X_test)) >= r2(y_test, linear.predict(X_test))
        planted = planted_support(truth)
        found = planted_support(proxy.mobius_)
        assert len(set(found) - set(planted)) <= 2, "almost no false interactions"
        assert all(np.sign(found[k]) == np.sign(v) for k, v in planted.items() if k in found)
        if noise == 0.5:
            assert len(set(found) & set(planted)) >= 4


def test_linear_datamodel_is_first_order():
    truth, X, y, X_test, y_test = planted_data(n=30, m=600, alpha=0.5, noise=0.2, seed=5)
    model = LinearDatamodel().fit(X, y)
    assert max(len(k) for k in model.mobius_) == 1 and () in model.mobius_
    np.testing.assert_allclose(model.predict(X_test), mobius_predict(model.mobius_, X_test))
    assert r2(y_test, model.predict(X_test)) > 0.3


# ------------------------------------------------------------------ many targets


@pytest.mark.slow
def test_fit_targets_in_two_workers_matches_one_process():
    rng = np.random.default_rng(2)
    X = rng.random((200, 12)) < 0.5
    x = X.astype(float)
    Y = np.stack([x[:, 0] + 2 * x[:, 1] * x[:, 2], x[:, 3] - x[:, 4]], axis=1) + rng.normal(0, 0.1, (200, 2))
    est = ProxySPEX(max_order=2)
    serial = fit_targets(est, X, Y, progress=False)
    parallel = fit_targets(est, X, Y, n_jobs=2, progress=False)
    assert [f.target for f in parallel] == [0, 1]
    for a, b in zip(serial, parallel):
        assert a.estimator.mobius_ == b.estimator.mobius_ and b.seconds > 0
    assert (1, 2) in serial[0].estimator.mobius_


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("estimator", [ProxySPEX, LinearDatamodel])
def test_bad_input_errors(estimator):
    rng = np.random.default_rng(0)
    X = (rng.random((50, 6)) < 0.5).astype(int)
    y = rng.normal(size=50)
    name = estimator.__name__
    with pytest.raises(ValueError, match=r"only 0/1.*found 2 at row 3, column 1"):
        bad = X.copy()
        bad[3, 1] = 2
        estimator().fit(bad, y)
    with pytest.raises(ValueError, match=f"{name}.fit: X has 50 models .* y has 49"):
        estimator().fit(X, y[:-1])
    for value in (np.nan, np.inf):
        with pytest.raises(ValueError, match=rf"must be finite; y\[7\] = {value}"):
            estimator().fit(X, np.where(np.arange(50) == 7, value, y))
    with pytest.raises(ValueError, match="y is constant"):
        estimator().fit(X, np.ones(50))
    with pytest.raises(ValueError, match="at least 20 models .* got 10"):
        estimator().fit(X[:10], y[:10])
    with pytest.raises(ValueError, match="2-D mask array"):
        estimator().fit(X[0], y)
    fitted = estimator().fit(X, y)
    with pytest.raises(ValueError, match="has 5 players but the model was fitted on 6"):
        fitted.predict(X[:, :5])


def test_unknown_method_and_errors_name_the_target():
    with pytest.raises(ValueError, match="unknown fit engine 'lasso'; choose one of linear, linear_gpu, proxyspex, spex"):
        make_engine("lasso")
    X = np.random.default_rng(0).random((40, 5)) < 0.5
    Y = np.ones((40, 3))
    Y[:, 0] = np.arange(40)
    with pytest.raises(ValueError, match="target 1: LinearDatamodel.fit: y is constant"):
        fit_targets(LinearDatamodel(), X, Y, progress=False)


def test_first_order_proxy_is_the_linear_datamodel():
    truth, X, y, _, _ = planted_data(n=30, m=600, alpha=0.5, noise=0.2, seed=5)
    X[:, 3] = True  # a player every model kept: no effect can be told, and nothing breaks
    proxy = ProxySPEX(max_order=1).fit(X, y)
    assert proxy.n_candidates_ == 0 and (3,) not in proxy.mobius_
    assert proxy.mobius_ == LinearDatamodel().fit(X, y).mobius_


# ------------------------------------------------------------------ hierarchy, dense games, high order


def test_hierarchical_triple_comes_back_with_its_pairs():
    # Mains, pairs and the triple all present: each must be judged on its own evidence, not
    # locked out by its superset (before: the triple at 0.80, its pairs at 0).
    game = {(): 0.0, (3,): 0.2, (17,): 0.2, (40,): 0.2, (3, 17): 0.2, (3, 40): 0.2, (17, 40): 0.2,
            (3, 17, 40): 0.5}
    rng = np.random.default_rng(0)
    X = rng.random((4000, 64)) < 0.5
    f = mobius_predict(game, X)
    fit = ProxySPEX().fit(X, f + rng.normal(0, 0.1 * f.std(), 4000))
    found = {k: v for k, v in fit.mobius_.items() if len(k) > 1}
    assert set(found) == {k for k in game if len(k) > 1}
    for members, value in found.items():
        assert value == pytest.approx(game[members], abs=0.05)


@pytest.mark.parametrize("seed", [0, 1])
def test_dense_unanimity_game_is_recovered_from_noiseless_masks(seed):
    game = unanimity_game(60, 100, 3, seed)
    rng = np.random.default_rng(seed + 10)
    X, X_test = rng.random((2000, 60)) < 0.5, rng.random((3000, 60)) < 0.5
    fit = ProxySPEX().fit(X, mobius_predict(game, X))
    true = {k for k in game if len(k) > 1}
    found = {k for k, v in fit.mobius_.items() if len(k) > 1}
    assert len(true & found) >= len(true) - 1 and len(found - true) <= 1
    assert r2(mobius_predict(game, X_test), fit.predict(X_test)) > 0.999


def test_orders_above_three_when_max_order_asks():
    game = {(): 0.0, (1,): 0.5, (2,): 0.5, (3,): 0.5, (4,): 0.5, (1, 2, 3, 4): 1.0, (5, 6): -1.0}
    rng = np.random.default_rng(3)
    X = rng.random((4000, 40)) < 0.5
    f = mobius_predict(game, X)
    fit = ProxySPEX(max_order=4).fit(X, f + rng.normal(0, 0.1 * f.std(), 4000))
    found = {k: v for k, v in fit.mobius_.items() if len(k) > 1}
    assert set(found) == {(1, 2, 3, 4), (5, 6)}
    assert found[(1, 2, 3, 4)] == pytest.approx(1.0, abs=0.1)


def test_tests_stay_calibrated_with_a_dense_tail_shared_by_a_masks_seeds():
    # Every player a faint main effect, two seeds per mask, a working set far smaller than n: the
    # tail the working set leaves out is the same for both seeds of a mask, so their residuals
    # are correlated and a test that takes the models as independent is too bold (issue 22,
    # item 5: 35 false pairs per target at 10^5 models). Three planted synergy pairs to find.
    n, masks = 2000, 4000
    truth = planted_game(n, n_synergy=3, n_redundancy=0, n_triples=0, strength=0.5, n_mains=20, tail_sd=0.03,
                         seed=5)
    rng = np.random.default_rng(6)
    X = np.repeat(rng.random((masks, n)) < 0.5, 2, axis=0)
    y = mobius_predict(truth, X) + rng.normal(0, 0.1, len(X))
    est = ProxySPEX(screen_k=100, random_state=0).fit(X, y)
    planted, found = planted_support(truth), planted_support(est.mobius_)
    assert set(planted) <= set(found)
    assert all(np.sign(found[k]) == np.sign(v) for k, v in planted.items())
    assert len(set(found) - set(planted)) == 0, sorted(set(found) - set(planted))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_tested_redundant_pair_keeps_its_least_squares_size(seed):
    """The relaxed refit (step 6, ``relax=True``, the default): the accepted pair and its members by least
    squares, the other mains held at their L1 values. Its size is least squares' on the whole design (the held
    mains are large and barely shrunk), where the L1 refit at the same penalty shrinks it; that L1 refit is the
    fit's ``shrunk_mobius_`` (what pruning optimises), exactly the fit without the relaxed refit."""
    from datamodels.interactions.lasso import GramLasso, fold_ids

    rng = np.random.default_rng(seed)
    m = 6000
    X = rng.random((m, 12)) < 0.5
    pair = X[:, 0] & X[:, 1]
    y = X[:, :6] @ np.array([1.0, 1.0, 0.5, -0.5, 0.3, 0.2]) - 0.15 * pair + rng.normal(0, 0.5, m)
    fit = ProxySPEX(relax=True).fit(X, y)
    assert [k for k in fit.mobius_ if len(k) > 1] == [(0, 1)]
    design = np.hstack([X, pair[:, None]])
    ols = np.linalg.lstsq(np.hstack([design, np.ones((m, 1))]).astype(float), y, rcond=None)[0]
    assert fit.mobius_[(0, 1)] == pytest.approx(ols[12], abs=0.003)
    assert fit.mobius_[(0,)] == pytest.approx(ols[0], abs=0.003) and fit.mobius_[(1,)] == pytest.approx(ols[1], abs=0.003)
    shrunk = GramLasso(design, y, fold_ids(m, 5, 0)).fit(np.arange(13), fit.penalty_)[0][12]
    assert abs(shrunk) < abs(fit.mobius_[(0, 1)]) and fit.dropped_terms_ == 0
    assert fit.shrunk_mobius_ == ProxySPEX(relax=False).fit(X, y).mobius_
    assert fit.shrunk_mobius_[(0, 1)] == pytest.approx(shrunk, abs=1e-3)
    table = fit.top_interactions(len(fit.mobius_))
    shrunk_column = dict(zip(table["members"].map(tuple), table["shrunk"]))
    assert shrunk_column[(0, 1)] == fit.shrunk_mobius_[(0, 1)]
    assert shrunk_column[(5,)] == fit.mobius_[(5,)]  # a held main: the same in both


# ------------------------------------------------------------------ false discovery rate


@pytest.mark.parametrize("family, discoveries", [(6, 0), (40, 0), (40, 3)])
def test_step_up_is_benjamini_hochberg(family, discoveries):
    """``step_up`` against scipy's Benjamini-Hochberg adjusted p-values on the whole family: the
    terms not given count as p = 1, the earlier discoveries as p = 0."""
    from scipy.stats import false_discovery_control

    from datamodels.interactions.term_tests import step_up

    rng = np.random.default_rng(family + discoveries)
    p = np.concatenate([rng.uniform(0, 0.004, 3), rng.uniform(0, 1, 3)])
    whole = np.concatenate([np.zeros(discoveries), p, np.ones(family - len(p) - discoveries)])
    for rate in (0.01, 0.05, 0.2):
        expected = false_discovery_control(whole) <= rate
        assert np.array_equal(step_up(p, rate, family, discoveries), expected[discoveries:discoveries + len(p)])


def test_false_discovery_control_finds_more_and_stays_near_its_rate():
    """``error_rate="fdr"`` on planted games (n = 100, 500 models, noise 0.5 x signal): more of the
    planted interactions than familywise control, with few false ones (benchmarks/error_rates.py
    measures it over more games); on a game with no interaction, no pair passes. False ones are
    counted outside the planted terms: a planted triple whose own test fails leaves real signal on
    its pairs' centred features, which the tests rightly pass."""
    found = {"fwer": [0, 0], "fdr": [0, 0]}  # planted interactions found, terms outside every planted one
    for seed in range(10):
        truth = planted_game(100, seed=seed)
        rng = np.random.default_rng(seed)
        X = rng.random((500, 100)) < 0.5
        signal = mobius_predict(truth, X)
        y = signal + rng.normal(0, 0.5 * signal.std(), 500)
        planted = planted_support(truth)
        for rate in found:
            terms = planted_support(ProxySPEX(error_rate=rate).fit(X, y).mobius_)
            found[rate][0] += len(set(terms) & set(planted))
            found[rate][1] += sum(not any(set(k) <= set(p) for p in planted) for k in terms)
    assert found["fdr"][0] > found["fwer"][0]
    assert found["fdr"][1] <= 0.1 * (found["fdr"][0] + found["fdr"][1])
    rng = np.random.default_rng(0)
    X = rng.random((2000, 100)) < 0.5
    y = X @ rng.normal(0, 0.3, 100) + rng.normal(0, 1, 2000)
    assert planted_support(ProxySPEX(error_rate="fdr").fit(X, y).mobius_) == {}
    with pytest.raises(ValueError, match="error_rate must be 'fwer' .* or 'fdr' .*; got 'bh'"):
        ProxySPEX(error_rate="bh").fit(X, y)


def test_untested_proposals_predict_where_cross_validation_wants_them_and_are_marked():
    """``untested="cv"``: on dense unanimity games at 500 masks, where the tests admit a few of
    about 100 interactions, the untested proposals join the surrogate and predict held-out masks
    better; the tested terms are the same as without them and only they are marked tested. On
    noisy planted games, where the extra terms would fit noise, each fold's own proposals tell
    the cross-validation so and the fit is the tested one (benchmarks/soum_games.py measures
    both over more games)."""
    for seed in (0, 1):
        game = unanimity_game(60, 100, 3, seed)
        rng = np.random.default_rng(seed)
        X, X_test = rng.random((500, 60)) < 0.5, rng.random((3000, 60)) < 0.5
        y, y_test = mobius_predict(game, X), mobius_predict(game, X_test)
        tested, wider = ProxySPEX().fit(X, y), ProxySPEX(untested="cv").fit(X, y)
        assert wider.untested_terms_ > 0 and wider.tested_ == tested.tested_
        assert r2(y_test, wider.predict(X_test)) > r2(y_test, tested.predict(X_test)) + 0.02
        table = wider.top_interactions(len(wider.mobius_))
        marked = set(table.loc[table["tested"], "members"].map(tuple))
        assert marked == set(wider.tested_) & set(wider.mobius_) and marked
        assert (table["order"] > 1).sum() > len(marked)  # the untested ones are there, unmarked
    for seed in (0, 1):
        truth = planted_game(30, seed=seed)
        rng = np.random.default_rng(seed)
        X = rng.random((500, 30)) < 0.5
        signal = mobius_predict(truth, X)
        y = signal + rng.normal(0, 0.5 * signal.std(), 500)
        tested, wider = ProxySPEX().fit(X, y), ProxySPEX(untested="cv").fit(X, y)
        assert wider.untested_terms_ == 0 and wider.mobius_ == tested.mobius_
    # The relaxed refit sizes the tested terms only: the untested ones keep their L1 values.
    game = unanimity_game(60, 100, 3, 0)
    X = np.random.default_rng(0).random((500, 60)) < 0.5
    wider = ProxySPEX(untested="cv").fit(X, mobius_predict(game, X))
    untested = [k for k in wider.mobius_ if len(k) > 1 and k not in wider.tested_]
    assert untested and all(wider.mobius_[k] == wider.shrunk_mobius_[k] for k in untested)
    assert any(wider.mobius_[k] != wider.shrunk_mobius_.get(k, 0.0) for k in wider.tested_ & set(wider.mobius_))
