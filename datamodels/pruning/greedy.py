"""Backward greedy elimination on the surrogates' expected target accuracy (the ``interactions``
and ``linear`` methods; the objective is in the package docstring), on the sparse terms.

Removing a block ``b`` changes target ``t``'s prediction ``v_t`` by ``delta_bt``, the sum of the
kept terms of ``t`` that touch ``b``, and the objective by
``score_b = mean_t Phi((v_t - delta_bt) / tau_t) - Phi(v_t / tau_t)``, which is nonzero only on the
targets ``b`` touches. The scores live on sparse cells (player or block, target), one per pair
that shares a term, never as a dense ``[T, n]`` or ``[T, candidates]`` array:

- a single player's cell holds its contribution ``c_t(i)``, kept up to date term by term as
  removals switch terms off (the terms a removed player belongs to, found through the
  incidence's columns);
- a synergy block's cells are summed afresh every step from its kept terms (blocks are few);
- a cell's ``Phi`` difference is recomputed only when its target's prediction moved.

Steps, tie-breaks, the per-step batch (``n // 1000`` blocks above 1,000 players, scored at the
step's start), synergy blocks and class quotas are those of the dense version this replaced
(frozen in ``tests/prune_reference.py``), and the float sums are taken in the same order,
so the keep-sets are the same. :func:`greedy_keep_sets` walks the elimination once for several
sizes: two sizes share every step until the smaller one's batch would cross the larger one.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from .quotas import PruningError, class_quotas
from .surrogate import Surrogate, block_labels


def greedy_keep_set(surrogate: Surrogate, size: int, classes: np.ndarray | None = None, min_per_class: int = 1,
                    synergy_threshold: float = 1.0, seed: int = 0) -> np.ndarray:
    """The ``size`` players that backward greedy elimination on the expected target accuracy
    keeps (module docstring), sorted. ``classes`` (one per player) turns on the class quotas."""
    return greedy_keep_sets(surrogate, [size], classes, min_per_class, synergy_threshold, seed)[size]


def greedy_keep_sets(surrogate: Surrogate, sizes, classes: np.ndarray | None = None, min_per_class: int = 1,
                     synergy_threshold: float = 1.0, seed: int = 0) -> dict[int, np.ndarray]:
    """:func:`greedy_keep_set` at every size of ``sizes``, from one elimination: size -> keep-set."""
    n = surrogate.n
    sizes = sorted({int(s) for s in sizes}, reverse=True)
    classes = np.zeros(n, dtype=np.int64) if classes is None else np.asarray(classes, dtype=np.int64)
    for size in sizes:
        if not 0 < size <= n:
            raise PruningError(f"a keep-set of {size} players does not fit {n} players")
        class_quotas(classes, size, min_per_class)  # refuses quotas that cannot be met
    return _Elimination(surrogate, classes, min_per_class, synergy_threshold, seed).run(sizes)


class _Elimination:
    """The state of one backward elimination (module docstring)."""

    def __init__(self, surrogate: Surrogate, classes: np.ndarray, min_per_class: int, synergy_threshold: float,
                 seed: int):
        s = self.s = surrogate
        self.args = (classes, min_per_class, synergy_threshold, seed)
        n, T = s.n, len(s.constant)
        self.classes, self.seed = classes, seed
        self.total = np.bincount(classes)
        self.minimum = np.minimum(min_per_class, self.total)
        self.kept_per_class = self.total.copy()
        self.k, self.per_step = n, max(1, n // 1000)
        self.kept = np.ones(n, dtype=bool)
        self.active = np.ones(len(s.mobius), dtype=bool)
        self.value = s.constant + np.bincount(s.target, weights=s.mobius, minlength=T)
        self.by_player = s.incidence.tocsc()  # column i: the terms player i belongs to, ascending
        self.by_player.sort_indices()
        # One cell per (player, target) sharing a term; every incidence entry adds its term's
        # coefficient to its cell, in term order (the dense version's order of float additions).
        entry_player = s.incidence.indices.astype(np.int64)
        self.orders = s.orders
        entry_target = np.repeat(s.target, self.orders)
        cells, self.entry_cell = np.unique(entry_player * T + entry_target, return_inverse=True)
        self.entry_cell = self.entry_cell.ravel()
        self.cell_player, self.cell_target = cells // T, cells % T
        # The last slot of cell_value is a sink for the entries of cells dropped with their player.
        self.cell_value = np.bincount(self.entry_cell, weights=np.repeat(s.mobius, self.orders),
                                      minlength=len(cells) + 1)
        self.cell_gain = np.zeros(len(cells))
        self.cells_kept = n
        self._set_blocks(block_labels(s, synergy_threshold), np.random.default_rng([seed, 0x9A7E]))

    def _set_blocks(self, labels: np.ndarray, rng: np.random.Generator) -> None:
        """Blocks of the kept players (``labels[i]``: kept player i's block, numbered from 0; -1 for
        the removed), each alive, with fresh tie-breaks."""
        s, T = self.s, len(self.s.constant)
        self.block_of = labels
        players = np.flatnonzero(self.kept)
        self.blocks = int(labels[players].max()) + 1 if len(players) else 0
        self.block_size = np.bincount(labels[players], minlength=self.blocks)
        order = players[np.argsort(labels[players], kind="stable")]
        self.block_players = np.split(order, np.flatnonzero(np.diff(labels[order])) + 1)
        self.class_of = self.classes[[p[0] for p in self.block_players]].tolist()
        self.size_of = self.block_size.tolist()
        self.alive = self.block_size > 0
        self.tiebreak = rng.permutation(self.blocks)
        self.by_tiebreak = np.argsort(self.tiebreak)
        single = self.block_size == 1
        # Cells scored per player: those of kept players alone in their block.
        self._set_cell_blocks()
        # Synergy blocks: (term, block) entries, term-major, and (block, target) cells.
        entry_term = np.repeat(np.arange(len(s.mobius)), self.orders)
        entry_block = labels[s.incidence.indices]
        multi = self.kept[s.incidence.indices] & ~single[entry_block]
        pairs = np.unique(entry_term[multi] * self.blocks + entry_block[multi])
        self.multi_term, multi_block = pairs // self.blocks, pairs % self.blocks
        cells, self.multi_cell = np.unique(multi_block * T + s.target[self.multi_term], return_inverse=True)
        self.multi_cell = self.multi_cell.ravel()
        self.multi_cell_block, self.multi_cell_target = cells // T, cells % T
        self.changed = np.ones(T, dtype=bool)  # targets whose cells' gains are stale

    def _set_cell_blocks(self) -> None:
        """Each cell's block when its player is alone in one (scored per player), else a sink bin."""
        single = self.block_size == 1
        block = self.block_of[self.cell_player]
        self.cell_block = np.where((block >= 0) & single[block], block, self.blocks)

    def _drop_removed_cells(self) -> None:
        """Forget the removed players' cells (their entries go to the sink), so a step scans only the kept."""
        keep = self.kept[self.cell_player]
        position = np.append(np.cumsum(keep) - 1, 0)
        position[np.append(~keep, True)] = keep.sum()  # dropped cells and the old sink: the new sink
        self.entry_cell = position[self.entry_cell]
        self.cell_player, self.cell_target = self.cell_player[keep], self.cell_target[keep]
        self.cell_value = np.append(self.cell_value[:-1][keep], 0.0)
        self.cell_gain, self.cell_block = self.cell_gain[keep], self.cell_block[keep]
        self.cells_kept = self.k

    def scores(self) -> np.ndarray:
        """Every block's change of the mean expected accuracy if it went now."""
        s, T = self.s, len(self.s.constant)
        tau, value = s.scale, self.value
        base = special.ndtr(value / tau)
        stale = self.changed[self.cell_target]
        if stale.sum() > 0.7 * len(stale):  # most targets moved: recomputing all cells saves the gathers
            t = self.cell_target
            gain = value[t]
            gain -= self.cell_value[:-1]
            gain /= tau[t]
            special.ndtr(gain, out=gain)
            gain -= base[t]
            self.cell_gain = gain
        else:
            cells = np.flatnonzero(stale)
            t = self.cell_target[cells]
            self.cell_gain[cells] = special.ndtr((value[t] - self.cell_value[cells]) / tau[t]) - base[t]
        score = np.bincount(self.cell_block, weights=self.cell_gain, minlength=self.blocks + 1)[:self.blocks]
        if len(self.multi_term):
            on = self.active[self.multi_term] & self.alive[self.multi_cell_block[self.multi_cell]]
            change = np.bincount(self.multi_cell[on], weights=s.mobius[self.multi_term[on]],
                                 minlength=len(self.multi_cell_block))
            t = self.multi_cell_target
            gain = special.ndtr((value[t] - change) / tau[t]) - base[t]
            score += np.bincount(self.multi_cell_block, weights=gain, minlength=self.blocks)
        self.changed[:] = False
        return score / T

    def pick(self, order: "_Order", size: int) -> tuple[list[int], int]:
        """:meth:`select` on the step's order: on its head first, on a longer one only when quotas
        turned so many down that the step took fewer than its batch."""
        head = 8 * self.per_step + 64
        while True:
            blocks, complete = order.first(head)
            chosen, k = self.select(blocks, size)
            if complete or len(chosen) == self.per_step:
                return chosen, k
            head *= 4

    def select(self, order: list[int], size: int) -> tuple[list[int], int]:
        """The blocks one step removes, best first, for a keep-set of ``size``, and the kept count after."""
        k, kept_per_class = self.k, self.kept_per_class.copy()
        per_step, size_of, class_of = self.per_step, self.size_of, self.class_of  # locals: this loop is hot
        chosen, slack = [], None
        for b in order:
            if len(chosen) == per_step:
                break
            length = size_of[b]
            if k - length < size:
                continue
            if length == 1:
                if slack is None:  # each class's room above its quota at k - 1 kept, recomputed after a removal
                    room = kept_per_class - np.maximum((k - 1) * self.total // self.s.n, self.minimum)
                    slack = [-1] * len(room) if (room < 0).any() else room.tolist()
                c = class_of[b]
                if slack[c] < 1:
                    continue
                kept_per_class[c] -= 1
            else:
                removed = np.bincount(self.classes[self.block_players[b]], minlength=len(self.total))
                floor = np.maximum((k - length) * self.total // self.s.n, self.minimum)
                if not np.all(kept_per_class - removed >= floor):
                    continue
                kept_per_class -= removed
            chosen.append(b)
            k -= length
            slack = None
        return chosen, k

    def remove(self, chosen: list[int]) -> None:
        """Remove the chosen blocks: their players' terms go off, in the order the dense version took them."""
        s = self.s
        players = np.concatenate([self.block_players[b] for b in chosen])
        self.kept[players] = False
        self.alive[chosen] = False
        self.k -= len(players)
        self.kept_per_class -= np.bincount(self.classes[players], minlength=len(self.total))
        terms = self.by_player.indices[_ranges(self.by_player.indptr, players)]
        terms = terms[np.sort(np.unique(terms, return_index=True)[1])]  # first occurrence order
        terms = terms[self.active[terms]]
        self.active[terms] = False
        np.subtract.at(self.value, s.target[terms], s.mobius[terms])
        entries = _ranges(s.incidence.indptr, terms)
        np.subtract.at(self.cell_value, self.entry_cell[entries], np.repeat(s.mobius[terms], self.orders[terms]))
        self.changed[s.target[terms]] = True
        if self.cells_kept - self.k > 0.1 * self.cells_kept:  # now and then
            self._drop_removed_cells()

    def run(self, sizes: list[int]) -> dict[int, np.ndarray]:
        out = {size: np.arange(self.s.n) for size in sizes if size == self.k}
        pending = [size for size in sizes if size < self.k]  # descending
        while pending:
            key = -self.scores()
            key[~self.alive] = np.inf  # the removed come last and are never taken (select stops first)
            order = _Order(key, self.tiebreak, self.by_tiebreak, int(self.alive.sum()))
            last = pending[-1]
            chosen, k_after = self.pick(order, last)
            for size in [p for p in pending[:-1] if p > k_after]:
                # This step would pass below ``size``: its own last step may differ.
                own, k_own = self.pick(order, size)
                if k_own == size:
                    keep = self.kept.copy()
                    keep[np.concatenate([self.block_players[b] for b in own] + [np.zeros(0, np.int64)])] = False
                    out[size] = np.flatnonzero(keep)
                else:  # the elimination for this size parts from the others' here: walk it alone
                    out[size] = _Elimination(self.s, *self.args).run([size])[size]
                pending.remove(size)
            if not chosen:
                if (self.block_size[self.alive] == 1).all():
                    raise PruningError(f"no player can be removed at {self.k} kept without breaking the class quotas")
                # Only synergy blocks too large for what is left to remove: they are split.
                labels = np.full(self.s.n, -1)
                labels[self.kept] = np.arange(self.k)
                self._set_blocks(labels, np.random.default_rng([self.seed, 0x9A7E, self.k]))
                continue
            self.remove(chosen)
            if self.k == last:
                out[last] = np.flatnonzero(self.kept)
                pending.pop()
        return {size: out[size] for size in sizes}


class _Order:
    """One step's order of the alive blocks: best score first, ties by the seeded tie-breaks.
    Sorting all blocks every step costs more than scoring them: :meth:`first` sorts the head only."""

    def __init__(self, key: np.ndarray, tiebreak: np.ndarray, by_tiebreak: np.ndarray, alive: int):
        self.key, self.tiebreak, self.by_tiebreak, self.alive = key, tiebreak, by_tiebreak, alive
        self.heads: dict[int, list[int]] = {}

    def first(self, head: int) -> tuple[list[int], bool]:
        """The first ``head`` alive blocks of the order (all when fewer), and whether that is all."""
        head = min(head, self.alive)
        if head not in self.heads:
            key = self.key
            if head == self.alive:
                prefix = np.flatnonzero(np.isfinite(key))
            else:
                # All strictly better than the head's last score, then the ties at that score with
                # the smallest tie-breaks. Many blocks tie at exactly 0 (no kept term touches them):
                # the ties are taken in tie-break order without sorting them.
                better = np.flatnonzero(key < 0)
                if len(better) < head and len(better) + np.count_nonzero(key == 0) >= head:
                    edge, above = 0.0, better
                else:
                    within = better if len(better) >= head else np.flatnonzero(np.isfinite(key))
                    edge = np.partition(key[within], head - 1)[head - 1]
                    above = within[key[within] < edge]
                ties = self.by_tiebreak[key[self.by_tiebreak] == edge][:head - len(above)]
                prefix = np.concatenate([above, ties])
            self.heads[head] = prefix[np.lexsort((self.tiebreak[prefix], key[prefix]))].tolist()
        return self.heads[head], head == self.alive


def _ranges(indptr: np.ndarray, rows) -> np.ndarray:
    """The positions ``indptr[r]:indptr[r + 1]`` of every r of ``rows``, end to end."""
    rows = np.asarray(rows, dtype=np.int64)
    starts, lengths = indptr[rows].astype(np.int64), (indptr[rows + 1] - indptr[rows]).astype(np.int64)
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return np.arange(len(offsets)) + offsets
