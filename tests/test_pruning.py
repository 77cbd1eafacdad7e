import itertools

import numpy as np
import pandas as pd
import pytest

from conftest import TINY, compose_config
from datamodels.pruning import (PruningError, check_fractions, el2n_scores, evaluate_keep_set, full_data_steps,
                                greedy_removal_order, keep_sets, mean_polynomial, random_removal_order,
                                score_removal_order)
from datamodels.sweep import SweepRun

# Players 0 and 1 are near-duplicates (each worth 1 alone, 1 together: redundancy); 2 and 3
# are worthless alone and worth 2.2 together (synergy); 4 and 5 have plain main effects.
PLANTED = {(): 0.3, (0,): 1.0, (1,): 1.0, (0, 1): -1.0, (2,): 0.1, (3,): 0.1, (2, 3): 2.0, (4,): 0.5, (5,): 0.3}


def value(poly, kept):
    return sum(c for members, c in poly.items() if set(members) <= set(kept))


def best_value(poly, n, size):
    return max(value(poly, s) for s in itertools.combinations(range(n), size))


def test_greedy_thins_redundant_pairs_and_keeps_synergistic_pairs_together():
    order = greedy_removal_order(PLANTED, 6)
    sets = keep_sets(order, [1.0, 4 / 6, 0.5, 2 / 6])
    assert len(set(sets[0.5]) & {0, 1}) == 1  # one of the duplicates goes, the other stays
    assert {2, 3} <= set(sets[0.5]) and {2, 3} <= set(sets[2 / 6])
    for kept in sets.values():  # on this game greedy reaches the brute-force optimum at every size
        assert value(PLANTED, kept) == pytest.approx(best_value(PLANTED, 6, len(kept)))


def test_first_order_scores_split_the_synergistic_pair():
    mains_only = {k: v for k, v in PLANTED.items() if len(k) <= 1}
    kept = keep_sets(greedy_removal_order(mains_only, 6), [0.5])[0.5]
    assert set(kept) == {0, 1, 4}  # what a linear datamodel keeps
    assert value(PLANTED, kept) < best_value(PLANTED, 6, 3) - 1.5


def test_greedy_on_random_polynomials_is_close_to_the_optimum():
    rng = np.random.default_rng(0)
    for _ in range(20):
        poly = {(i,): rng.normal() for i in range(8)}
        poly |= {tuple(sorted(rng.choice(8, 2, replace=False))): rng.normal() for _ in range(5)}
        order = greedy_removal_order(poly, 8, seed=1)
        assert sorted(order) == list(range(8))
        kept = keep_sets(order, [0.5])[0.5]
        gap = best_value(poly, 8, 4) - value(poly, kept)
        assert gap >= -1e-12 and gap < 1.5


def test_mean_polynomial_averages_targets_and_refuses_missing_ones():
    table = pd.DataFrame({"target": [0, 0, 1, 1], "members": [[3], [1, 2], [3], [2, 1]],
                          "mobius": [1.0, 2.0, 3.0, -1.0]})
    assert mean_polynomial(table, [0, 1], 2) == {(3,): 2.0, (1, 2): 0.5}
    # a fitted target without any term counts in the mean
    assert mean_polynomial(table, [0, 1, 2, 3], 4) == {(3,): 1.0, (1, 2): 0.25}
    with pytest.raises(PruningError, match="lacks 1 of 3 targets"):
        mean_polynomial(table, [0, 1], 3)


def test_keep_sets_are_nested_and_sized_by_fraction():
    order = random_removal_order(10, seed=3)
    sets = keep_sets(order, [0.3, 1.0, 0.75])
    assert [len(sets[f]) for f in (1.0, 0.75, 0.3)] == [10, 8, 3]
    assert set(sets[0.3]) <= set(sets[0.75]) <= set(sets[1.0])
    for bad in ([0.0], [1.2], [-0.1], []):
        with pytest.raises(PruningError, match=r"in \(0, 1\]"):
            check_fractions(bad)


def test_scores_remove_the_lowest_first():
    assert list(score_removal_order(np.array([0.5, 0.1, 0.9, 0.3]))) == [1, 3, 0, 2]


@pytest.mark.slow
def test_el2n_scores_mislabelled_examples_highest(tmp_path):
    run = SweepRun(compose_config(TINY + ["dataset.train=200", "model.width=8"]), tmp_path)
    flipped = np.arange(0, 200, 20)
    run.splits.train_y[flipped] = (run.splits.train_y[flipped] + 1) % 10
    scores = el2n_scores(run, num_seeds=2, epochs=4)
    assert scores.shape == (200,)
    assert scores[flipped].mean() > 1.5 * np.delete(scores, flipped).mean()


@pytest.mark.slow
def test_evaluation_retrains_with_a_fixed_step_budget(tmp_path):
    run = SweepRun(compose_config(TINY + ["dataset.train=200", "model.width=8", "train.epochs=10"]), tmp_path)
    steps = full_data_steps(run)
    assert steps == 63  # 10 epochs of 200 examples in full batches of 32: ceil(2000 / 32)
    accuracies = evaluate_keep_set(run, np.arange(0, 200, 2), seeds=[0, 1, 2], steps=steps)
    assert len(accuracies) == 3 and len(set(accuracies)) > 1 and min(accuracies) > 0.5
