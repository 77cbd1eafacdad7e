"""The statistical tests of :class:`.Selection`: critical values, false discovery control and
the noise scale's correction for models that share a mask.

- :func:`mask_groups` and :func:`design_effect`: models that repeat a mask (seeds of one training
  set) share what the mask decides; a cluster-robust variance (Liang & Zeger, Biometrika 1986)
  widens the tests' noise scale by it;
- :func:`z_bonferroni`: the familywise critical value of a family of tests;
- :func:`step_up`: Benjamini and Hochberg's step-up procedure (JRSS B, 1995), for
  ``error_rate="fdr"``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri


def mask_groups(X: np.ndarray) -> tuple[np.ndarray | None, int]:
    """Models that share a row of ``X`` (repeats of a mask, seeds of one training set): a group
    id per model and the number of distinct rows; ``None`` for the ids when every row differs."""
    packed = np.packbits(X, axis=1)
    rows = np.ascontiguousarray(packed).view(np.dtype((np.void, max(packed.shape[1], 1)))).ravel()
    _, groups = np.unique(rows, return_inverse=True)
    distinct = int(groups.max()) + 1 if len(groups) else 0
    return (None if distinct == len(groups) else groups.ravel()), distinct


def design_effect(resid: np.ndarray, groups: np.ndarray | None, rss: float) -> float:
    """How much models that share a mask inflate the variance of ``<r, c>`` over ``sigma^2 ||c||^2``.

    Every feature ``c`` is a function of the mask, so it is constant within a group of models
    that share one, and ``Var <r, c> = sum_g c_g^2 E[R_g^2]`` with ``R_g`` the group's summed
    residual (a cluster-robust variance, Liang & Zeger, Biometrika 1986). For independent
    residuals ``E[R_g^2] = |g| sigma^2`` and nothing changes; but what no model term explains
    and the mask decides, above all a dense tail of faint main effects outside the working set,
    is shared by a mask's repeats: with two seeds per mask and such a tail the variance nearly
    doubles, and tests that ignored it passed dozens of null pairs per target. With ``c^2``
    unrelated to ``R_g^2`` (independent mask entries) one factor serves every feature:
    ``sum_g R_g^2 / RSS``, never below 1 (a model that fits the group means exactly must not
    make the tests bolder).
    """
    if groups is None or rss <= 0:
        return 1.0
    sums = np.bincount(groups, weights=resid)
    return max(1.0, float(sums @ sums) / rss)


def step_up(p: np.ndarray, rate: float, family: int, discoveries: int = 0) -> np.ndarray:
    """Bool per p-value: rejected by Benjamini and Hochberg's step-up procedure (JRSS B, 1995)
    at false discovery ``rate`` over a ``family`` of tests of which ``discoveries`` others were
    rejected already and the rest, not given, count as p = 1: the ``r`` smallest of ``p`` for the
    largest ``r`` with ``p_(r) <= rate (discoveries + r) / family``."""
    order = np.argsort(p, kind="stable")
    bounds = rate * (discoveries + np.arange(1, len(p) + 1)) / max(family, 1)
    below = np.flatnonzero(p[order] <= bounds)
    out = np.zeros(len(p), dtype=bool)
    out[order[:below[-1] + 1] if len(below) else []] = True
    return out


def z_bonferroni(level: float, tests: int) -> float:
    """Two-sided normal critical value for ``tests`` tests at familywise ``level``."""
    return float(-ndtri(level / (2 * tests)))  # not inv_cdf(1 - p): exact for any small p
