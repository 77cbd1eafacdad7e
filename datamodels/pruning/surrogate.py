"""Every target's fitted Möbius polynomial over the players: what the surrogate methods optimise.

:class:`Surrogate` holds the fit stage's terms of every target (one row per term, as in
``fit/interactions.parquet``, the members as one CSR matrix of terms x players: at CIFAR-10
scale 10^7 terms, no Python object per term), the constant and the held-out residual scale of
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
from ..fit.faithfulness import residual_scale
from ..fit.outputs import read_fit_table
from ..fit.stage import models_at_alpha
from ..run.folder import RunFolder
from ..store.fit_ready import open_fit_ready
from .quotas import PruningError, check_fractions

SURROGATES = ("sweep", "matched")
# Surrogate statistics (intercept, residual scale) use at most this many of a fit's models.
_STAT_MODELS = 4000


@dataclass
class Surrogate:
    """Every target's fitted Möbius polynomial over the players, and how far to trust it.

    One entry per non-constant term ``k``: ``target[k]``, ``mobius[k]`` and its members, row ``k``
    of ``incidence`` (terms x players, CSR, members sorted: the one copy of the members, which
    the greedy and :meth:`predict` read directly). ``constant[t]`` is the polynomial's value on the
    empty set and ``scale[t]`` its held-out residual sd. :meth:`from_terms` builds one from
    member lists (small cases, tests).
    """

    n: int
    constant: np.ndarray
    scale: np.ndarray
    target: np.ndarray
    incidence: sparse.csr_matrix
    mobius: np.ndarray

    @classmethod
    def from_terms(cls, n: int, constant, scale, target, members, mobius) -> "Surrogate":
        """From one member list per term (any order within a term)."""
        lengths = np.fromiter(map(len, members), dtype=np.int64, count=len(members))
        flat = np.concatenate([np.asarray(m, dtype=np.int64).ravel() for m in members]) if len(members) else \
            np.zeros(0, np.int64)
        return cls(n, np.asarray(constant, float), np.asarray(scale, float), np.asarray(target, np.int64),
                   member_incidence(n, lengths, flat), np.asarray(mobius, float))

    @classmethod
    def from_fit(cls, interactions: pd.DataFrame, metrics: pd.DataFrame, masks: np.ndarray,
                 margins: np.ndarray) -> "Surrogate":
        """The fitted polynomials of every target, with the intercept and the residual sd taken
        from the models the fit saw: ``masks`` bool ``[m, n]``, ``margins`` ``[T, m]``.

        The coefficients are the table's ``shrunk`` column (the final L1 refit's; ``mobius`` in a
        table without it). The
        interaction table leaves out the constant term; a least-squares fit's intercept makes
        the mean residual zero, so the constant is the mean margin minus the mean of the other
        terms (each term's mean is its coefficient times how often all its members are kept).
        ``tau_t = sqrt((1 - R^2_t) var_t)`` with the fit's held-out ``R^2``
        (:func:`~datamodels.fit.faithfulness.residual_scale`).
        """
        T, n = len(margins), masks.shape[1]
        if missing := sorted(set(range(T)) - {int(t) for t in metrics["target"]}):
            raise PruningError(f"the fit covers {T - len(missing)} of the {T} targets (e.g. {missing[:5]} are "
                               f"missing); pruning needs every target fitted")
        column = interactions["members"]
        # One C-level pass over the table's member arrays, no Python tuple per term (10^7 terms at CIFAR-10 scale).
        lengths = np.fromiter(map(len, column), dtype=np.int64, count=len(column))
        flat = np.concatenate(column.to_list()).astype(np.int64) if len(column) else np.zeros(0, np.int64)
        target = interactions["target"].to_numpy(np.int64)
        # The shrunk coefficients: a greedy that removes what the surrogate says costs least picks
        # the terms whose estimates err in its favour (the optimiser's curse; Smith and Winkler
        # 2006), and the unshrunk sizes of ProxySPEX's relaxed refit made the demo's keep-sets
        # worse (docs/benchmarks.md, "The relaxed refit").
        mobius = interactions["shrunk" if "shrunk" in interactions else "mobius"].to_numpy(float)
        polynomial = cls(n, np.zeros(T), np.ones(T), target, member_incidence(n, lengths, flat), mobius)
        mean_terms = np.bincount(target, weights=mobius * polynomial.term_frequencies(masks), minlength=T)
        polynomial.constant = margins.mean(1) - mean_terms
        r2 = metrics.set_index("target").loc[np.arange(T), "r2"].to_numpy(float)
        polynomial.scale = residual_scale(r2, margin_var=margins.var(1))
        return polynomial

    @property
    def orders(self) -> np.ndarray:
        """Members of every term."""
        return np.diff(self.incidence.indptr)

    def term_frequencies(self, masks: np.ndarray) -> np.ndarray:
        """The share of the bool masks ``[m, n]`` in which each term is on (all its members kept)."""
        masks = np.asarray(masks, dtype=bool)
        kept = masks.sum(0, dtype=np.int64) / max(len(masks), 1)
        freq = np.zeros(len(self.target))
        mains = self.orders == 1
        freq[mains] = kept[self.incidence.indices[self.incidence.indptr[:-1][mains]]]
        higher = np.flatnonzero(~mains)
        for rows in _chunks(len(masks), max(self.n, len(higher))):
            freq[higher] += self._on(masks[rows], higher).sum(0) / len(masks)
        return freq

    def predict(self, masks: np.ndarray) -> np.ndarray:
        """Predicted margins ``[m, T]`` of bool masks ``[m, n]``, in chunks of masks: the main
        effects as one sparse product, the few higher-order terms by their members' counts."""
        masks = np.asarray(masks, dtype=bool)
        higher, to_targets = self._higher_terms
        out = np.empty((len(masks), len(self.constant)))
        for rows in _chunks(len(masks), max(self.n, len(higher) + len(self.constant))):
            x = masks[rows]
            out[rows] = self.constant + (self.main_effects.T @ x.T.astype(np.float64)).T + \
                self._on(x, higher) @ to_targets
        return out

    # Built once (cached): at 10^7 terms building them took longer than predicting a chunk of
    # models, and the duplicates stage predicts chunk by chunk.
    @cached_property
    def main_effects(self) -> sparse.csr_matrix:
        """Players x targets: every player's main effect (Möbius coefficient) in every target."""
        mains = self.orders == 1
        players = self.incidence.indices[self.incidence.indptr[:-1][mains]]
        return sparse.csr_matrix((self.mobius[mains], (players, self.target[mains])),
                                 shape=(self.n, len(self.constant)))

    @cached_property
    def _higher_terms(self) -> tuple[np.ndarray, sparse.csr_matrix]:
        """The terms of order >= 2 (their rows) and those terms x targets, as :meth:`predict` sums them."""
        higher = np.flatnonzero(self.orders != 1)
        return higher, sparse.csr_matrix((self.mobius[higher], (np.arange(len(higher)), self.target[higher])),
                                         shape=(len(higher), len(self.constant)))

    def _on(self, x: np.ndarray, terms: np.ndarray) -> np.ndarray:
        """bool ``[len(x), len(terms)]``: each term on in each mask (its member count equals its order)."""
        rows = self.incidence[terms]
        return (x.astype(np.float32) @ rows.T.astype(np.float32)) == self.orders[terms]


def member_incidence(n: int, lengths: np.ndarray, flat: np.ndarray) -> sparse.csr_matrix:
    """Terms x players CSR (members sorted within a term) from every term's member count and the
    members end to end; refuses players outside ``0..n-1``."""
    if len(flat) and (flat.min() < 0 or flat.max() >= n):
        raise PruningError(f"the fit names players outside 0..{n - 1}: it was made for another sweep")
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    incidence = sparse.csr_matrix((np.ones(len(flat), dtype=np.float32), flat, indptr), shape=(len(lengths), n))
    incidence.sort_indices()
    return incidence


def _chunks(m: int, width: int, cells: int = 1 << 24):
    """Row slices of ``m`` rows such that a ``[rows, width]`` intermediate stays under ``cells``."""
    step = max(1, cells // max(width, 1))
    return [slice(a, min(a + step, m)) for a in range(0, m, step)]


def load_surrogates(run_dir, fits: dict[str, str], fractions,
                    surrogates: str = "sweep") -> dict[str, dict[float, Surrogate]]:
    """For every pruning method in ``fits`` (method -> the fit engine whose tables drive it, e.g.
    ``{"interactions": "proxyspex", "linear": "linear"}``), its surrogate at every fraction below 1
    (the full set needs none).

    ``sweep``: the run's one fit (``<run_dir>/fit``) for every fraction. ``matched``: for fraction
    ``f`` the fit made with ``fit.alpha=f`` (``<run_dir>/fit/alpha-f``), on masks of that size.
    Each fit's tables and models are read once, whatever the number of fractions and pruning methods.
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
            interactions = read_fit_table(RunFolder(run_dir).interactions_file(alpha))[0].to_pandas()
            metrics = read_fit_table(RunFolder(run_dir).fit_metrics_file(alpha))[0].to_pandas()
        except StoreError as err:  # a missing or unreadable table: say which fit to run
            fit_engine = next(iter(fits.values()))
            raise PruningError(f"{needed} needs the {fit_engine} fit in {folder} ({err}); "
                               f"{fit_remedy(fit_engine, setting, run_dir)}") from None
        for method, fit_engine in fits.items():
            if not (metrics["engine"] == fit_engine).any():
                raise PruningError(f"{folder} holds no {fit_engine} fit; {fit_remedy(fit_engine, setting, run_dir)}")
            surrogate = fitted_surrogate(ready, interactions, metrics, fit_engine, np.flatnonzero(models))
            out[method] |= dict.fromkeys([alpha] if alpha is not None else wanted, surrogate)
    return out


def fitted_surrogate(ready, interactions: pd.DataFrame, metrics: pd.DataFrame, engine: str,
                     models: np.ndarray | None = None, targets: np.ndarray | None = None) -> Surrogate:
    """``engine``'s polynomials from a fit's tables (all engines' rows), their intercepts and
    residual scales taken on at most ``_STAT_MODELS`` of the fit-ready ``models`` (row numbers;
    all by default), evenly spread: the statistics need no more, and the masks are unpacked.
    ``targets`` (sorted target ids): only theirs, the surrogate's target ``k`` being ``targets[k]``
    (for a fit of some targets only); every target by default."""
    rows = np.arange(len(ready.mask_id)) if models is None else models
    rows = rows[np.linspace(0, len(rows) - 1, min(len(rows), _STAT_MODELS)).astype(np.int64)]
    terms, fits = interactions[interactions["engine"] == engine], metrics[metrics["engine"] == engine]
    if targets is None:
        margins = np.asarray(ready.target_margins[:, rows], dtype=float)
    else:
        position = pd.Series(np.arange(len(targets)), index=targets)
        terms, fits = (frame[frame["target"].isin(targets)] for frame in (terms, fits))
        terms, fits = (frame.assign(target=position[frame["target"]].to_numpy()) for frame in (terms, fits))
        margins = np.asarray(ready.target_margins[np.ix_(targets, rows)], dtype=float)
    return Surrogate.from_fit(terms, fits, ready.masks[rows].unpack(), margins)


def fit_remedy(fit_engine: str, setting: str, run_dir) -> str:
    """What makes a run's missing fit of ``fit_engine`` (``setting``: its fit.alpha override)."""
    if fit_engine == "trak":  # TRAK retrains models: a job of its own, over the whole sweep only
        return (f"run jobs/trak.py run_dir={run_dir}" if not setting else
                "the trak fit is of the whole sweep (no fit.alpha): use prune.surrogates=sweep")
    flag = "" if fit_engine == "proxyspex" else f" fit={fit_engine}"
    return f"run jobs/fit.py{flag}{setting} run_dir={run_dir}"


def synergy_blocks(surrogate: Surrogate, threshold: float) -> list[np.ndarray]:
    """Players that must stay together: the members of every pair or triple whose Möbius
    coefficients, each in units of its target's ``tau``, sum over the targets to more than
    ``threshold`` (joined transitively). Every other player is a block of its own. Blocks are
    listed by their union-find root (:func:`block_labels`)."""
    labels = block_labels(surrogate, threshold)
    order = np.argsort(labels, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(labels[order])) + 1)


def block_labels(surrogate: Surrogate, threshold: float) -> np.ndarray:
    """Every player's synergy block (:func:`synergy_blocks`), numbered in the order of the blocks'
    union-find roots: the strong sets are joined in the order of their first term, each member
    under the first member's root, as the greedy's tie-breaks were first drawn for (so seeded
    keep-sets stay what they were)."""
    incidence, orders = surrogate.incidence, surrogate.orders
    strong = []  # (first term, members) of every strong member set
    for order in np.unique(orders[orders > 1]):
        terms = np.flatnonzero(orders == order)
        members = incidence.indices[incidence.indptr[terms][:, None] + np.arange(order)]
        sets, first, inverse = np.unique(members, axis=0, return_index=True, return_inverse=True)
        # bincount adds in term order from 0.0: the same float sums as adding term by term.
        weight = surrogate.mobius[terms] / surrogate.scale[surrogate.target[terms]]
        strength = np.bincount(inverse.ravel(), weights=weight, minlength=len(sets))
        strong += [(int(terms[f]), tuple(row)) for f, row in zip(first[strength > threshold],
                                                                sets[strength > threshold].tolist())]
    parent = np.arange(surrogate.n)

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for _, members in sorted(strong):
        for j in members[1:]:
            parent[root(j)] = root(members[0])
    roots = parent.copy()
    while not np.array_equal(parent[roots], roots):  # pointer jumping to every player's root
        roots = parent[roots]
    return np.unique(roots, return_inverse=True)[1].ravel()
