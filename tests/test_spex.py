"""SPEX (datamodels.interactions.spex), its mask design, the fit stage on it, the shapiq export."""

import numpy as np
import pytest

from datamodels.fit.exhaustive import recovery, subset_masks
from datamodels.fit.stage import fit_and_evaluate, FitSettings, run_fit
from datamodels.interactions import (SPEX, ProxySPEX, from_interaction_values, mobius_predict, shapley_values,
                                     spex_design, spex_plan, to_interaction_values)
from datamodels.sweep.masks import MaskDesign, MaskError
from datamodels.sweep.planted import planted_game, read_planted_truth, write_planted_sweep

N, BUDGET, DEGREE = 12, 300, 2


def _pure_pair_game():
    """Planted pairs with main effects, plus a pair {2, 7} with none: no hierarchy to lean on."""
    game = planted_game(N, n_synergy=1, n_redundancy=1, n_triples=0, seed=3, n_mains=4)
    assert all((i,) not in game for i in (2, 7))
    return game | {(2, 7): 0.8}


def test_design_is_a_pure_function_of_the_seed():
    b, size = spex_plan(N, BUDGET, DEGREE)
    design = spex_design(N, BUDGET, 0, DEGREE)
    assert design.shape == (size, N) and size <= BUDGET and b >= 3
    spex_design.cache_clear()
    np.random.seed(123)  # the global state SPEX's backend draws from must not matter, nor change
    state = np.random.get_state()[1].copy()
    assert np.array_equal(spex_design(N, BUDGET, 0, DEGREE), design)
    assert np.array_equal(np.random.get_state()[1], state)
    assert not np.array_equal(spex_design(N, BUDGET, 1, DEGREE), design)


def test_spex_recovers_a_planted_game_exactly_without_hierarchy():
    game = _pure_pair_game()
    design = spex_design(N, BUDGET, 0, DEGREE)
    fit = SPEX(BUDGET, 0, DEGREE).fit(design, mobius_predict(game, design))
    # the backend's final Lasso refit leaves residues of order 1e-4
    found = {S: v for S, v in fit.mobius_.items() if abs(v) > 1e-3}
    assert set(found) == set(game)
    assert all(found[S] == pytest.approx(game[S], abs=1e-3) for S in found)
    everything = (np.arange(2**N)[:, None] >> np.arange(N)) & 1 == 1  # brute force over all masks
    np.testing.assert_allclose(fit.predict(everything), mobius_predict(game, everything), atol=1e-2)


def test_spex_refuses_masks_of_another_design_and_small_budgets():
    masks = np.random.default_rng(0).random((400, N)) < 0.5
    with pytest.raises(ValueError, match="distinct masks of its design .* are not among"):
        SPEX(BUDGET, 0, DEGREE).fit(masks, masks.sum(axis=1) + 0.1)
    with pytest.raises(ValueError, match="needs a budget of at least 264 masks; got 100"):
        spex_plan(N, 100, DEGREE)
    with pytest.raises(MaskError, match="design=spex: .*at least 264"):
        MaskDesign("spex", N, budget=100, degree=DEGREE)
    with pytest.raises(MaskError, match="needs sweep.budget"):
        MaskDesign("spex", N)
    with pytest.raises(ValueError, match="this sweep's design is 'bernoulli'"):
        SPEX.params_from_run({"design": "bernoulli", "sweep_seed": 0}, {"budget": None, "seed": None})
    assert SPEX.params_from_run({"design": "spex", "sweep_seed": 4, "budget": 300, "degree": 2}, {"budget": None}) == \
        {"budget": 300, "seed": 4, "degree": 2}


