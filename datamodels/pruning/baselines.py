"""The baselines every surrogate method is judged against, one registry entry each.

- ``el2n``: Paul, Ganguli & Dziugaite, "Deep Learning on a Data Diet" (NeurIPS 2021): the L2
  norm of ``softmax(logits) - onehot(label)`` of every training example early in training,
  averaged over seeds and over a player's examples; the easiest players are removed first.
- ``ccs``: coverage-centric coreset selection (Zheng, Liu, Lai & Prakash, ICLR 2023): remove the
  hardest ``ccs_cutoff`` share of players (by the same EL2N difficulty, at most ``1 - f``), split
  the rest into ``ccs_bins`` strata of equal width in difficulty and spread the budget evenly
  over them, the smallest strata first, sampling at random within each.
- ``random``: a uniformly random subset; ``stratified``: uniformly random within each class,
  with the class quotas of the full set's proportions (largest remainder).

Each is a :class:`Baseline`: whether it is randomised (a distribution of keep-sets, drawn
``draws`` times) and whether it needs EL2N difficulties (models trained on the run's data,
:func:`datamodels.pruning.retraining.el2n_scores`). A randomised baseline's draws come from a
stream of its own, tagged by its name (:func:`stream`), so adding or reordering methods changes
no draw.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .quotas import PruningError, class_quotas


def hardest_keep_set(scores: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """The ``size`` highest-scoring players (EL2N: the easiest are removed first); ties in seeded order."""
    tiebreak = np.random.default_rng([seed, 0x9A7E]).permutation(len(scores))
    return np.sort(np.lexsort((tiebreak, scores))[len(scores) - size:])


def ccs_keep_set(scores: np.ndarray, size: int, rng: np.random.Generator, cutoff: float = 0.1,
                 bins: int = 10) -> np.ndarray:
    """Coverage-centric coreset selection (Zheng et al., ICLR 2023; module docstring)."""
    n = len(scores)
    if not 0.0 <= cutoff < 1.0 or bins < 1:
        raise PruningError(f"CCS needs 0 <= prune.ccs_cutoff < 1 and prune.ccs_bins >= 1, got {cutoff}, {bins}")
    pool = np.argsort(-scores, kind="stable")[min(round(cutoff * n), n - size):]
    edges = np.linspace(scores[pool].min(), scores[pool].max(), bins + 1)
    stratum = np.clip(np.searchsorted(edges, scores[pool], side="right") - 1, 0, bins - 1)
    members = [pool[stratum == b] for b in range(bins)]
    chosen, budget = [], size
    for rank, b in enumerate(sorted(range(bins), key=lambda b: len(members[b]))):
        take = min(len(members[b]), -(-budget // (bins - rank)))
        chosen.append(rng.choice(members[b], take, replace=False))
        budget -= take
    return np.sort(np.concatenate(chosen))


def stratified_keep_set(classes: np.ndarray, size: int, rng: np.random.Generator, min_per_class: int = 0) -> np.ndarray:
    """Uniformly random players within each class, with the full set's class proportions."""
    quota = class_quotas(classes, size, min_per_class)
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(classes == c), q, replace=False)
                                   for c, q in enumerate(quota) if q]))


@dataclass(frozen=True)
class Choice:
    """What a baseline may know when it chooses a keep-set."""

    n: int
    classes: np.ndarray  # int [n]: each player's class
    difficulty: np.ndarray | None  # EL2N [n], when a method needs it
    seed: int
    min_per_class: int
    ccs_cutoff: float
    ccs_bins: int


@dataclass(frozen=True)
class Baseline:
    randomised: bool
    needs_difficulty: bool
    choose: Callable[[Choice, int, np.random.Generator], np.ndarray]  # (what it knows, size, draw's stream)


def _el2n(c: Choice, size: int, rng: np.random.Generator) -> np.ndarray:
    return hardest_keep_set(c.difficulty, size, c.seed)


def _ccs(c: Choice, size: int, rng: np.random.Generator) -> np.ndarray:
    return ccs_keep_set(c.difficulty, size, rng, c.ccs_cutoff, c.ccs_bins)


def _random(c: Choice, size: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(c.n, size, replace=False))


def _stratified(c: Choice, size: int, rng: np.random.Generator) -> np.ndarray:
    return stratified_keep_set(c.classes, size, rng, c.min_per_class)


BASELINES = {
    "el2n": Baseline(randomised=False, needs_difficulty=True, choose=_el2n),
    "ccs": Baseline(randomised=True, needs_difficulty=True, choose=_ccs),
    "random": Baseline(randomised=True, needs_difficulty=False, choose=_random),
    "stratified": Baseline(randomised=True, needs_difficulty=False, choose=_stratified),
}


def stream(seed: int, method: str, draw: int, fraction: float) -> np.random.Generator:
    """The random stream of one draw of a randomised method at one kept fraction."""
    tag = int.from_bytes(hashlib.sha256(method.encode()).digest()[:4], "little")
    return np.random.default_rng([seed, tag, draw, round(fraction * 1e6)])
