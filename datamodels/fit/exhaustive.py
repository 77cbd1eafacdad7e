"""Exact ground truth of exhaustive sweeps, and how well sampled fits recover it.

An exhaustive sweep (``sweep.design=exhaustive``, e.g. ``experiment=digits_classes_exhaustive``)
trains every one of the ``2^n`` subsets of ``n`` players, with ``r >= 2`` seeds each. For each
target it gives two references computed from all subsets:

- the **exact Möbius spectrum** of the seed-averaged margins (:func:`exact_mobius`, the fast
  Möbius transform: every ``m(S) = sum_{T subset S} (-1)^{|S|-|T|} f(T)``);
- the **projection**: least squares over all subsets on the Möbius terms of order
  ``<= max_order`` (:func:`projection`). A regression on sampled masks converges to it, not to
  the exact spectrum truncated at that order (the two differ whenever the game has higher-order
  structure), so recovery is judged against it. Each coefficient's standard error comes from
  the spread between the repeats of a subset.

:func:`recovery` fits estimators on random samples of the subsets (one repeat each) at several
budgets and scores them: R^2 on the unused subsets against the seed-averaged margins, the
error of their pair coefficients against the projection, and recall, precision and kinds
(synergy/redundancy) of the projection's pairs above noise.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

from ..interactions import interaction_table
from .faithfulness import r2


def subset_masks(n: int) -> np.ndarray:
    """Bool ``[2^n, n]``: mask ``j`` keeps player ``p`` when bit ``p`` of ``j`` is set (the
    order of ``MaskDesign("exhaustive")``)."""
    return (np.arange(2**n)[:, None] >> np.arange(n)) & 1 == 1


def exact_mobius(values: np.ndarray) -> np.ndarray:
    """The Möbius transform of a game given on all ``2^n`` subsets (index = mask id), per column.

    ``values [2^n, T]`` -> ``[2^n, T]``, entry ``j`` the coefficient of the subset with mask id
    ``j``: one pass per player subtracts, from every subset holding it, the value without it.
    """
    out = np.array(values, dtype=float, copy=True)
    size = len(out)
    n = size.bit_length() - 1
    if size != 2**n:
        raise ValueError(f"an exhaustive game needs 2^n values (one per subset); got {size}")
    shape = out.shape[1:]
    for p in range(n):
        view = out.reshape(2 ** (n - p - 1), 2, 2**p, *shape)
        view[:, 1] -= view[:, 0]
    return out


def terms_up_to(n: int, max_order: int) -> list[tuple[int, ...]]:
    """Every subset of the ``n`` players of size ``1..max_order``, by order then members."""
    return [S for k in range(1, max_order + 1) for S in combinations(range(n), k)]


def seed_average(margins: np.ndarray, mask_id: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per subset the mean margin over its repeats ``[2^n, T]``, and the pooled within-subset
    variance of one model's margin ``[T]`` (what seeds alone change)."""
    counts = np.bincount(mask_id, minlength=2**n)
    if (counts < 2).any():
        missing = np.flatnonzero(counts < 2)
        raise ValueError(f"an exhaustive reference needs every subset trained at least twice; subsets "
                         f"{missing[:5].tolist()} have {counts[missing[:5]].tolist()} models")
    means = np.zeros((2**n, margins.shape[1]))
    np.add.at(means, mask_id, margins)
    means /= counts[:, None]
    within = ((margins - means[mask_id]) ** 2).sum(axis=0) / (len(margins) - 2**n)
    return means, within


def projection(means: np.ndarray, within: np.ndarray, repeats: np.ndarray, max_order: int):
    """Least squares of the seed-averaged margins over all subsets on the Möbius terms of order
    ``<= max_order``: ``(terms, coef [1 + K, T], standard error [1 + K, T], share [T])``.

    Row 0 of ``coef`` is the constant. ``share`` is the variance of the averaged margins that
    the projection explains. Standard errors: ``within / repeats`` per subset mean, through
    ``(Phi^T Phi)^-1`` (subsets weigh equally, as in a design of independent halves).
    """
    n = int(np.log2(len(means)))
    terms = terms_up_to(n, max_order)
    masks = subset_masks(n)
    phi = np.ones((len(means), 1 + len(terms)))
    for column, S in enumerate(terms, start=1):
        phi[:, column] = masks[:, list(S)].all(axis=1)
    coef, *_ = np.linalg.lstsq(phi, means, rcond=None)
    fitted = phi @ coef
    share = 1 - ((means - fitted) ** 2).sum(axis=0) / ((means - means.mean(axis=0)) ** 2).sum(axis=0)
    unscaled = np.diag(np.linalg.pinv(phi.T @ phi))
    noise = within / np.mean(repeats)
    return terms, coef, np.sqrt(np.outer(unscaled, noise)), share


def _as_mobius(terms, coef: np.ndarray) -> dict:
    return {(): float(coef[0]), **{S: float(v) for S, v in zip(terms, coef[1:])}}


