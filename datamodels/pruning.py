"""Data pruning: keep-sets of players at kept fractions, and how to judge them by retraining.

The promise of interaction-aware curation is to keep the synergies and safely remove the
redundancies. Every method below turns one kind of knowledge into a keep-set of
``round(f * n)`` players for each kept fraction ``f``; its objective is written next to it.

Surrogate-driven (the fitted Möbius polynomials ``f_t(x) = sum_S m_t(S) prod_{i in S} x_i`` of
every target ``t``, :class:`Surrogate`):

- ``interactions`` (the fit method ``prune.fit_method``, ProxySPEX by default) and ``linear``
  (the linear datamodel, mains only) maximise the **expected accuracy on the targets**
  ``A(x) = mean_t Phi(f_t(x) / tau_t)``: the probability that target ``t``'s margin is positive
  when the true margin is the surrogate's prediction plus Gaussian error of the surrogate's
  held-out residual sd ``tau_t``. Each target weighs at most ``1/T`` and a target already safe,
  or already lost, barely moves ``A``, so no single target dominates (the earlier objective,
  the mean margin, let the targets with the largest margins decide; docs/pruning.md).
  Greedy backward elimination removes, at each step, the player whose removal lowers ``A``
  least. That is **redundancy-aware removal**: removing a player ``i`` changes ``f_t`` by its
  current contribution ``c_t(i) = sum over kept S containing i of m_t(S)``; for a member of a
  redundant pair (``m_t({i,j}) < 0``) the pair term offsets its main effect, so it goes before
  an independent player of the same main effect, and once it is gone its partner's
  contribution rises by ``-m_t({i,j})``, so the partner is kept. A **strong synergy** (a pair or
  triple whose Möbius coefficients sum over the targets, in units of ``tau_t``, to more than
  ``synergy_threshold``) is never split: its members are removed together or not at all.
  **Class quotas** keep every class within one player of its share of the full set at every
  size (``floor(k * n_c / n)`` of class ``c`` when ``k`` players are kept) and at least
  ``min_per_class`` players: the surrogates' targets need some classes more than others, and
  an accuracy on unseen data needs every class.
- **Matched surrogates** (``surrogates="matched"``): the keep-set at fraction ``f`` is chosen with
  the fit made on the masks of alpha ``f`` only (a sweep over an alpha grid and
  ``jobs/fit.py fit.alpha=f``), as the datamodels paper fits at the alpha it predicts (Ilyas et
  al. 2022); ``surrogates="sweep"`` uses the run's one fit for every fraction and extrapolates
  far from its alpha.

Baselines:

- ``el2n``: Paul, Ganguli & Dziugaite, "Deep Learning on a Data Diet" (NeurIPS 2021): the L2
  norm of ``softmax(logits) - onehot(label)`` of every training example early in training,
  averaged over seeds and over a player's examples; the easiest players are removed first.
- ``ccs``: coverage-centric coreset selection (Zheng, Liu, Lai & Prakash, ICLR 2023): remove the
  hardest ``ccs_cutoff`` share of players (by the same EL2N difficulty, at most ``1 - f``), split
  the rest into ``ccs_bins`` strata of equal width in difficulty and spread the budget evenly
  over them, the smallest strata first, sampling at random within each.
- ``random``: a uniformly random subset; ``stratified``: uniformly random within each class,
  with the class quotas of the full set's proportions (largest remainder).

The randomised methods (``ccs``, ``random``, ``stratified``) are distributions, not one draw:
:func:`make_keep_sets` draws ``draws`` keep-sets of each, and the evaluation trains draw ``s``
with seed ``s``, so their spread includes the draw's.

Evaluation follows the pruning literature: retrain on each keep-set under a **fixed number of
SGD steps** (that of training on the full set), so smaller sets get more epochs; the same seeds
for every method; accuracy on the **holdout** split only (never on the targets that drove the
attribution). :func:`summarize` gives each method's mean and 95% t-interval per fraction and
:func:`paired_differences` each method's difference to the best baseline, paired by seed.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import cached_property
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import sparse, special, stats
from tqdm.auto import tqdm

from .errors import UserError
from .fit_ready import open_fit_ready
from .fitting import fit_dir, models_at_alpha
from .loaders import total_steps
from .masks import kept_examples
from .processes import check_main_guard, leave_with_parent
from .store import read_frame, write_atomic, write_frame
from .train import train_model, train_network

METHODS = ("interactions", "linear", "el2n", "ccs", "random", "stratified")
RANDOMISED = ("ccs", "random", "stratified")
BASELINES = ("linear", "el2n", "ccs", "random", "stratified")
SURROGATES = ("sweep", "matched")
# Surrogate statistics (intercept, residual scale) use at most this many of a fit's models.
_STAT_MODELS = 4000


class PruningError(UserError):
    """Keep-sets cannot be made or evaluated as asked; the message says why."""


def check_fractions(fractions) -> list[float]:
    fractions = sorted({float(f) for f in fractions}, reverse=True)
    if not fractions or any(not 0.0 < f <= 1.0 for f in fractions):
        raise PruningError(f"kept fractions must lie in (0, 1], got {fractions}")
    return fractions


# --------------------------------------------------------------------------- classes and quotas


def player_classes(groups: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The class of every player: the most common label among its examples."""
    counts = np.zeros((int(groups.max()) + 1, int(labels.max()) + 1), dtype=np.int64)
    np.add.at(counts, (groups, labels), 1)
    return counts.argmax(1)


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


