"""Planted games: synthetic retraining games with known interactions, as Möbius spectra.

:func:`planted_game` (the data-attribution regime: dense small mains, planted synergy,
redundancy and duplicate groups) and :func:`unanimity_game` (shapiq's SOUM games) are one
target's game; :func:`bernoulli_sd` the sd of its value over random masks. :class:`_PlantedGames`
evaluates the ``T`` games of a sweep together on a block of masks, and :func:`_spectra` draws
them. :mod:`datamodels.sweep.planted` writes them to disk as a sweep or a release.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy import sparse

# Stream tag of the per-target game seeds, beside the mask (0) and training-seed (1) streams
# (and the players' classes, 3, in datamodels.sweep.planted).
_GAME_STREAM = 2
# Gathered mask columns and term products are evaluated in row chunks of about this many bytes.
_CHUNK_BYTES = 16 << 20


def planted_game(
    n: int,
    n_synergy: int = 2,
    n_redundancy: int = 2,
    n_triples: int = 1,
    main_sd: float = 0.1,
    strength: float = 1.0,
    seed: int = 0,
    n_mains: int | None = None,
    tail_sd: float = 0.0,
    duplicates: tuple = (),
) -> dict:
    """Möbius spectrum of a synthetic retraining game with known interactions (for tests, benches).

    Dense small main effects ``N(0, main_sd)`` on ``n_mains`` randomly chosen players (all ``n``
    when None, as every training example has some; at n = 50,000 a few hundred is the realistic
    case, and it keeps the game's scale the same whatever ``n``); then disjoint planted groups
    whose members get main effects ``+-strength`` of one sign and an interaction of size
    ``strength``: the sign of the mains for synergy pairs, the opposite sign for redundancy pairs
    (both kept = as good as one kept: near duplicates), and synergy for triples. The planted
    kinds are exactly what :func:`interaction_table` should report.

    ``tail_sd > 0`` adds a dense faint tail: every one of the ``n`` players gets a further main
    effect ``N(0, tail_sd)`` (drawn after everything above, so the rest of the game is the same
    game with or without it). Real training sets have one (every example moves a margin a
    little), and it is what tests of interactions must stay calibrated against: thousands of
    faint mains that no working set holds, with more of them clearly non-zero as models grow.

    ``duplicates`` (groups of player indices, e.g. ``[[0, 1], [2, 3, 4]]``) plants the same groups
    in every target, as duplicated training images would be: the group's value is ``+-strength``
    (sign drawn per target) when *any* member is kept, so one member teaches all the others do.
    Its Möbius spectrum is ``m(S) = sign * strength * (-1)^(|S| + 1)`` for every non-empty
    ``S`` in the group: mains of one sign, pairs of the other (redundancy), triples of the
    first. The per-target planted groups avoid these players. The ground truth of
    :mod:`datamodels.pruning.duplicates`' ranking.
    """
    rng = np.random.default_rng(seed)
    sizes = [2] * (n_synergy + n_redundancy) + [3] * n_triples
    if sum(sizes) > n:
        raise ValueError(f"planted_game: {sum(sizes)} planted members do not fit in n={n} players")
    if n_mains is None:
        mains = rng.normal(0.0, main_sd, n)
    elif 0 <= n_mains <= n:
        mains = np.zeros(n)
        mains[rng.choice(n, n_mains, replace=False)] = rng.normal(0.0, main_sd, n_mains)
    else:
        raise ValueError(f"planted_game: n_mains={n_mains} must lie in 0..{n}")
    if not tail_sd >= 0:
        raise ValueError(f"planted_game: tail_sd={tail_sd} must be >= 0")
    shared = [tuple(sorted(int(i) for i in group)) for group in duplicates]
    taken = [i for group in shared for i in group]
    if any(len(group) < 2 for group in shared) or len(set(taken)) != len(taken) or not all(0 <= i < n for i in taken):
        raise ValueError(f"planted_game: duplicates={duplicates} must be disjoint groups of at least 2 players in 0..{n - 1}")
    if sum(sizes) + len(taken) > n:
        raise ValueError(f"planted_game: {sum(sizes)} planted members and {len(taken)} duplicates do not fit in n={n} players")
    # the same draws as without duplicates (the games of earlier sweeps are unchanged), minus their players
    players = rng.permutation(n)
    players = players[~np.isin(players, taken)]
    mobius = {(): float(rng.normal())}
    start = 0
    for g, size in enumerate(sizes):
        group = tuple(sorted(int(i) for i in players[start : start + size]))
        start += size
        sign = rng.choice([-1.0, 1.0])
        mains[list(group)] = sign * strength
        redundant = n_synergy <= g < n_synergy + n_redundancy
        mobius[group] = -sign * strength if redundant else sign * strength
    for group in shared:
        sign = rng.choice([-1.0, 1.0])
        mains[list(group)] = sign * strength
        for size in range(2, len(group) + 1):
            for subset in itertools.combinations(group, size):
                mobius[subset] = sign * strength * (-1) ** (size + 1)
    if tail_sd > 0:
        mains += rng.normal(0.0, tail_sd, n)
    support = range(n) if n_mains is None or tail_sd > 0 else np.flatnonzero(mains)
    mobius.update({(int(i),): float(mains[i]) for i in support})
    return mobius


def unanimity_game(n: int, terms: int = 100, max_size: int = 3, seed: int = 0) -> dict:
    """A sum of unanimity games (the SOUM games of shapiq's benchmarks): ``terms`` random subsets
    of ``1..max_size`` players, each with a weight drawn from U(0, 1), as a Möbius spectrum.

    Dense interaction structure with no main-effect hierarchy to lean on: every term of order
    ``<= max_order`` should be found from enough noiseless masks.
    """
    rng = np.random.default_rng(seed)
    game = {(): 0.0}
    for _ in range(terms):
        members = tuple(sorted(rng.choice(n, rng.integers(1, max_size + 1), replace=False).tolist()))
        game[members] = game.get(members, 0.0) + float(rng.uniform(0, 1))
    return game


def bernoulli_sd(mobius: dict, alpha: float) -> float:
    """Standard deviation of the game's value over masks that keep each player with probability ``alpha``.

    Exact: ``Var f = sum m(S) m(S') (alpha^|S u S'| - alpha^(|S| + |S'|))`` over the pairs of
    terms that share a player (disjoint terms are independent). It scales the seed noise of a
    planted sweep without drawing masks, so any one model can be re-created alone.
    """
    mains = {members[0]: value for members, value in mobius.items() if len(members) == 1}
    higher = [(set(members), value) for members, value in mobius.items() if len(members) > 1]
    var = alpha * (1 - alpha) * float(np.sum(np.square(list(mains.values()))))
    for S, a in higher:
        var += 2 * a * sum(mains.get(i, 0.0) for i in S) * (alpha ** len(S) - alpha ** (len(S) + 1))
        for S2, b in higher:
            if S & S2:
                var += a * b * (alpha ** len(S | S2) - alpha ** (len(S) + len(S2)))
    return math.sqrt(max(var, 0.0))


def _by_order(mobius: dict) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """A spectrum as arrays: order -> (members int64 ``[K, order]``, coefficients ``[K]``)."""
    groups: dict[int, tuple[list, list]] = {}
    for members, value in mobius.items():
        keys, values = groups.setdefault(len(members), ([], []))
        keys.append(members)
        values.append(value)
    return {order: (np.array(keys, dtype=np.int64).reshape(len(keys), order), np.array(values))
            for order, (keys, values) in sorted(groups.items())}


class _PlantedGames:
    """The ``T`` games of a planted sweep, evaluated together on a block of masks.

    Terms of one order are pooled over targets: the distinct member tuples of that order and a
    ``[tuples, T]`` coefficient matrix (sparse when few targets share a tuple, as with a few
    hundred mains per target; dense when they all do). A block of masks is evaluated by gathering
    only the columns of players that some term names, multiplying them within each tuple, and one
    product with the coefficients, so nothing of width ``n`` is ever converted to floats.
    """

    def __init__(self, spectra: list[dict[int, tuple[np.ndarray, np.ndarray]]]):
        T = len(spectra)
        self.constant = np.array([s[0][1].sum() if 0 in s else 0.0 for s in spectra])
        pooled = []
        for order in sorted({order for s in spectra for order in s} - {0}):
            parts = [(t, *s[order]) for t, s in enumerate(spectra) if order in s]
            tuples, inverse = np.unique(np.concatenate([members for _, members, _ in parts]), axis=0,
                                        return_inverse=True)
            targets = np.concatenate([np.full(len(values), t) for t, _, values in parts])
            coef = sparse.csr_array((np.concatenate([values for _, _, values in parts]).astype(np.float32),
                                     (inverse.ravel(), targets)), shape=(len(tuples), T))
            pooled.append((tuples, coef.toarray() if coef.nnz > 0.05 * len(tuples) * T else coef))
        self.players = np.unique(np.concatenate([tuples.ravel() for tuples, _ in pooled] + [np.zeros(0, np.int64)]))
        self.terms = [(np.searchsorted(self.players, tuples), coef) for tuples, coef in pooled]

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        """Float64 ``[rows, T]``: every game's value on every mask of a bool ``[rows, n]`` block."""
        out = np.tile(self.constant, (len(masks), 1))
        widest = max([len(members) for members, _ in self.terms] + [len(self.players), 1])
        step = max(1, _CHUNK_BYTES // (4 * widest))
        for start in range(0, len(masks), step):
            X = masks[start:start + step][:, self.players]
            for members, coef in self.terms:
                kept = X[:, members[:, 0]]
                for j in range(1, members.shape[1]):
                    kept &= X[:, members[:, j]]
                out[start:start + step] += kept.astype(np.float32) @ coef
        return out


def _game_seed(seed: int, target: int) -> int:
    return int(np.random.SeedSequence([seed, _GAME_STREAM, target]).generate_state(1)[0])


def _spectra(n: int, T: int, alpha: float, noise: float, seed: int, game: dict):
    """The ``T`` targets' spectra (:func:`_by_order`) and their seed-noise sds."""
    noise_sd, spectra = np.zeros(T), []
    for t in range(T):  # one target's dict at a time: at n = 50,000 a dict of every player is large
        mobius = planted_game(n, seed=_game_seed(seed, t), **game)
        noise_sd[t] = noise * bernoulli_sd(mobius, alpha)
        spectra.append(_by_order(mobius))
    return spectra, noise_sd
