"""Data pruning: keep-sets of players at a grid of kept fractions, and how to judge them.

Every method produces a **removal order** over the ``n`` players; the keep-set at fraction ``f``
is everything except the first ``n - round(f * n)`` players removed, so keep-sets are nested.

- ``interactions``: the fitted Möbius polynomials of the target points predict the margin of
  every target for any subset. The objective is the **mean predicted target margin**
  ``P(x) = mean_t f_t(x) = sum_S M(S) prod_{i in S} x_i`` with ``M(S) = mean_t m_t(S)``.
  Greedy backward elimination starts from the full set and repeatedly removes the player whose
  removal lowers ``P`` least, i.e. the kept player with the smallest current contribution
  ``c_i = sum over kept S containing i of M(S)``. Interactions change contributions as players
  go: once one member of a *redundant* pair (``M({i,j}) < 0``) is removed, the other's
  contribution rises by ``-M({i,j})`` and it is kept longer, so near-duplicates are thinned one
  at a time; a *synergistic* pair (``M({i,j}) > 0``) stays together because removing either
  member also removes the pair term. (The polynomial was fitted on alpha-subsets; far from
  alpha it extrapolates, which is what the retraining evaluation checks.)
- ``linear``: the same greedy objective with the linear datamodel's polynomial (constant and
  first-order terms only), which reduces to removing the lowest mean main effects first.
- ``el2n``: Paul, Ganguli & Dziugaite, "Deep Learning on a Data Diet" (NeurIPS 2021): the L2
  norm of ``softmax(logits) - onehot(label)`` of every training example, early in training,
  averaged over seeds; the easiest (lowest-score) examples are removed first.
- ``random``: a seeded random order.

Evaluation follows the pruning literature: retrain on each keep-set under a **fixed number of
SGD steps** (that of training on the full set), so smaller sets get more epochs, with several
seeds, and report accuracy on the **holdout** split only (never on the targets that drove the
attribution).
"""

from __future__ import annotations

import heapq
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .errors import UserError
from .loaders import total_steps
from .masks import kept_examples
from .store import read_frame, write_atomic, write_frame
from .train import train_model, train_network

METHODS = ("interactions", "linear", "el2n", "random")


class PruningError(UserError):
    """Keep-sets cannot be made or evaluated as asked; the message says why."""


def check_fractions(fractions) -> list[float]:
    fractions = sorted({float(f) for f in fractions}, reverse=True)
    if not fractions or any(not 0.0 < f <= 1.0 for f in fractions):
        raise PruningError(f"kept fractions must lie in (0, 1], got {fractions}")
    return fractions


def mean_polynomial(interactions: pd.DataFrame, fitted_targets, num_targets: int) -> dict[tuple[int, ...], float]:
    """``M(S) = mean_t m_t(S)`` over the targets of a fit's interaction table.

    ``fitted_targets`` are the targets the fit covered (a target may have no term at all).
    Refuses a fit that does not cover every target 0..T-1: pruning for a subset of the targets
    silently would optimise a different objective than the one asked for.
    """
    if missing := sorted(set(range(num_targets)) - {int(t) for t in fitted_targets}):
        raise PruningError(f"the fit output lacks {len(missing)} of {num_targets} targets (e.g. {missing[:5]}); "
                           f"fit every target before pruning")
    keys = interactions["members"].map(lambda m: tuple(sorted(int(i) for i in m)))
    sums = interactions.groupby(keys)["mobius"].sum()
    return {members: float(total) / num_targets for members, total in sums.items()}


def greedy_removal_order(polynomial: dict[tuple[int, ...], float], n: int, seed: int = 0) -> np.ndarray:
    """Players in the order backward greedy elimination removes them (see the module docstring).

    A lazy heap keeps this ``O((n + terms * order) log n)``; ties are broken by a seeded random
    priority so that players without any term are not removed in index order.
    """
    terms = [(members, coef) for members, coef in polynomial.items() if members]
    if any(not 0 <= i < n for members, _ in terms for i in members):
        raise PruningError(f"the polynomial names players outside 0..{n - 1}")
    contribution = np.zeros(n)
    terms_of: list[list[int]] = [[] for _ in range(n)]
    for t, (members, coef) in enumerate(terms):
        for i in members:
            contribution[i] += coef
            terms_of[i].append(t)
    tiebreak = np.random.default_rng([seed, 0x9A7E]).permutation(n)
    heap = [(contribution[i], tiebreak[i], i) for i in range(n)]
    heapq.heapify(heap)
    active = np.ones(len(terms), dtype=bool)
    kept = np.ones(n, dtype=bool)
    order = []
    while heap:
        value, _, i = heapq.heappop(heap)
        if not kept[i] or value != contribution[i]:
            continue  # a stale entry: the player is gone or its contribution has changed
        kept[i] = False
        order.append(i)
        for t in terms_of[i]:
            if active[t]:
                active[t] = False  # the term dies with its first removed member
                members, coef = terms[t]
                for k in members:
                    if kept[k]:
                        contribution[k] -= coef
                        heapq.heappush(heap, (contribution[k], tiebreak[k], k))
    return np.array(order, dtype=np.int64)