# --------------------------------------------------------------------------- surrogates


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


def load_surrogates(run_dir, fits: dict[str, str], fractions, surrogates: str = "sweep") -> dict[str, dict[float, Surrogate]]:
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
        folder = fit_dir(run_dir, alpha)
        setting = f" fit.alpha={alpha:g}" if alpha is not None else ""
        needed = f"fraction {alpha}" if alpha is not None else f"fractions {wanted}"
        try:
            interactions, _ = read_frame(folder / "interactions.parquet", "fit (jobs/fit.py)")
            metrics, _ = read_frame(folder / "fit_metrics.parquet", "fit (jobs/fit.py)")
        except Exception as err:  # a missing or unreadable table: say which fit to run
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


def greedy_keep_set(surrogate: Surrogate, size: int, classes: np.ndarray | None = None, min_per_class: int = 1,
                    synergy_threshold: float = 1.0, seed: int = 0) -> np.ndarray:
    """The ``size`` players that backward greedy elimination on the expected target accuracy
    keeps (module docstring), sorted. ``classes`` (one per player) turns on the class quotas.

    Each step scores every removable block by the accuracy left after removing it, ``O(T n)``;
    above 1,000 players, ``n // 1000`` blocks go per step (their scores from the same step).
    """
    n, T = surrogate.n, len(surrogate.constant)
    if not 0 < size <= n:
        raise PruningError(f"a keep-set of {size} players does not fit {n} players")
    classes = np.zeros(n, dtype=np.int64) if classes is None else np.asarray(classes)
    class_quotas(classes, size, min_per_class)  # refuses quotas that cannot be met
    total = np.bincount(classes)
    kept_per_class, minimum = total.copy(), np.minimum(min_per_class, total)
    tau, target, mobius = surrogate.scale, surrogate.target, surrogate.mobius
    value = surrogate.constant + np.bincount(target, weights=mobius, minlength=T)
    contribution = np.zeros((T, n))
    terms_of: list[list[int]] = [[] for _ in range(n)]
    for k, members in enumerate(surrogate.members):
        for i in members:
            contribution[target[k], i] += mobius[k]
            terms_of[i].append(k)
    blocks = synergy_blocks(surrogate, synergy_threshold)
    alive = np.ones(len(blocks), dtype=bool)
    tiebreak = np.random.default_rng([seed, 0x9A7E]).permutation(len(blocks))
    active, kept = np.ones(len(mobius), dtype=bool), np.ones(n, dtype=bool)
    per_step = max(1, n // 1000)

    def change(block) -> np.ndarray:
        """The change of every target's prediction when ``block`` goes: the active terms it touches."""
        if len(block) == 1:
            return contribution[:, block[0]]
        touched = np.unique(np.concatenate([terms_of[i] for i in block] + [np.zeros(0, np.int64)])).astype(np.int64)
        touched = touched[active[touched]]
        return np.bincount(target[touched], weights=mobius[touched], minlength=T)

    def allowed(block, k) -> bool:
        left = k - len(block)
        removed = np.bincount(classes[block], minlength=len(total))
        return left >= size and bool(np.all(kept_per_class - removed >= np.maximum(left * total // n, minimum)))

    k = n
    while k > size:
        candidates = np.flatnonzero(alive)
        base = special.ndtr(value / tau)
        changes = np.stack([change(blocks[b]) for b in candidates], axis=1)
        score = (special.ndtr((value[:, None] - changes) / tau[:, None]) - base[:, None]).mean(0)
        removed_now = 0
        for b in candidates[np.lexsort((tiebreak[candidates], -score))]:
            if removed_now == per_step:
                break
            if not allowed(blocks[b], k):
                continue
            for i in blocks[b]:
                kept[i] = False
                for term in terms_of[i]:
                    if active[term]:
                        active[term] = False
                        value[target[term]] -= mobius[term]
                        for j in surrogate.members[term]:
                            if kept[j]:
                                contribution[target[term], j] -= mobius[term]
            alive[b] = False
            kept_per_class -= np.bincount(classes[blocks[b]], minlength=len(total))
            k -= len(blocks[b])
            removed_now += 1
        if removed_now == 0:
            if all(len(blocks[b]) == 1 for b in candidates):
                raise PruningError(f"no player can be removed at {k} kept without breaking the class quotas")
            # Only synergy blocks too large for what is left to remove: they are split.
            blocks = [np.array([i]) for i in np.flatnonzero(kept)]
            alive = np.ones(len(blocks), dtype=bool)
            tiebreak = np.random.default_rng([seed, 0x9A7E, k]).permutation(len(blocks))
    return np.flatnonzero(kept)


# --------------------------------------------------------------------------- baselines


def el2n_scores(run, num_seeds: int = 3, epochs: int = 2) -> np.ndarray:
    """EL2N of every training example after ``epochs`` epochs of the sweep's recipe on the full
    training set, averaged over ``num_seeds`` seeds; aggregated per player by the mean.

    ``run`` is a :class:`datamodels.sweep.SweepRun` (data, recipe, model and players).
    """
    splits = run.splits
    cfg = replace(run.train_cfg, epochs=epochs, steps=None)
    everything = np.arange(len(splits.train_y))
    scores = torch.zeros(len(everything))
    for s in range(num_seeds):
        model, _ = train_network(run.build, splits, everything, seed=10_000 + s, cfg=cfg, loader=run.loader)
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(splits.normalise(chunk))
                                for chunk in splits.train_images.split(cfg.eval_batch_size)])
        error = logits.softmax(1) - torch.nn.functional.one_hot(splits.train_y, logits.shape[1]).float()
        scores += error.norm(dim=1).cpu()
    per_example = (scores / num_seeds).numpy()
    return np.bincount(run.groups, weights=per_example) / np.bincount(run.groups)


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


# --------------------------------------------------------------------------- the stage


def make_keep_sets(run, methods, fractions, surrogates: dict[str, dict[float, Surrogate]] | None = None,
                   draws: int = 5, seed: int = 0, quotas: bool = True, min_per_class: int = 1,
                   synergy_threshold: float = 1.0, el2n_seeds: int = 3, el2n_epochs: int = 2,
                   ccs_cutoff: float = 0.1, ccs_bins: int = 10, progress: bool = True) -> pd.DataFrame:
    """One row per (method, fraction, draw): the kept players (sorted) and how many.

    ``run`` is a :class:`datamodels.sweep.SweepRun`; ``surrogates`` is :func:`load_surrogates`'s
    answer for ``interactions`` and ``linear``. Deterministic methods have draw 0 only; the
    randomised ones ``draws`` draws.
    """
    fractions = check_fractions(fractions)
    if unknown := [m for m in methods if m not in METHODS]:
        raise PruningError(f"unknown pruning method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    if draws < 1:
        raise PruningError(f"the randomised methods need at least one draw, got {draws}")
    classes = player_classes(run.groups, run.data.labels("train"))
    scores = el2n_scores(run, el2n_seeds, el2n_epochs) if {"el2n", "ccs"} & set(methods) else None
    rows = []
    jobs = [(m, f) for m in methods for f in fractions]
    for method, fraction in tqdm(jobs, desc="keep-sets", disable=not progress):
        size = round(fraction * run.n)
        if size < 1:
            raise PruningError(f"kept fraction {fraction} of {run.n} players keeps nobody")
        picks = []
        if size == run.n:
            picks = [np.arange(run.n)] * (draws if method in RANDOMISED else 1)
        elif method in ("interactions", "linear"):
            if surrogates is None or fraction not in surrogates.get(method, {}):
                raise PruningError(f"pruning method {method!r} needs its fitted surrogate for fraction {fraction}")
            picks = [greedy_keep_set(surrogates[method][fraction], size, classes if quotas else None,
                                     min_per_class, synergy_threshold, seed)]
        elif method == "el2n":
            picks = [hardest_keep_set(scores, size, seed)]
        else:
            for draw in range(draws):
                rng = np.random.default_rng([seed, METHODS.index(method), draw, round(fraction * 1e6)])
                picks.append(rng.choice(run.n, size, replace=False) if method == "random"
                             else stratified_keep_set(classes, size, rng, min_per_class) if method == "stratified"
                             else ccs_keep_set(scores, size, rng, ccs_cutoff, ccs_bins))
        rows += [{"method": method, "fraction": fraction, "draw": d, "size": len(p), "players": np.sort(p).tolist()}
                 for d, p in enumerate(picks)]
    return pd.DataFrame(rows)


def full_data_steps(run) -> int:
    """SGD steps of the recipe on the whole training set: the budget every keep-set gets."""
    return total_steps(len(run.groups), run.train_cfg)


def retraining_jobs(keep: pd.DataFrame, seeds: int) -> list[tuple[int, int]]:
    """``(row of keep, training seed)`` pairs: every seed for a deterministic method's keep-set,
    seed ``s`` for draw ``s`` of a randomised one (so each draw has its own training seed)."""
    if seeds < 1:
        raise PruningError(f"evaluation needs at least one seed, got {seeds}")
    jobs = []
    for (method, fraction), rows in keep.groupby(["method", "fraction"], sort=False):
        if method in RANDOMISED:
            if sorted(rows["draw"]) != list(range(seeds)):
                raise PruningError(f"the keep-sets hold {len(rows)} draws of {method} at fraction {fraction}, but "
                                   f"prune.eval_seeds={seeds} trains one seed per draw: rerun jobs/prune.py with "
                                   f"prune.eval_seeds={seeds}")
            jobs += [(i, int(d)) for i, d in zip(rows.index, rows["draw"])]
        else:
            jobs += [(rows.index[0], s) for s in range(seeds)]
    return jobs


_RUN = None


def _init_retraining_worker(run_dir: str, threads: int) -> None:
    global _RUN
    from .sweep import SweepRun

    torch.set_num_threads(threads)
    _RUN = SweepRun.open(run_dir)
    leave_with_parent()


def _retrain(players: list[int], seed: int, steps: int) -> float:
    mask = np.zeros(_RUN.n, dtype=bool)
    mask[players] = True
    cfg = replace(_RUN.train_cfg, steps=steps)
    return train_model(_RUN.build, _RUN.splits, kept_examples(mask, _RUN.groups), seed, cfg, _RUN.loader).holdout_accuracy


def evaluate_keep_sets(run, keep: pd.DataFrame, seeds: int = 5, workers: int = 1, progress: bool = True,
                       threads: int = 1) -> pd.DataFrame:
    """Retrain every keep-set under the full-data step budget (:func:`retraining_jobs` says with
    which seeds) in ``workers`` processes; one row per model with its holdout accuracy."""
    jobs = retraining_jobs(keep, seeds)
    check_main_guard("retraining keep-sets")
    steps = full_data_steps(run)
    context = get_context("spawn")  # fork would copy torch's thread pools
    # The same keep-set and seed give the same model (every method keeps everything at fraction 1):
    # trained once.
    unique = {(tuple(keep.at[i, "players"]), seed): None for i, seed in jobs}
    with ProcessPoolExecutor(max(1, workers), context, _init_retraining_worker, (str(run.run_dir), threads)) as pool:
        futures = {key: pool.submit(_retrain, list(key[0]), key[1], steps) for key in unique}
        for key, future in tqdm(futures.items(), desc="retraining keep-sets", disable=not progress):
            unique[key] = future.result()
    accuracies = [unique[(tuple(keep.at[i, "players"]), seed)] for i, seed in jobs]
    return pd.DataFrame([{"method": keep.at[i, "method"], "fraction": keep.at[i, "fraction"], "draw": keep.at[i, "draw"],
                          "size": keep.at[i, "size"], "seed": seed, "steps": steps, "holdout_acc": acc}
                         for (i, seed), acc in zip(jobs, accuracies)])


def _interval(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and two-sided 95% t-interval of independent values."""
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values))
    return mean, mean - half, mean + half


def summarize(evaluation: pd.DataFrame) -> pd.DataFrame:
    """Holdout accuracy per method and fraction: models, mean, 95% t-interval over seeds (draws
    and seeds together for the randomised methods)."""
    rows = [(method, fraction, len(group), *_interval(group["holdout_acc"].to_numpy()))
            for (method, fraction), group in evaluation.groupby(["method", "fraction"])]
    return (pd.DataFrame(rows, columns=["method", "fraction", "models", "mean", "ci_low", "ci_high"])
            .sort_values(["fraction", "mean"], ascending=[False, False], ignore_index=True))


def paired_differences(evaluation: pd.DataFrame) -> pd.DataFrame:
    """Each method's accuracy minus that of the best baseline at the same fraction (the baseline
    of highest mean), paired by training seed, with a 95% t-interval of the mean difference."""
    rows = []
    for fraction, group in evaluation.groupby("fraction"):
        by_seed = group.pivot_table(index="seed", columns="method", values="holdout_acc")
        baselines = [m for m in BASELINES if m in by_seed]
        if not baselines:
            continue
        best = max(baselines, key=lambda m: by_seed[m].mean())
        for method in by_seed:
            difference = (by_seed[method] - by_seed[best]).dropna().to_numpy()
            rows.append((fraction, method, best, len(difference), *_interval(difference)))
    return (pd.DataFrame(rows, columns=["fraction", "method", "baseline", "pairs", "difference", "ci_low", "ci_high"])
            .sort_values(["fraction", "difference"], ascending=[False, False], ignore_index=True))


def load_keep_sets(run, path: str | os.PathLike | None = None) -> tuple[pd.DataFrame, dict, Path]:
    """Keep-sets from ``path`` (default: the run's ``prune/keep_sets.parquet``), checked to be for
    this run's data."""
    source = Path(path) if path else run.run_dir / "prune" / "keep_sets.parquet"
    keep, meta = read_frame(source, "prune (jobs/prune.py)")
    if meta.get("fingerprint") != run.meta["fingerprint"]:
        raise PruningError(f"{source} was made for dataset fingerprint {meta.get('fingerprint')!r}, but this run's "
                           f"data has {run.meta['fingerprint']!r}: keep-sets only apply to the split they were "
                           f"chosen from")
    if keep.empty:
        raise PruningError(f"{source} holds no keep-sets")
    return keep, meta, source


def curate(run, keep: pd.DataFrame, method: str, fraction: float, out: str | os.PathLike, source: str,
           export_arrays: bool = False) -> list[Path]:
    """Write one keep-set with its provenance card (and optionally the kept examples' arrays)."""
    rows = keep[(keep["method"] == method) & np.isclose(keep["fraction"], fraction)]
    if rows.empty:
        available = ", ".join(f"{m}@{f:g}" for m, f in zip(keep["method"], keep["fraction"]))
        raise PruningError(f"no keep-set for method={method} fraction={fraction} in {source}; available: {available}")
    out = Path(out)
    if (out / "card.json").exists():
        raise PruningError(f"{out} already holds a curated keep-set; choose another curate.out or remove it")
    mask = np.zeros(run.n, dtype=bool)
    mask[np.asarray(rows.iloc[0]["players"])] = True
    examples = kept_examples(mask, run.groups)
    frame = pd.DataFrame({"example": examples, "dataset_index": run.data.splits["train"][examples],
                          "player": run.groups[examples]})
    card = {"method": method, "fraction": float(fraction), "players_kept": int(mask.sum()), "players": run.n,
            "examples_kept": len(examples), "examples": len(run.groups), "dataset": run.data.name,
            "fingerprint": run.meta["fingerprint"], "source_run": str(run.run_dir), "keep_sets": source,
            "index": "example = position in the run's train split; dataset_index = position in the dataset"}
    written = [write_frame(out / "keep_set.parquet", frame, card)]
    if export_arrays:
        arrays = out / "dataset.npz"
        write_atomic(arrays, lambda tmp: np.savez(open(tmp, "wb"), images=run.data.images("train")[examples],
                                                   labels=run.data.labels("train")[examples],
                                                   classes=np.array(run.data.dataset.classes)))
        written.append(arrays)
    write_atomic(out / "card.json", lambda tmp: tmp.write_text(json.dumps(card, indent=1)))
    return written + [out / "card.json"]
