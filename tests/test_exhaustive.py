"""Exhaustive references against brute force, and the recovery comparison on a known game."""

import itertools

import numpy as np
import pytest

from datamodels.fit.exhaustive import exact_mobius, projection, recovery, seed_average, subset_masks
from datamodels.interactions import LinearDatamodel, ProxySPEX, mobius_predict


def mask_id_of(S):
    return sum(1 << p for p in S)


def test_exact_mobius_is_the_inclusion_exclusion_sum():
    n = 6
    values = np.random.default_rng(0).normal(size=(2**n, 2))
    exact = exact_mobius(values)
    for k in range(n + 1):
        for S in itertools.combinations(range(n), k):
            brute = sum((-1) ** (k - len(T)) * values[mask_id_of(T)]
                        for j in range(k + 1) for T in itertools.combinations(S, j))
            np.testing.assert_allclose(exact[mask_id_of(S)], brute, atol=1e-12)
    with pytest.raises(ValueError, match="needs 2\\^n values"):
        exact_mobius(values[:10])


def star_sweep(n=8, noise=0.3, seed=0):
    """A star game (one hub interacting with every other player) trained twice per subset."""
    game = {(): 0.0, (0,): 9.0, **{(j,): 1.0 for j in range(1, n)}, **{(0, j): -1.3 for j in range(1, n)}}
    masks = subset_masks(n)
    mask_id = np.repeat(np.arange(2**n), 2)
    repeat = np.tile([0, 1], 2**n)
    margins = mobius_predict(game, masks)[mask_id] + np.random.default_rng(seed).normal(0, noise, len(mask_id))
    return game, masks[mask_id], margins[:, None], mask_id, repeat


def test_projection_of_an_order_two_game_is_the_game():
    game, masks, margins, mask_id, repeat = star_sweep(noise=0.0)
    means, within = seed_average(margins, mask_id, 8)
    assert within[0] == pytest.approx(0.0, abs=1e-20)
    terms, coef, se, share = projection(means, within, np.full(2**8, 2), max_order=3)
    fitted = {S: v for S, v in zip(terms, coef[1:, 0]) if abs(v) > 1e-9}
    assert fitted == pytest.approx({k: v for k, v in game.items() if k})
    assert share[0] == pytest.approx(1.0)
    # ... and with every order, the projection is the exact spectrum
    _, full, _, _ = projection(means, within, np.full(2**8, 2), max_order=8)
    exact = exact_mobius(means)[:, 0]
    assert full[0, 0] == pytest.approx(exact[0])
    for S, v in zip(terms_all := [S for k in range(1, 9) for S in itertools.combinations(range(8), k)], full[1:, 0]):
        assert v == pytest.approx(exact[mask_id_of(S)], abs=1e-9)
    assert len(terms_all) == 2**8 - 1


def test_recovery_scores_fits_against_the_projection():
    game, masks, margins, mask_id, repeat = star_sweep()
    table = recovery(masks, margins, mask_id, repeat, {"proxyspex": ProxySPEX(), "linear": LinearDatamodel()},
                     budgets=[96, 160])
    assert list(table.columns) == ["target", "engine", "budget", "subsets", "r2", "r2_projection", "share", "pairs_real",
                                   "recall", "precision", "pair_error", "kinds_agree", "pairs_real_order2",
                                   "recall_order2"]
    assert len(table) == 4 and (table["pairs_real"] >= 7).all()
    proxy = table[table["engine"] == "proxyspex"].set_index("budget")
    linear = table[table["engine"] == "linear"].set_index("budget")
    assert (proxy["recall"] >= 0.85).all() and (proxy["precision"] >= 0.85).all()
    assert (proxy["kinds_agree"] == 1.0).all()  # the star's pairs are redundant: opposite to the mains
    assert (linear["recall"] == 0).all() and (proxy["r2"] > linear["r2"] + 0.1).all()
    with pytest.raises(ValueError, match="needs an exhaustive sweep"):
        recovery(masks[::-1], margins, mask_id, repeat, {"linear": LinearDatamodel()}, budgets=[64])
