"""Every target's fitted Möbius polynomial over the players: what the surrogate methods optimise.

:class:`Surrogate` holds the fit stage's terms of every target (one row per term, the same
sparse form as ``fit/interactions.parquet``), the constant and the held-out residual scale of
each target; :func:`load_surrogates` reads them from a run's fits, one per kept fraction
(``matched``) or one for all (``sweep``); :func:`synergy_blocks` are the players a strong
synergy keeps together.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import sparse

from ..errors import StoreError
from ..fit_ready import open_fit_ready
from ..fitting import STAGE as FIT_STAGE
from ..fitting import models_at_alpha
from ..run_folder import RunFolder
from ..tables import read_frame
from .quotas import PruningError, check_fractions

SURROGATES = ("sweep", "matched")
# Surrogate statistics (intercept, residual scale) use at most this many of a fit's models.
_STAT_MODELS = 4000


@dataclass
class Surrogate:
    """Every target's fitted Möbius polynomial over the players, and how far to trust it.

    ``terms`` holds one row per non-constant term (target, members, mobius); ``constant[t]`` is
    the polynomial's value on the empty set and ``scale[t]`` its held-out residual sd.
    """

    n: int
    constant: np.ndarray
    scale: np.ndarray
    target: np.ndarray
    members: list[tuple[int, ...]]
    mobius: np.ndarray

    @classmethod
    def from_fit(cls, interactions: pd.DataFrame, metrics: pd.DataFrame, masks: np.ndarray,
                 margins: np.ndarray) -> "Surrogate":
        """The fitted polynomials of every target, with the intercept and the residual sd taken
        from the models the fit saw: ``masks`` bool ``[m, n]``, ``margins`` ``[T, m]``.

        The interaction table leaves out the constant term; a least-squares fit's intercept makes
        the mean residual zero, so the constant is the mean margin minus the mean of the other
        terms. ``tau_t = sqrt((1 - R^2_t) var_t)`` with the fit's held-out ``R^2`` (floored at 5%
        of the variance, so no target is trusted as noiseless).
        """
        T, n = len(margins), masks.shape[1]
        if missing := sorted(set(range(T)) - {int(t) for t in metrics["target"]}):
            raise PruningError(f"the fit covers {T - len(missing)} of the {T} targets (e.g. {missing[:5]} are "
                               f"missing); pruning needs every target fitted")
        members = [tuple(sorted(int(i) for i in m)) for m in interactions["members"]]
        if any(not 0 <= i < n for m in members for i in m):
            raise PruningError(f"the fit names players outside 0..{n - 1}: it was made for another sweep")
        target = interactions["target"].to_numpy(np.int64)
        mobius = interactions["mobius"].to_numpy(float)
        polynomial = cls(n, np.zeros(T), np.ones(T), target, members, mobius)
        polynomial.constant = margins.mean(1) - polynomial.predict(masks).mean(0)
        r2 = metrics.set_index("target").loc[np.arange(T), "r2"].to_numpy(float)
        polynomial.scale = np.sqrt(np.clip(1.0 - r2, 0.05, 1.0) * margins.var(1)) + 1e-12
        return polynomial

    def predict(self, masks: np.ndarray) -> np.ndarray:
        """Predicted margins ``[m, T]`` of bool masks ``[m, n]``."""
        masks = np.asarray(masks, dtype=np.float64)
        # A term is on when all its members are kept: its member count in the mask equals its order.
        on = (sparse.csr_matrix(masks) @ self._incidence.T).toarray() == self._orders
        return self.constant + (on * self.mobius) @ self._by_target

    @cached_property
    def _incidence(self) -> sparse.csr_matrix:
        """Terms x players, 1 where the player is a member."""
        rows = np.repeat(np.arange(len(self.members)), [len(m) for m in self.members])
        cols = np.fromiter((i for m in self.members for i in m), dtype=np.int64, count=len(rows))
        return sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(self.members), self.n))

    @cached_property
    def _orders(self) -> np.ndarray:
        return np.array([len(m) for m in self.members], dtype=np.float64)

    @cached_property
    def _by_target(self) -> sparse.csr_matrix:
        """Terms x targets, 1 at the term's target: sums terms into their targets' predictions."""
        K, T = len(self.members), len(self.constant)
        return sparse.csr_matrix((np.ones(K), (np.arange(K), self.target)), shape=(K, T))


def load_surrogates(run_dir, fits: dict[str, str], fractions,
                    surrogates: str = "sweep") -> dict[str, dict[float, Surrogate]]:
    """For every pruning method in ``fits`` (method -> the fit method whose tables drive it, e.g.
    ``{"interactions": "proxyspex", "linear": "linear"}``), its surrogate at every fraction below 1
    (the full set needs none).

    ``sweep``: the run's one fit (``<run_dir>/fit``) for every fraction. ``matched``: for fraction
    ``f`` the fit made with ``fit.alpha=f`` (``<run_dir>/fit/alpha-f``), on masks of that size.
    Each fit's tables and models are read once, whatever the number of fractions and methods.
    """
    if surrogates not in SURROGATES:
        raise PruningError(f"prune.surrogates={surrogates!r}; choose one of {', '.join(SURROGATES)}")
    ready = open_fit_ready(run_dir, progress=False)
    wanted = [f for f in check_fractions(fractions) if f < 1.0]
    out: dict[str, dict[float, Surrogate]] = {method: {} for method in fits}
    for alpha in dict.fromkeys(wanted if surrogates == "matched" else [None]):
        models = np.ones(len(ready.mask_id), dtype=bool)
        if alpha is not None:
            try:
                models = models_at_alpha(ready.meta, ready.mask_id, alpha)
            except ValueError as err:
                raise PruningError(f"prune.surrogates=matched: kept fraction {alpha} has no masks of matching "
                                   f"size ({err}); or use prune.surrogates=sweep") from None
        folder = RunFolder(run_dir).fit(alpha)
        setting = f" fit.alpha={alpha:g}" if alpha is not None else ""
        needed = f"fraction {alpha}" if alpha is not None else f"fractions {wanted}"
        try:
            interactions, _ = read_frame(RunFolder(run_dir).interactions(alpha), FIT_STAGE)
            metrics, _ = read_frame(RunFolder(run_dir).fit_metrics(alpha), FIT_STAGE)
        except StoreError as err:  # a missing or unreadable table: say which fit to run
            fit_method = next(iter(fits.values()))
            flag = "" if fit_method == "proxyspex" else f" fit={fit_method}"
            raise PruningError(f"{needed} needs the {fit_method} fit in {folder} ({err}); run "
                               f"jobs/fit.py{flag}{setting} run_dir={run_dir}") from None
        rows = np.flatnonzero(models)
        rows = rows[np.linspace(0, len(rows) - 1, min(len(rows), _STAT_MODELS)).astype(np.int64)]
        masks = ready.masks[rows].unpack()
        margins = np.asarray(ready.margins[:, rows], dtype=float)
        for method, fit_method in fits.items():
            mine = metrics[metrics["method"] == fit_method]
            if mine.empty:
                flag = "" if fit_method == "proxyspex" else f" fit={fit_method}"
                raise PruningError(f"{folder} holds no {fit_method} fit; run jobs/fit.py{flag}{setting} run_dir={run_dir}")
            surrogate = Surrogate.from_fit(interactions[interactions["method"] == fit_method], mine, masks, margins)
            out[method] |= dict.fromkeys([alpha] if alpha is not None else wanted, surrogate)
    return out


def synergy_blocks(surrogate: Surrogate, threshold: float) -> list[np.ndarray]:
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