def test_sweep_design_then_fit_stage_judges_on_the_other_masks():
    design = MaskDesign("spex", N, seed=5, budget=BUDGET, degree=DEGREE)
    asked = spex_design(N, BUDGET, 5, DEGREE)
    assert design.num_masks == len(asked) + -(-len(asked) // 4)
    masks = np.array([design.mask(j) for j in range(design.num_masks)])
    assert np.array_equal(masks[:len(asked)], asked)
    game = _pure_pair_game()
    margins = np.stack([mobius_predict(game, masks), mobius_predict(game, masks) * 2], axis=1)
    params = SPEX.params_from_run({"design": "spex", "sweep_seed": 5, "budget": BUDGET, "degree": DEGREE}, {})
    interactions, metrics = fit_and_evaluate(masks, margins, np.arange(len(masks)), "spex", params, progress=False)
    assert (metrics["r2"] > 0.999).all()
    judged = ~SPEX(**params).design_rows(masks)
    asked_rows = {row.tobytes() for row in asked}
    assert judged.tolist() == [row.tobytes() not in asked_rows for row in masks]
    assert judged.sum() >= 0.9 * (len(masks) - len(asked))  # at n = 12 a few judging masks are asked ones
    pair = interactions[(interactions["target"] == 0) & (interactions["order"] == 2)]
    assert {tuple(m) for m in pair["members"]} == {S for S in game if len(S) == 2}
    # ProxySPEX reads a SPEX sweep too (its masks are uniform one by one): allowed, and it fits
    proxy = ProxySPEX().fit(masks, margins[:, 0])
    assert proxy.score(masks, margins[:, 0]) > 0.95


def test_shapiq_export_round_trip_and_shapley_values():
    game = planted_game(N, n_synergy=1, n_redundancy=1, n_triples=1, seed=0)
    values = to_interaction_values(game, N)
    assert values.index == "Moebius" and values.baseline_value == game[()]
    assert from_interaction_values(values) == pytest.approx(game)
    from shapiq.game_theory.moebius_converter import MoebiusConverter

    shapley = MoebiusConverter(values)(index="SV", order=1)
    np.testing.assert_allclose([shapley[(i,)] for i in range(N)], shapley_values(game, N))
    with pytest.raises(ValueError, match="outside 0..11"):
        to_interaction_values({(3, 12): 1.0}, N)


def test_recovery_answers_spex_from_an_exhaustive_sweep():
    n = 10
    game = planted_game(n, n_synergy=1, n_redundancy=1, n_triples=0, seed=2, n_mains=6)
    masks = np.repeat(subset_masks(n), 2, axis=0)
    rng = np.random.default_rng(0)
    margins = (mobius_predict(game, masks) + 0.01 * rng.normal(size=len(masks)))[:, None]
    mask_id, repeat = np.repeat(np.arange(2**n), 2), np.tile([0, 1], 2**n)
    table = recovery(masks, margins, mask_id, repeat, {"spex": SPEX(degree=2)}, budgets=[528])
    design = spex_design(n, 528, 0, 2)
    assert table["subsets"].item() == len(np.unique(design, axis=0)) < 528
    assert table["r2"].item() > 0.99 and table["recall"].item() == 1.0


@pytest.mark.slow  # the whole fit stage, twice, on a sweep it writes: 14 s, most of the fast tier's SPEX time
def test_fit_stage_on_a_spex_sweep_on_disk(tmp_path):
    """A planted sweep of design=spex in the store's genuine format: fit=spex reads its design
    from run.json; fit=proxyspex on the same sweep is allowed (its own held-out split)."""
    design = MaskDesign("spex", N, seed=0, budget=BUDGET, degree=DEGREE)
    write_planted_sweep(tmp_path, N, 2, design.num_masks, noise=0.05, models_per_shard=100, seed=0,
                        progress=False, spex_budget=BUDGET, spex_degree=DEGREE, n_synergy=1, n_redundancy=1,
                        n_triples=0, n_mains=4)
    result = run_fit(tmp_path, FitSettings("spex", {"budget": None, "seed": None, "degree": None}, workers=1),
                     progress=False)
    interactions, metrics = result.outputs["interactions"], result.outputs["metrics"]
    assert result.written and all(p.exists() for p in result.written)
    asked = len(spex_design(N, BUDGET, 0, DEGREE))
    assert (metrics["r2"] > 0.9).all()
    assert ((metrics["models_used"] >= asked) & (metrics["models_used"] < design.num_masks)).all()
    proxy_metrics = run_fit(tmp_path, FitSettings("proxyspex", workers=1), progress=False).outputs["metrics"]
    assert (proxy_metrics["r2"] > 0.8).all()
    for target, game in read_planted_truth(tmp_path).items():  # SPEX decodes each target's planted pairs
        pairs = interactions[(interactions["target"] == target) & (interactions["order"] == 2)]
        found = {tuple(m): v for m, v in zip(pairs["members"], pairs["mobius"])}
        for pair, value in ((S, v) for S, v in game.items() if len(S) == 2):
            assert found.get(pair, 0.0) == pytest.approx(value, abs=0.15 * abs(value))