def recovery(masks, margins, mask_id, repeat, estimators: dict, budgets, targets=None, max_order: int = 3,
             threshold: float = 3.0, seed: int = 0) -> pd.DataFrame:
    """Fit each estimator on ``budget`` random subsets (one repeat each) and score it against
    the exhaustive references; one row per (target, engine, budget).

    ``masks [M, n]``, ``margins [M, T]``, ``mask_id [M]`` (``0..2^n - 1``, as the exhaustive
    design numbers them), ``repeat [M]``: the sweep (``datamodels.store.shards.load_sweep`` gives all
    four). ``estimators``: name -> unfitted engine, each fitted on the subsets its
    :meth:`~datamodels.interactions.Engine.at_budget` chooses: ``budget`` random subsets, or
    for SPEX the distinct subsets its design asks for (every subset exists in an exhaustive
    sweep). The projection's pairs whose coefficient exceeds ``threshold`` standard errors are
    the real ones. Columns: subsets (fitted on), r2 (on the subsets not fitted, against
    seed-averaged margins), r2_projection (the projection's own, same subsets), share (variance the projection explains), pairs_real, recall, precision, pair_error
    (RMSE of the fitted pair coefficients against the projection's, over the real pairs,
    0 for a pair not found), kinds_agree (of the real pairs found, the share with the
    projection's synergy/redundancy label), and pairs_real_order2 / recall_order2 against the
    projection on orders <= 2. A game with strong triples has Möbius pairs that the triples
    offset (-1.6 with the triples, -0.3 without, on the digit classes), so a fit that holds
    pairs and no triples is better compared with the order-2 projection.
    """
    masks, margins, mask_id = np.asarray(masks, dtype=bool), np.asarray(margins, dtype=float), np.asarray(mask_id)
    n = masks.shape[1]
    if not np.array_equal(masks, subset_masks(n)[mask_id]):
        raise ValueError("recovery needs an exhaustive sweep: mask_id j must keep the players of bit pattern j")
    means, within = seed_average(margins, mask_id, n)
    repeats = np.bincount(mask_id, minlength=2**n)
    terms, coef, se, share = projection(means, within, repeats, max_order)
    terms2, coef2, se2, _ = projection(means, within, repeats, 2)
    first = np.flatnonzero(np.asarray(repeat) == 0)
    first = first[np.argsort(mask_id[first])]  # one model per subset, by mask id
    if len(first) != 2**n:
        raise ValueError("recovery needs repeat 0 of every subset")
    bad = [b for b in budgets if not 0 < b < 2**n]
    if bad:
        raise ValueError(f"budgets {bad} must lie in 1..{2**n - 1}: some of the {2**n} subsets must be left to judge on")
    rng = np.random.default_rng(seed)
    all_masks = subset_masks(n)
    pairs = [i for i, S in enumerate(terms, start=1) if len(S) == 2]
    rows = []
    for t in range(margins.shape[1]) if targets is None else targets:
        reference = _as_mobius(terms, coef[:, t])
        real = {terms[i - 1]: coef[i, t] for i in pairs if abs(coef[i, t]) > threshold * se[i, t]}
        real2 = {S: coef2[i, t] for i, S in enumerate(terms2, start=1)
                 if len(S) == 2 and abs(coef2[i, t]) > threshold * se2[i, t]}
        real_kinds = dict(zip(interaction_table(reference, order=2)["members"].map(tuple),
                              interaction_table(reference, order=2)["kind"]))
        for budget in budgets:
            sampled = np.sort(rng.choice(2**n, budget, replace=False))
            for name, estimator in estimators.items():
                engine, chosen = estimator.at_budget(n, budget, sampled)
                unused = np.setdiff1d(np.arange(2**n), chosen)
                projected = np.ones((len(unused), 1 + len(terms)))
                for column, S in enumerate(terms, start=1):
                    projected[:, column] = all_masks[unused][:, list(S)].all(axis=1)
                fit = engine.fit(all_masks[chosen], margins[first[chosen], t])
                found = {S: v for S, v in fit.mobius_.items() if len(S) == 2 and v != 0}
                hits = [S for S, v in real.items() if S in found and np.sign(found[S]) == np.sign(v)]
                hits2 = [S for S, v in real2.items() if S in found and np.sign(found[S]) == np.sign(v)]
                kinds = dict(zip(interaction_table(fit.mobius_, order=2)["members"].map(tuple),
                                 interaction_table(fit.mobius_, order=2)["kind"]))
                error = [found.get(S, 0.0) - v for S, v in real.items()]
                rows.append({
                    "target": t, "engine": name, "budget": budget, "subsets": len(chosen),
                    "r2": r2(means[unused, t], fit.predict(all_masks[unused])),
                    "r2_projection": r2(means[unused, t], projected @ coef[:, t]),
                    "share": share[t], "pairs_real": len(real),
                    "recall": len(hits) / len(real) if real else np.nan,
                    "precision": sum(S in real for S in found) / len(found) if found else np.nan,
                    "pair_error": float(np.sqrt(np.mean(np.square(error)))) if real else np.nan,
                    "kinds_agree": np.mean([kinds[S] == real_kinds[S] for S in hits]) if hits else np.nan,
                    "pairs_real_order2": len(real2),
                    "recall_order2": len(hits2) / len(real2) if real2 else np.nan,
                })
    return pd.DataFrame(rows)
