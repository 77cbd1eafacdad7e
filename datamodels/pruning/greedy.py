"""Backward greedy elimination on the surrogates' expected target accuracy (the ``interactions``
and ``linear`` methods; the objective is in the package docstring)."""

from __future__ import annotations

import numpy as np
from scipy import special

from .quotas import PruningError, class_quotas
from .surrogate import Surrogate, synergy_blocks


def greedy_keep_set(surrogate: Surrogate, size: int, classes: np.ndarray | None = None, min_per_class: int = 1,
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
