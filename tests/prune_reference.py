"""Today's (commit fcc3fe8) backward greedy, frozen verbatim as the oracle the scalable one is
checked against (tests/test_pruning_scale.py) and timed against (benchmarks/bench_prune.py).

Only the imports and the adapter :func:`as_reference` are new: the frozen code reads the terms as
a list of member tuples (``surrogate.members``), which the new :class:`Surrogate` no longer
keeps (it holds them in CSR form). Do not edit the two functions below: they are the baseline.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from scipy import special

from datamodels.pruning.quotas import PruningError, class_quotas


def as_reference(surrogate) -> SimpleNamespace:
    """The frozen code's view of a :class:`datamodels.pruning.Surrogate`: members as tuples."""
    indptr, indices = surrogate.incidence.indptr, surrogate.incidence.indices
    members = [tuple(int(i) for i in indices[a:b]) for a, b in zip(indptr[:-1], indptr[1:])]
    return SimpleNamespace(n=surrogate.n, constant=surrogate.constant, scale=surrogate.scale,
                           target=surrogate.target, members=members, mobius=surrogate.mobius)


def greedy_keep_set(surrogate, size: int, classes: np.ndarray | None = None, min_per_class: int = 1,
                    synergy_threshold: float = 1.0, seed: int = 0) -> np.ndarray:
    """The ``size`` players that backward greedy elimination on the expected target accuracy
    keeps (module docstring), sorted. ``classes`` (one per player) turns on the class quotas.

    Each step scores every removable block by the accuracy left after removing it, ``O(T n)``;
    above 1,000 players, ``n // 1000`` blocks go per step (their scores from the same step).
    """
    n, T = surrogate.n, len(surrogate.constant)
    if not 0 < size <= n:
        raise PruningError(f"a keep-set of {size} players does not fit {n} players")
    classes = np.zeros(n, dtype=np.int64) if classes is None else np.asarray(classes)
    class_quotas(classes, size, min_per_class)  # refuses quotas that cannot be met
    total = np.bincount(classes)
    kept_per_class, minimum = total.copy(), np.minimum(min_per_class, total)
    tau, target, mobius = surrogate.scale, surrogate.target, surrogate.mobius
    value = surrogate.constant + np.bincount(target, weights=mobius, minlength=T)
    contribution = np.zeros((T, n))
    terms_of: list[list[int]] = [[] for _ in range(n)]
    for k, members in enumerate(surrogate.members):
        for i in members:
            contribution[target[k], i] += mobius[k]
            terms_of[i].append(k)
    blocks = synergy_blocks(surrogate, synergy_threshold)
    alive = np.ones(len(blocks), dtype=bool)
    tiebreak = np.random.default_rng([seed, 0x9A7E]).permutation(len(blocks))
    active, kept = np.ones(len(mobius), dtype=bool), np.ones(n, dtype=bool)
    per_step = max(1, n // 1000)

    def change(block) -> np.ndarray:
        """The change of every target's prediction when ``block`` goes: the active terms it touches."""
        if len(block) == 1:
            return contribution[:, block[0]]
        touched = np.unique(np.concatenate([terms_of[i] for i in block] + [np.zeros(0, np.int64)])).astype(np.int64)
        touched = touched[active[touched]]
        return np.bincount(target[touched], weights=mobius[touched], minlength=T)

    def allowed(block, k) -> bool:
        left = k - len(block)
        removed = np.bincount(classes[block], minlength=len(total))
        return left >= size and bool(np.all(kept_per_class - removed >= np.maximum(left * total // n, minimum)))

    k = n
    while k > size:
        candidates = np.flatnonzero(alive)
        base = special.ndtr(value / tau)
        changes = np.stack([change(blocks[b]) for b in candidates], axis=1)
        score = (special.ndtr((value[:, None] - changes) / tau[:, None]) - base[:, None]).mean(0)
        removed_now = 0
        for b in candidates[np.lexsort((tiebreak[candidates], -score))]:
            if removed_now == per_step:
                break
            if not allowed(blocks[b], k):
                continue
            for i in blocks[b]:
                kept[i] = False
                for term in terms_of[i]:
                    if active[term]:
                        active[term] = False
                        value[target[term]] -= mobius[term]
                        for j in surrogate.members[term]:
                            if kept[j]:
                                contribution[target[term], j] -= mobius[term]
            alive[b] = False
            kept_per_class -= np.bincount(classes[blocks[b]], minlength=len(total))
            k -= len(blocks[b])
            removed_now += 1
        if removed_now == 0:
            if all(len(blocks[b]) == 1 for b in candidates):
                raise PruningError(f"no player can be removed at {k} kept without breaking the class quotas")
            # Only synergy blocks too large for what is left to remove: they are split.
            blocks = [np.array([i]) for i in np.flatnonzero(kept)]
            alive = np.ones(len(blocks), dtype=bool)
            tiebreak = np.random.default_rng([seed, 0x9A7E, k]).permutation(len(blocks))
    return np.flatnonzero(kept)


def synergy_blocks(surrogate, threshold: float) -> list[np.ndarray]:
    """Players that must stay together: the members of every pair or triple whose Möbius
    coefficients, each in units of its target's ``tau``, sum over the targets to more than
    ``threshold`` (joined transitively). Every other player is a block of its own."""
    strength: dict[tuple[int, ...], float] = {}
    for t, members, value in zip(surrogate.target, surrogate.members, surrogate.mobius):
        if len(members) > 1:
            strength[members] = strength.get(members, 0.0) + value / surrogate.scale[t]
    parent = np.arange(surrogate.n)

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for members, total in strength.items():
        if total > threshold:
            for j in members[1:]:
                parent[root(j)] = root(members[0])
    roots = np.array([root(i) for i in range(surrogate.n)])
    return [np.flatnonzero(roots == r) for r in np.unique(roots)]
