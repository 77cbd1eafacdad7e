"""Sets of interaction terms as key rows: each row one term, its members (player indices)
sorted and padded on the left with ``_PAD`` to a fixed width (:mod:`.spectra`'s layout).

Set operations :class:`.Selection` and :class:`.ProxySPEX` need on them: membership, supersets,
sub-terms one member smaller, the unions of accepted terms that differ in one member, and the
best-scored rows.
"""

from __future__ import annotations

import numpy as np

from .spectra import _PAD


def has_superset(keys: np.ndarray, among: np.ndarray) -> np.ndarray:
    """Bool per key row: is it a proper subset of some row flagged in ``among``?"""
    sets = [frozenset(row[row != _PAD].tolist()) for row in keys]
    flagged = [sets[i] for i in np.flatnonzero(among)]
    return np.array([any(s < other for other in flagged) for s in sets], dtype=bool)


def merge_candidates(candidates: np.ndarray, accepted: np.ndarray):
    """Candidates of order > 2 with at least two accepted proper subsets: ``(row, parts)``."""
    sets = [frozenset(row[row != _PAD].tolist()) for row in accepted]
    for row in candidates[(candidates != _PAD).sum(axis=1) > 2]:
        members = frozenset(row[row != _PAD].tolist())
        parts = np.array([other < members for other in sets], dtype=bool)
        if parts.sum() >= 2:
            yield row, parts


def completions(accepted: np.ndarray, new: np.ndarray, max_order: int) -> np.ndarray:
    """Sets of ``k + 1 <= max_order`` players that unite a ``new`` term of order ``k`` with
    another accepted one of that order, as key rows."""
    sets = [frozenset(row[row != _PAD].tolist()) for row in np.concatenate([accepted, new])]
    fresh = sets[len(accepted):]
    united = {tuple(sorted(a | b)) for a in fresh for b in sets
              if len(a) == len(b) < max_order and len(a | b) == len(a) + 1}
    keys = np.full((len(united), max_order), _PAD, dtype=np.int64)
    for row, members in zip(keys, sorted(united)):
        row[max_order - len(members):] = members
    return keys


def widen(keys: np.ndarray, width: int) -> np.ndarray:
    """Key rows padded on the left to ``width`` columns."""
    out = np.full((len(keys), width), _PAD, dtype=np.int64)
    if keys.shape[1]:
        out[:, width - keys.shape[1]:] = keys[:, -width:]
    return out


def rows_in(keys: np.ndarray, among: np.ndarray) -> np.ndarray:
    """Bool per row of ``keys``: does it appear in ``among``?"""
    if not len(among) or not len(keys):
        return np.zeros(len(keys), dtype=bool)
    known = set(map(tuple, among.tolist()))
    return np.array([row in known for row in map(tuple, keys.tolist())], dtype=bool)


def best(keys: np.ndarray, scores: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` rows of largest score, best first."""
    if count < len(keys):
        top = np.argpartition(-scores, count - 1)[:count]
        return keys[top[np.argsort(-scores[top], kind="stable")]]
    return keys[np.argsort(-scores, kind="stable")]


def with_subterms(keys: np.ndarray) -> np.ndarray:
    """``keys`` and every term one member smaller (of order >= 2), each once."""
    parts = [keys]
    for j in range(keys.shape[1]):
        smaller = keys[(keys[:, j] != _PAD) & ((keys != _PAD).sum(axis=1) > 2)].copy()
        smaller[:, j] = _PAD
        parts.append(np.sort(smaller, axis=1))
    return np.unique(np.concatenate(parts), axis=0)