def random_removal_order(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng([seed, 0x4A4D]).permutation(n).astype(np.int64)


def score_removal_order(scores: np.ndarray, seed: int = 0) -> np.ndarray:
    """Lowest score removed first; ties in seeded random order."""
    tiebreak = np.random.default_rng([seed, 0x9A7E]).permutation(len(scores))
    return np.lexsort((tiebreak, scores)).astype(np.int64)


def keep_sets(order: np.ndarray, fractions) -> dict[float, np.ndarray]:
    """Sorted kept players at each fraction, from a removal order."""
    n = len(order)
    return {f: np.sort(order[n - round(f * n):]) for f in check_fractions(fractions)}


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


def evaluate_keep_set(run, players: np.ndarray, seeds, steps: int) -> list[float]:
    """Holdout accuracy of models trained on the kept players, one per seed, ``steps`` SGD steps each."""
    mask = np.zeros(run.n, dtype=bool)
    mask[players] = True
    kept = kept_examples(mask, run.groups)
    cfg = replace(run.train_cfg, steps=steps)
    return [train_model(run.build, run.splits, kept, int(seed), cfg, run.loader).holdout_accuracy
            for seed in seeds]


def full_data_steps(run) -> int:
    """SGD steps of the recipe on the whole training set: the budget every keep-set gets."""
    return total_steps(len(run.groups), run.train_cfg)


# --------------------------------------------------------------------------- stage functions


def removal_order(method: str, run, fit: tuple[pd.DataFrame, pd.DataFrame] | None = None,
                  fit_method: str = "proxyspex", seed: int = 0, el2n_seeds: int = 3, el2n_epochs: int = 2) -> np.ndarray:
    """The removal order of one pruning method over the players of ``run`` (a SweepRun).

    ``fit`` is the fit stage's ``(interactions, metrics)`` tables, needed by the methods that
    use a fitted polynomial.
    """
    if method in ("interactions", "linear"):
        source = fit_method if method == "interactions" else "linear"
        fitted = fit[1].loc[fit[1]["method"] == source, "target"] if fit is not None else []
        if len(fitted) == 0:
            raise PruningError(f"pruning method {method!r} needs the fit stage's {source} interactions "
                               f"(run jobs/fit.py{' fit=linear' if source == 'linear' else ''} first)")
        rows = fit[0][fit[0]["method"] == source]
        return greedy_removal_order(mean_polynomial(rows, fitted, run.meta["T"]), run.n, seed)
    if method == "el2n":
        return score_removal_order(el2n_scores(run, el2n_seeds, el2n_epochs), seed)
    if method == "random":
        return random_removal_order(run.n, seed)
    raise PruningError(f"unknown pruning method {method!r}; choose from {', '.join(METHODS)}")


def make_keep_sets(run, fit: tuple[pd.DataFrame, pd.DataFrame] | None, methods, fractions, **options) -> pd.DataFrame:
    """One row per (method, fraction): the kept players (sorted) and how many."""
    fractions = check_fractions(fractions)
    rows = []
    for method in methods:
        for fraction, players in keep_sets(removal_order(method, run, fit, **options), fractions).items():
            rows.append({"method": method, "fraction": fraction, "size": len(players), "players": players.tolist()})
    return pd.DataFrame(rows)


def evaluate_keep_sets(run, keep: pd.DataFrame, seeds: int = 3, progress: bool = True) -> pd.DataFrame:
    """Retrain on every keep-set with ``seeds`` seeds under the full-data step budget; holdout accuracy."""
    if seeds < 1:
        raise PruningError(f"evaluation needs at least one seed, got {seeds}")
    steps = full_data_steps(run)
    rows = []
    for row in tqdm(keep.itertuples(), total=len(keep), desc="retraining keep-sets", disable=not progress):
        # The same seeds for every keep-set: differences between methods are not seed luck.
        accuracies = evaluate_keep_set(run, np.asarray(row.players), range(seeds), steps)
        rows += [{"method": row.method, "fraction": row.fraction, "size": row.size, "seed": s,
                  "steps": steps, "holdout_acc": acc} for s, acc in enumerate(accuracies)]
    return pd.DataFrame(rows)


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
