"""Centred term features and their scores against a residual, ``|<r, c_S>| / ||c_S||``.

``c_S = prod_{i in S} (x_i - mean_i)`` is the part of a term ``S`` that its sub-terms cannot
explain (orthogonal to every other such feature for independent mask entries). Its score is how
much of what a model leaves unexplained the term would explain: :class:`.Selection` ranks
ProxySPEX's proposals by it (Butler et al., 2025), and divided by the noise scale it is each
term's test statistic (:mod:`.term_tests` turns it into a decision).
"""

from __future__ import annotations

import numpy as np

from .spectra import _PAD

# Centred features are built in blocks of about this many float32 values.
_CHUNK_VALUES = 1 << 24
# Models (at most) on which all proposals are ranked: enough to order thousands of proposals,
# which are then tested on every model.
RANK_ROWS = 16384


class CentredTerms:
    """Scores of terms against residuals, ``|<r, c_S>| / ||c_S||``.

    How much of what the model leaves unexplained each term would explain: the trees propose
    terms, this ranks them, and divided by the noise scale it is each term's test statistic.
    Ranking by the trees' own coefficients instead put planted pairs behind hundreds of
    spurious higher-order terms (each leaf gives all subsets of its path equal Möbius weight).
    The centred columns are made once (float32, one row per player, a row of ones standing in
    for padding, so that a term's members are whole rows to gather).
    """

    def __init__(self, X: np.ndarray):
        self.mean = X.mean(axis=0)
        self._rows = np.vstack([(X - self.mean).T, np.ones((1, len(X)))]).astype(np.float32)
        self._hub_norms = None

    def features(self, keys: np.ndarray, every: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """The terms' centred features (float32 ``[len(keys), m / every]``) and their norms."""
        rows = self._rows[:, ::every]
        index = np.where(keys == _PAD, len(rows) - 1, keys)
        features = rows[index[:, 0]]
        for j in range(1, index.shape[1]):
            features *= rows[index[:, j]]
        return features, np.sqrt(np.einsum("ij,ij->i", features, features, dtype=float))

    def hub_pairs(self, hubs: np.ndarray, resid: np.ndarray) -> np.ndarray:
        """Scores ``[len(hubs), n]`` of every pair ``{hub, j}`` against ``resid``, from two
        matrix products (the pairs' norms computed once)."""
        players = self._rows[:-1]
        numerators = np.abs((players[hubs] * resid.astype(np.float32)) @ players.T)
        if self._hub_norms is None or not np.array_equal(self._hub_norms[0], hubs):
            squares = players**2
            self._hub_norms = (hubs, np.sqrt((squares[hubs] @ squares.T).astype(float)))
        norms = self._hub_norms[1]
        return np.where(norms > 0, numerators / np.where(norms > 0, norms, 1.0), 0.0)

    def scores(self, keys: np.ndarray, resid: np.ndarray, sample: bool = False) -> np.ndarray:
        """Scores against ``resid``; with ``sample``, on at most ``RANK_ROWS`` evenly spaced models."""
        every = -(-len(resid) // RANK_ROWS) if sample else 1
        chunk = max(16, _CHUNK_VALUES // (len(resid) // every + 1))
        return np.concatenate([scored(*self.features(keys[start:start + chunk], every), resid[::every])
                               for start in range(0, len(keys), chunk)] or [np.empty(0)])


def scored(features: np.ndarray, norms: np.ndarray, resid: np.ndarray) -> np.ndarray:
    """``|features @ resid| / norms``; a constant feature (a player never or always kept) scores 0."""
    numerators = np.abs(features @ resid.astype(np.float32))
    return np.where(norms > 0, numerators / np.where(norms > 0, norms, 1.0), 0.0)
