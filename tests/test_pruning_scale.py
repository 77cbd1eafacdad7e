"""The sparse greedy (datamodels/pruning/greedy.py) against today's dense one, frozen in
benchmarks/prune_reference.py, and against brute force; the Surrogate's CSR terms."""

import itertools

import numpy as np
import pytest
from scipy import special

from benchmarks.prune_reference import as_reference
from benchmarks.prune_reference import greedy_keep_set as reference_keep_set
from benchmarks.prune_reference import synergy_blocks as reference_blocks
from datamodels.pruning import PruningError, Surrogate, greedy_keep_set, synergy_blocks
from datamodels.pruning.greedy import greedy_keep_sets


def random_surrogate(rng, n, T, mains, pairs, triples=0, strong=0, zero_players=0) -> Surrogate:
    """Random polynomials: ``mains`` main effects, ``pairs`` pairs and ``triples`` triples per
    target; ``strong`` pairs per target big enough (in units of tau) to form synergy blocks; the
    last ``zero_players`` players in no term (their scores tie at 0)."""
    live = n - zero_players
    target, members, mobius = [], [], []
    for t in range(T):
        for i in rng.choice(live, mains, replace=False):
            target.append(t), members.append([int(i)]), mobius.append(rng.normal(0, 1))
        for order, count in ((2, pairs), (3, triples)):
            for _ in range(count):
                target.append(t), members.append(rng.choice(live, order, replace=False).tolist())
                mobius.append(rng.normal(0, 0.7))
        for _ in range(strong):
            target.append(t), members.append(rng.choice(live, 2, replace=False).tolist())
            mobius.append(rng.uniform(2.0, 4.0))
    return Surrogate.from_terms(n, rng.normal(0, 2, T), rng.uniform(0.5, 2.0, T), target, members, mobius)


def expected_accuracy(s: Surrogate, kept) -> float:
    x = np.zeros((1, s.n), dtype=bool)
    x[0, list(kept)] = True
    return float(special.ndtr(s.predict(x)[0] / s.scale).mean())


def dense_predict(s: Surrogate, masks) -> np.ndarray:
    """The polynomial term by term, by brute force."""
    ref = as_reference(s)
    out = np.tile(s.constant, (len(masks), 1))
    for t, m, v in zip(ref.target, ref.members, ref.mobius):
        out[:, t] += v * masks[:, list(m)].all(1)
    return out


@pytest.mark.parametrize("seed", range(40))
def test_sparse_greedy_keeps_what_the_dense_one_kept(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 120))
    s = random_surrogate(rng, n, int(rng.integers(1, 6)), min(n - 3, int(rng.integers(1, 20))), int(rng.integers(0, 8)),
                         int(rng.integers(0, 3)), strong=int(rng.integers(0, 2)), zero_players=int(rng.integers(0, 3)))
    classes = rng.integers(0, 3, n) if seed % 2 else None
    threshold = [1.0, 0.5, 3.0][seed % 3]
    sizes = sorted({max(1, round(f * n)) for f in (0.9, 0.7, 0.5, 0.3, 0.2)}, reverse=True)
    ref = as_reference(s)
    assert [b.tolist() for b in synergy_blocks(s, threshold)] == [b.tolist() for b in reference_blocks(ref, threshold)]
    expected = {}
    for size in sizes:
        try:
            expected[size] = reference_keep_set(ref, size, classes, 1, threshold, seed).tolist()
        except PruningError as err:
            expected[size] = str(err)
    for size in sizes:
        try:
            got = greedy_keep_set(s, size, classes, 1, threshold, seed).tolist()
        except PruningError as err:
            got = str(err)
        assert got == expected[size], size
    if all(isinstance(v, list) for v in expected.values()):
        together = greedy_keep_sets(s, sizes, classes, 1, threshold, seed)
        assert {k: v.tolist() for k, v in together.items()} == expected
