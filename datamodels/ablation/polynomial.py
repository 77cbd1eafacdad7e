"""What one target's fitted Möbius polynomial predicts for a retraining experiment, in closed form.

A fit is ``f(x) = sum_T m(T) prod_{k in T} x_k`` on 0/1 masks (``fit/interactions.parquet``, one
target's rows). Over a background ``S`` that keeps every other player with probability ``a``:

- a pair's expected double difference ``E[f(S+i+j) - f(S+i) - f(S+j) + f(S)]`` is
  ``sum over T containing {i, j} of m(T) a^(|T| - 2)`` (:meth:`TargetPolynomial.pair_interaction`);
- removing a set ``R`` that the background otherwise keeps lowers the margin by
  ``E[f(S + R) - f(S)] = sum over T meeting R of m(T) a^|T minus R|``
  (:meth:`TargetPolynomial.removal_drop`); from the whole training set ``a = 1``: ``sum over T
  meeting R of m(T)``.

:meth:`TargetPolynomial.greedy_removal` chooses the ``k`` players whose removal the polynomial
says lowers the margin most, adaptively: each step takes the player, or the not-yet-removed
members of one of the fit's terms as a block, with the largest predicted drop per player removed
*given those already removed*. One at a time never finds a redundant pair from the whole
training set (each member is worth nothing while the other stays); as a block it is found. The
idea of adaptive, interaction-aware removal sets is Hu et al. (NeurIPS 2024, "Most influential
subset selection"); the greedy here is written for the sparse polynomials of this package.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse


class TargetPolynomial:
    """One target's non-constant Möbius terms: ``members`` (one player list per term), ``mobius``."""

    def __init__(self, n: int, members, mobius):
        self.n = n
        self.mobius = np.asarray(mobius, dtype=float)
        self.size = np.fromiter(map(len, members), dtype=np.int64, count=len(members))
        flat = np.concatenate([np.asarray(m, np.int64) for m in members]) if len(members) else np.zeros(0, np.int64)
        rows = np.repeat(np.arange(len(members)), self.size)
        # terms x players: which players each term holds
        self.incidence = sparse.csr_matrix((np.ones(len(flat)), (rows, flat)), shape=(len(members), n))
        self.members = [np.asarray(m, np.int64) for m in members]

    def mains(self) -> np.ndarray:
        """Every player's main effect ``m({i})`` (0 where the fit has none): float ``[n]``."""
        mains = np.zeros(self.n)
        single = self.size == 1
        mains[[int(m[0]) for m, s in zip(self.members, single) if s]] = self.mobius[single]
        return mains

    def pair_interaction(self, i: int, j: int, level: float) -> float:
        """Expected double difference of ``{i, j}`` over a background at ``level`` (module docstring)."""
        holds = self.incidence[:, [i, j]].toarray() > 0
        both = np.flatnonzero(holds[:, 0] & holds[:, 1])
        return float((self.mobius[both] * level ** (self.size[both] - 2.0)).sum())

    def _removed_counts(self, removed: np.ndarray) -> np.ndarray:
        flags = np.zeros(self.n)
        flags[removed] = 1.0
        return np.asarray(self.incidence @ flags).round().astype(np.int64)

    def _drop(self, counts: np.ndarray, level: float) -> float:
        hit = counts > 0
        return float((self.mobius[hit] * level ** (self.size[hit] - counts[hit]).astype(float)).sum())

    def removal_drop(self, removed, level: float) -> float:
        """Predicted margin drop when ``removed`` leave a background at ``level`` (module docstring)."""
        return self._drop(self._removed_counts(np.asarray(removed, np.int64)), level)

    def greedy_removal(self, k: int, level: float) -> np.ndarray:
        """The ``k`` players the adaptive greedy removes, in the order it removes them (module docstring).

        A single player's gain is one sparse product: removing one more member of term ``T``
        (which already lost ``r_T``) changes the drop by ``m(T) a^(|T|-r_T-1)`` minus what the
        term already counted, the same for each of its remaining members. Blocks (terms of order
        two or more with at least two members left, that fit in what remains of ``k``) are scored
        directly; ties go to the single player, then to the lower index.
        """
        removed = np.zeros(self.n, dtype=bool)
        counts = np.zeros(len(self.mobius), dtype=np.int64)
        order: list[int] = []
        while len(order) < k:
            current = self._drop(counts, level)
            before = np.where(counts > 0, self.mobius * level ** (self.size - counts).astype(float), 0.0)
            after = self.mobius * level ** np.maximum(self.size - counts - 1, 0).astype(float)
            gains = np.asarray(self.incidence.T @ (after - before)).ravel()
            gains[removed] = -np.inf
            best_player = int(np.argmax(gains))
            best, choice = gains[best_player], [best_player]
            for term in np.flatnonzero(self.size >= 2):
                members = self.members[term]
                left = members[~removed[members]]
                if len(left) < 2 or len(left) > k - len(order):
                    continue
                trial = counts + np.asarray(self.incidence[:, left].sum(1)).ravel().round().astype(np.int64)
                per_player = (self._drop(trial, level) - current) / len(left)
                if per_player > best + 1e-12:
                    best, choice = per_player, sorted(int(p) for p in left)
            for p in choice:
                removed[p] = True
                order.append(p)
            counts = self._removed_counts(np.flatnonzero(removed))
        return np.asarray(order, np.int64)
