"""Kept fractions and the class quotas of a keep-set (the class of every player is
:func:`datamodels.sweep.masks.player_classes`, which the run's data reads too)."""

from __future__ import annotations

import numpy as np

from ..errors import UserError


class PruningError(UserError):
    """Keep-sets cannot be made or evaluated as asked; the message says why."""


def check_fractions(fractions) -> list[float]:
    fractions = sorted({float(f) for f in fractions}, reverse=True)
    if not fractions or any(not 0.0 < f <= 1.0 for f in fractions):
        raise PruningError(f"kept fractions must lie in (0, 1], got {fractions}")
    return fractions


def class_quotas(classes: np.ndarray, size: int, min_per_class: int = 0) -> np.ndarray:
    """Players of each class in a keep-set of ``size``: the full set's proportions (largest
    remainder), and at least ``min_per_class`` of every class."""
    counts = np.bincount(classes)
    present = counts > 0
    floor = np.minimum(min_per_class, counts) * present
    if floor.sum() > size:
        raise PruningError(f"class quotas cannot be met: a keep-set of {size} players cannot hold "
                           f"prune.min_per_class={min_per_class} of each of the {present.sum()} classes; "
                           f"lower prune.min_per_class or keep a larger fraction")
    exact = size * counts / counts.sum()
    quota = np.maximum(np.floor(exact).astype(np.int64), floor)
    remainder = np.where(quota < counts, exact - quota, -np.inf)
    for c in np.argsort(-remainder, kind="stable")[:max(size - quota.sum(), 0)]:
        quota[c] += 1
    while quota.sum() > size:  # the minimums pushed some classes above their share
        c = np.argmax(np.where(quota > floor, quota - exact, -np.inf))
        quota[c] -= 1
    return quota
