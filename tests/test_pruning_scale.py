"""The sparse greedy (datamodels/pruning/greedy.py) against today's dense one, frozen in
tests/prune_reference.py, and against brute force; the Surrogate's CSR terms."""


import numpy as np
import pytest
from scipy import special

from datamodels.pruning import PruningError, Surrogate, greedy_keep_set, synergy_blocks
from datamodels.pruning.greedy import greedy_keep_sets
from prune_reference import as_reference
from prune_reference import greedy_keep_set as reference_keep_set
from prune_reference import synergy_blocks as reference_blocks


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


@pytest.mark.parametrize("seed", range(3))
def test_batched_steps_keep_what_the_dense_greedy_kept(seed):
    # Above 1,000 players n // 1000 blocks go per step, all scored at the step's start.
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(2000, 3200))
    s = random_surrogate(rng, n, 4, 300, 40, 5, strong=3, zero_players=50)
    classes = rng.integers(0, 4, n)
    sizes = [round(0.9 * n), round(0.75 * n)]
    assert any(len(b) > 1 for b in synergy_blocks(s, 1.0))
    expected = {size: reference_keep_set(as_reference(s), size, classes, 1, 1.0, seed).tolist() for size in sizes}
    assert {k: v.tolist() for k, v in greedy_keep_sets(s, sizes, classes, 1, 1.0, seed).items()} == expected
    assert greedy_keep_set(s, sizes[0], None, 1, 1.0, seed).tolist() == \
        reference_keep_set(as_reference(s), sizes[0], None, 1, 1.0, seed).tolist()


@pytest.mark.parametrize("seed", range(6))
def test_each_removal_is_the_best_by_brute_force(seed):
    # No blocks, no quotas, one player a step: every step must remove the player whose removal
    # leaves the highest expected accuracy, computed here from the polynomial's predictions.
    rng = np.random.default_rng(200 + seed)
    n = 9
    s = random_surrogate(rng, n, 3, 6, 6, 2, zero_players=1)
    kept = set(range(n))
    for size in range(n - 1, 0, -1):
        now = set(greedy_keep_set(s, size, min_per_class=0, synergy_threshold=np.inf, seed=seed).tolist())
        assert len(now) == size and now < kept
        best = max(expected_accuracy(s, kept - {i}) for i in kept)
        assert expected_accuracy(s, now) == pytest.approx(best, abs=1e-12)
        kept = now


def test_several_sizes_from_one_elimination_equal_one_by_one():
    rng = np.random.default_rng(5)
    n = 1500
    s = random_surrogate(rng, n, 6, 200, 20, 4, strong=2, zero_players=30)
    classes = rng.integers(0, 5, n)
    sizes = [round(f * n) for f in (0.9, 0.7, 0.5, 0.3, 0.2)]
    together = greedy_keep_sets(s, sizes, classes, 2, 1.0, 3)
    for size in sizes:
        assert together[size].tolist() == greedy_keep_set(s, size, classes, 2, 1.0, 3).tolist()


def test_surrogate_terms_in_csr_predict_term_by_term():
    rng = np.random.default_rng(3)
    s = random_surrogate(rng, 40, 5, 10, 8, 4)
    assert s.incidence.shape == (len(s.target), 40) and s.incidence.has_sorted_indices
    masks = rng.random((300, 40)) < 0.6
    np.testing.assert_allclose(s.predict(masks), dense_predict(s, masks), atol=1e-12)
    on = np.stack([masks[:, list(m)].all(1) for m in as_reference(s).members], 1)
    np.testing.assert_allclose(s.term_frequencies(masks), on.mean(0), atol=1e-12)
    unsorted = Surrogate.from_terms(4, [0.0], [1.0], [0, 0], [[3, 1], [2]], [0.5, 0.25])
    assert as_reference(unsorted).members == [(1, 3), (2,)]
    with pytest.raises(PruningError, match="names players outside 0..3: it was made for another sweep"):
        Surrogate.from_terms(4, [0.0], [1.0], [0], [[4]], [1.0])


def test_make_keep_sets_walks_each_surrogate_once_for_all_fractions():
    from datamodels.pruning import make_keep_sets

    rng = np.random.default_rng(8)
    n = 1200
    s = random_surrogate(rng, n, 3, 100, 10, 0, strong=1)
    classes = rng.integers(0, 3, n)
    fractions = [1.0, 0.6, 0.3]
    keep = make_keep_sets(["linear"], fractions, n, classes, {"linear": dict.fromkeys(fractions[1:], s)},
                          progress=False)
    assert keep["size"].tolist() == [n, 720, 360]
    for size, players in zip(keep["size"][1:], keep["players"][1:]):
        assert players == reference_keep_set(as_reference(s), size, classes).tolist()


def test_retraining_methods_need_a_linked_dataset(tmp_path):
    import json

    from datamodels.pruning import PruneSettings, run_evaluation, run_prune

    (tmp_path / "config.json").write_text(json.dumps({"dataset": {"name": "none"}}))
    (tmp_path / "run.json").write_text(json.dumps({"n": 10, "T": 2, "fingerprint": "x"}))
    for settings, call, what in ((PruneSettings(methods=["random", "ccs", "el2n"]), run_prune,
                                  "pruning methods ccs, el2n rank players by EL2N, which trains models"),
                                 (PruneSettings(methods=["random"]), run_evaluation,
                                  "evaluating keep-sets retrains models on the run's data, and .* has no dataset")):
        with pytest.raises(PruningError, match=what):
            call(tmp_path, settings, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "run.json"]  # wrote nothing
