"""What a retraining check trains: the checks a fit's claims call for, and the masks that test them.

A **check** is one claim and its prediction: a pair's interaction on its target (``pairs``), or a
removal set's margin drop on its target (``removal``). A design lays the checks' masks out as a
file design (``sweep.design=file``) whose **seed groups** pair the cells of one factorial: they
train with the same seed, so the seed's noise largely cancels in their difference. Each mask's
**role** (which check, which background, which cell) goes beside it, so the measurement reads
the child sweep's margins by role alone. Every mask is a pure function of the checks, ``n``,
``alpha``, the number of backgrounds and ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np
import pandas as pd

from ..errors import UserError
from .polynomial import TargetPolynomial

# Separate streams for the backgrounds, the control pairs, the sampled ranks and the random removals.
_BACKGROUND, _CONTROL, _STRATUM, _RANDOM = 10, 11, 12, 13
SELECTIONS = ("top", "stratified", "twins")


class AblationError(UserError):
    """A retraining check cannot be planned or measured as asked; the message says why."""


@dataclass
class Design:
    """Masks (bool ``[M, n]``), their seed groups (int ``[M]``), seeds per mask (``repeats``), and
    one role row per mask: which of the design's pairs or sets it tests (``pair`` or ``set``),
    ``background`` (-1: the model's repeat is its background), and the cell."""

    masks: np.ndarray
    seed_groups: np.ndarray
    repeats: int
    roles: pd.DataFrame

    @property
    def num_models(self) -> int:
        return len(self.masks) * self.repeats


def backgrounds(n: int, alpha: float, count: int, seed: int) -> np.ndarray:
    """``count`` random training sets drawn as the run's sweep draws them: bool ``[count, n]``,
    every player kept with probability ``alpha``."""
    return np.stack([np.random.default_rng([seed, _BACKGROUND, b]).random(n) < alpha for b in range(count)]) \
        if count else np.zeros((0, n), dtype=bool)


# ---------------------------------------------------------------------------------------- pairs


def fitted_pairs(terms: pd.DataFrame, n: int, alpha: float, residual_sd: pd.Series) -> pd.DataFrame:
    """Every pair the fit reports (its order-2 terms) with its predicted expected interaction at
    ``alpha`` (``sum over terms T containing the pair of m(T) alpha^(|T|-2)``: triples through it
    count), its kind, and ``strength``: that prediction relative to its target's residual sd.
    Ranked by strength (``rank`` 0 is the strongest). ``terms``: one method's terms with members;
    with a bool column ``claimed``, only the claimed pairs are listed, and every term predicts."""
    rows = []
    for target, own in terms.groupby("target", sort=True):
        poly = TargetPolynomial(n, own["members"].to_list(), own["mobius"].to_numpy())
        claimed = own["claimed"] if "claimed" in own else np.ones(len(own), dtype=bool)
        for members, kind, stated in zip(own["members"], own["kind"], claimed):
            if len(members) == 2 and stated:
                i, j = sorted(int(p) for p in members)
                rows.append((int(target), i, j, kind, poly.pair_interaction(i, j, alpha)))
    pairs = pd.DataFrame(rows, columns=["target", "i", "j", "kind", "predicted"])
    scale = residual_sd.reindex(pairs["target"]).to_numpy()
    pairs["strength"] = np.abs(pairs["predicted"].to_numpy()) / scale
    pairs = pairs.sort_values(["strength", "target", "i", "j"], ascending=[False, True, True, True],
                              kind="stable", ignore_index=True)
    pairs["rank"] = np.arange(len(pairs))
    return pairs


def choose_pairs(pairs: pd.DataFrame, count: int | None, selection: str, strata: int, seed: int) -> pd.DataFrame:
    """The pairs to check: the ``count`` strongest (``top``), or ``count`` drawn evenly from
    ``strata`` equal bins of the ranking (``stratified``: the whole table's precision, weighting
    each bin by its size; column ``stratum`` and ``stratum_size``). ``count=None``: every pair."""
    if selection not in SELECTIONS:
        raise AblationError(f"ablate.selection={selection!r}; choose one of {', '.join(SELECTIONS)}")
    if pairs.empty:
        raise AblationError("the fit reports no pair: there is nothing to check (fit with more models, or "
                            "check another fit with ablate.fit_engine=)")
    if count is None or count >= len(pairs):
        chosen = pairs.assign(stratum=0, stratum_size=len(pairs))
    elif selection == "top":
        chosen = pairs.head(count).assign(stratum=0, stratum_size=count)
    else:
        bins = np.array_split(np.arange(len(pairs)), min(strata, count))
        quota = np.array_split(np.arange(count), len(bins))
        parts = []
        for s, (ranks, take) in enumerate(zip(bins, quota)):
            picked = np.sort(np.random.default_rng([seed, _STRATUM, s]).choice(ranks, len(take), replace=False))
            parts.append(pairs.iloc[picked].assign(stratum=s, stratum_size=len(ranks)))
        chosen = pd.concat(parts, ignore_index=True)
    return chosen.reset_index(drop=True).assign(control=False)


def control_pairs(chosen: pd.DataFrame, all_pairs: pd.DataFrame, n: int, seed: int,
                  polynomials: dict[int, TargetPolynomial], alpha: float) -> pd.DataFrame:
    """One random pair per checked pair, on the same target, among the pairs the fit does not
    report there; its prediction is what the fit says of it (zero unless a triple holds it)."""
    reported = set(zip(all_pairs["target"], all_pairs["i"], all_pairs["j"]))
    rows = []
    for c, target in enumerate(chosen["target"]):
        rng = np.random.default_rng([seed, _CONTROL, c])
        for _ in range(1000):
            i, j = sorted(int(p) for p in rng.choice(n, 2, replace=False))
            if (target, i, j) not in reported:
                break
        rows.append((int(target), i, j, "control", polynomials[int(target)].pair_interaction(i, j, alpha)))
    controls = pd.DataFrame(rows, columns=["target", "i", "j", "kind", "predicted"])
    return controls.assign(strength=np.nan, rank=-1, stratum=-1, stratum_size=0, control=True)


def pairs_design(checks: pd.DataFrame, n: int, alpha: float, count: int, seed: int) -> Design:
    """The 2x2 factorial of every checked pair on ``count`` backgrounds: the background with both,
    only ``i``, only ``j``, neither, trained with one seed (a seed group per pair and background).
    The masks depend on the players only: a pair checked on several targets is trained once
    (``checks["pair"]`` says which of the design's pairs a check reads)."""
    drawn = backgrounds(n, alpha, count, seed)
    players = list(dict.fromkeys(zip(checks["i"], checks["j"])))
    checks["pair"] = [players.index(p) for p in zip(checks["i"], checks["j"])]
    masks, groups, roles = [], [], []
    for pair, (i, j) in enumerate(players):
        for b in range(count):
            for in_i, in_j in ((1, 1), (1, 0), (0, 1), (0, 0)):
                mask = drawn[b].copy()
                mask[i], mask[j] = in_i, in_j
                masks.append(mask)
                groups.append(pair * count + b)
                roles.append((pair, b, in_i, in_j))
    return Design(np.array(masks, dtype=bool).reshape(-1, n), np.array(groups, np.int64), 1,
                  pd.DataFrame(roles, columns=["pair", "background", "in_i", "in_j"]))


# ---------------------------------------------------------------------------------------- removal


def removal_sets(polynomials: dict[str, dict[int, TargetPolynomial]], targets: list[int], methods: list[str],
                 ks: list[int], level: float, fit_engine: str, classes: np.ndarray | None,
                 target_classes: np.ndarray | None, seed: int) -> pd.DataFrame:
    """One removal set per target, method and ``k``: ``interactions`` the adaptive greedy on the
    ``fit_engine`` polynomial at ``level`` (the background's kept fraction; 1 from the whole set),
    ``random`` ``k`` players of the target's class (of any class when classes are unknown), any
    other method (``linear``, ``trak``, ...) the ``k`` players of its fit with the largest main
    effects. Each set carries every fitted method's predicted drop (``predicted_<method>``)."""
    n = next(iter(next(iter(polynomials.values())).values())).n
    rows = []
    for target in targets:
        for method in methods:
            for k in ks:
                if method == "interactions":
                    members = polynomials[fit_engine][target].greedy_removal(k, level)
                elif method == "random":
                    pool = np.arange(n) if classes is None or target_classes is None else \
                        np.flatnonzero(classes == target_classes[target])
                    if len(pool) < k:
                        pool = np.arange(n)
                    members = np.random.default_rng([seed, _RANDOM, target, k]).choice(pool, k, replace=False)
                else:
                    members = top_mains(polynomials[method][target], k)
                rows.append({"target": target, "method": method, "k": k, "members": sorted(int(p) for p in members)})
    sets = pd.DataFrame(rows)
    for method, polys in polynomials.items():
        sets[f"predicted_{method}"] = [polys[t].removal_drop(m, level) for t, m in zip(sets["target"], sets["members"])]
    return sets


def top_mains(poly: TargetPolynomial, k: int) -> np.ndarray:
    """The ``k`` players of largest main effect (ties to the lower index): a linear datamodel's ranking."""
    return np.argsort(-poly.mains(), kind="stable")[:k]


def removal_design(sets: pd.DataFrame, n: int, background: str, alpha: float, count: int, seed: int) -> Design:
    """``background=alpha``: on each of ``count`` backgrounds drawn at ``alpha``, the background with
    the set and without it (a seed group per set and background). ``background=full``: the whole
    training set and the whole set minus each removal set, ``count`` seeds each, the whole set's
    model of seed ``r`` shared by every set (Ilyas et al.'s protocol). The masks depend on the
    members only: methods that choose the same set train it once (``sets["set"]`` says which of
    the design's sets a check reads; -1 in the roles is the whole set)."""
    unique = list(dict.fromkeys(tuple(m) for m in sets["members"]))
    sets["set"] = [unique.index(tuple(m)) for m in sets["members"]]
    if background == "full":
        masks = np.ones((1 + len(unique), n), dtype=bool)
        for s, members in enumerate(unique):
            masks[1 + s, list(members)] = False
        roles = pd.DataFrame({"set": np.arange(-1, len(unique)), "background": -1,
                              "removed": np.r_[0, np.ones(len(unique), np.int64)]})
        return Design(masks, np.zeros(len(masks), np.int64), count, roles)
    drawn = backgrounds(n, alpha, count, seed)
    masks, groups, roles = [], [], []
    for s, members in enumerate(unique):
        for b in range(count):
            for removed in (0, 1):
                mask = drawn[b].copy()
                mask[list(members)] = not removed
                masks.append(mask)
                groups.append(s * count + b)
                roles.append((s, b, removed))
    return Design(np.array(masks, dtype=bool).reshape(-1, n), np.array(groups, np.int64), 1,
                  pd.DataFrame(roles, columns=["set", "background", "removed"]))


def exact_pairs(pair_checks: pd.DataFrame, masks: np.ndarray, margins: np.ndarray) -> pd.DataFrame:
    """Every pair's double difference averaged over **all** backgrounds of an exhaustive sweep (each
    subset of the other players once, at alpha 1/2): the truth a retraining check of the same pair
    estimates (``exact``), and its standard error from the seed noise of the sweep's repeats
    (``exact_se``: each of the ``2^n`` subsets enters once with weight ``4 / 2^n``, so it is
    ``2 sigma / sqrt(r 2^n)`` with ``r`` repeats and ``sigma^2`` the pooled within-subset variance).
    ``masks`` bool ``[m, n]`` holding every subset ``r`` times, ``margins`` ``[m, T]``."""
    n = masks.shape[1]
    code = masks.astype(np.int64) @ (1 << np.arange(n))
    count = np.bincount(code, minlength=2 ** n)
    if (count == 0).any():
        raise AblationError(f"exact double differences need all {2 ** n} subsets of the {n} players; "
                            f"{int((count == 0).sum())} are missing")
    mean = np.zeros((2 ** n, margins.shape[1]))
    np.add.at(mean, code, margins)
    mean /= count[:, None]
    within = np.zeros_like(mean)
    np.add.at(within, code, (margins - mean[code]) ** 2)
    dof = len(code) - 2 ** n
    sigma2 = within.sum(0) / dof if dof > 0 else np.full(margins.shape[1], np.nan)
    repeats = len(code) / 2 ** n
    rows = []
    for target, i, j in zip(pair_checks["target"], pair_checks["i"], pair_checks["j"]):
        rest = np.array([c for c in range(2 ** n) if not (c >> i) & 1 and not (c >> j) & 1])
        f = mean[:, target]
        exact = float(np.mean(f[rest | 1 << i | 1 << j] - f[rest | 1 << i] - f[rest | 1 << j] + f[rest]))
        rows.append((exact, float(2 * np.sqrt(sigma2[target] / (repeats * 2 ** n)))))
    return pd.DataFrame(rows, columns=["exact", "exact_se"], index=pair_checks.index)
