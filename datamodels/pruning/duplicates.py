"""Duplicates of a run: pairs of players its fit finds to cancel each other's effect, and their groups.

A pair of near-duplicate training examples is the textbook redundant pair: each alone teaches
what both teach together. For every target it matters to, the pair is an OR: its value is ``v``
when either member is kept, so its Möbius spectrum is ``m({i}) = m({j}) = v`` and
``m({i, j}) = -v``: the pair term cancels the members' main effect *entirely*. Players that are
only partial substitutes (two clusters of one digit class, among ten) cancel a fraction of it.
That fraction is the statistic, pooled over every target the pair matters to:

    rho_ij = - sum_t w_t g_t p_t / sum_t w_t g_t^2,     g_t = (m_t({i}) + m_t({j})) / 2,  w_t = 1 / tau_t^2

with ``p_t`` the pair's Möbius coefficient in target ``t``, ``tau_t`` the target's held-out
residual sd: 1 for exact duplicates, 0 for players whose effects add, negative for synergy.
``p_t`` is the fit's pair term *plus* what the fit left of the pair in its residual (the residual's
least-squares coefficient on the centred pair feature ``(x_i - a_i)(x_j - a_j)``, ``a`` the kept
frequencies), so it does not depend on the per-target test having admitted the pair: a twin that
matters to a dozen targets, each below the test's threshold, still counts a dozen times.
Its standard error is the sandwich estimate over the models, clustered by mask (models that share
a mask are one observation), so it holds whatever the correlation of the targets' noise. A pair is
a duplicate when ``rho`` exceeds ``min_fraction`` (default 1/2: more than half of the members' effect
cancelled) at familywise level ``level`` (one-sided, Bonferroni over the candidate pairs).

The candidates (not every pair: at n = 50,000 there are 10^9) are the pairs with a redundant pair
term in some target of the fit (:func:`redundant_pairs`) and each player's ``neighbours`` nearest
players by the cosine of their main-effect profiles over the targets (in units of ``tau_t``),
where duplicates also sit (the datamodels paper's detector of train-test leakage: Ilyas et al.
2022, "Datamodels: predicting predictions from training data"). Cost: the neighbours once, then
one pass over the models' masks and margins in chunks of models, linear in the models times the
fit's main terms plus the candidates (docs/duplicates.md has the figures). Where the per-target
test did not admit a pair, the fit's mains hold part of it (the partner's kept frequency times
it), so that target's ratio reads high, an exact duplicate's up to ``1 / (1 - alpha)``;
correcting it per target was tried and left out (docs/duplicates.md).

The duplicates join a graph on the players; its connected components are the candidate groups
(a player duplicated twice joins both), scored by the mean ``rho`` of their pairs and ranked by
it. Written by :func:`run_duplicates` (``jobs/duplicates.py``):

- ``<run_dir>/duplicates/pairs.parquet`` (``RunFolder.duplicate_pairs``): every candidate pair,
  ``player_a < player_b``, ``fraction`` (``rho``), ``se``, ``z`` (against ``min_fraction``),
  ``targets`` (fitted targets where a member has a main effect), ``duplicate`` (the test
  passed), ``redundancy`` (the fit's redundant pair terms ``|m| / tau_t`` summed over the
  targets, :func:`redundant_pairs`: the fit's own view, 0 where it has none); duplicates first,
  then by fraction.
- ``<run_dir>/duplicates/candidates.parquet`` (``RunFolder.duplicate_candidates``): one row per
  group, best first: ``members`` (list of players), ``score``, ``size``, ``pairs`` (its
  duplicate pairs), ``targets`` (the most of any of its pairs), ``best_pair`` and
  ``best_pair_score``. A curation script drops all but one member of a group, or sends the group
  to review; :func:`datamodels.views.analysis.plot_candidates` draws the groups' images.

It reads the fit and the models (no images, no dataset): it works on an imported run as on a
trained one, and on a fit of some targets only (the release's case study fits 60 of 10,000), over
those targets.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.special import ndtri
from tqdm.auto import tqdm

from ..errors import UserError
from ..renamed import renamed_keyword
from ..run.folder import RunFolder
from ..run.stage_result import StageResult
from ..settings import Settings, is_number
from ..tables import read_frame, write_frame
from ..fit.results import FitView, residual_sd
from .surrogate import Surrogate, fitted_surrogate

STAGE = "duplicates (jobs/duplicates.py)"
# A chunk of models is sized so that its [models, n + T + candidates] arrays stay under this many cells.
_CHUNK_CELLS = 1 << 23


class DuplicatesError(UserError):
    """A run lacks what the duplicate ranking reads (a fit with pair terms), or a setting is wrong."""


@dataclass
class DuplicatesSettings(Settings):
    """``conf/duplicates/default.yaml``: the fit whose terms are read (``engine``), the
    ``neighbours`` by main-effect profile that are candidates too, and the test of a duplicate
    (``min_fraction`` of its members' effect cancelled, at familywise ``level``): module docstring."""

    section = "duplicates"
    error = DuplicatesError
    engine: str = "proxyspex"
    neighbours: int = 5
    min_fraction: float = 0.5
    level: float = 0.05

    def __post_init__(self):
        self.check_integers(("neighbours",), least=0)
        if not (is_number(self.min_fraction) and 0 <= self.min_fraction < 1):
            raise DuplicatesError(f"duplicates.min_fraction={self.min_fraction!r} must lie in [0, 1): the share of "
                                  f"the members' effect a duplicate pair cancels, 1 for exact duplicates")
        if not (is_number(self.level) and 0 < self.level < 1):
            raise DuplicatesError(f"duplicates.level={self.level!r} must lie in (0, 1)")


@renamed_keyword("method", "engine")
def redundant_pairs(view: FitView, engine: str = "proxyspex") -> pd.DataFrame:
    """Every pair of players with a redundant pair term in some target's ``engine`` fit: columns
    ``player_a < player_b``, ``score`` (``|m| / tau_t`` summed over those targets), ``targets``
    (how many), sorted by score, best first. Refuses a run without such a fit or without pairs."""
    if not view.folder.interactions_file().exists():
        raise DuplicatesError(f"{view.folder.interactions_file()} does not exist: fit the run first "
                              f"(jobs/fit.py run_dir={view.run_dir} fit={engine})")
    fitted = view.fit_metrics["engine"].unique()
    if engine not in fitted:
        raise DuplicatesError(f"{view.run_dir} has no {engine} fit (fitted: {sorted(fitted)}): run jobs/fit.py "
                              f"run_dir={view.run_dir} fit={engine}")
    pairs = view.terms(engine=engine, orders=[2], members=False)
    if pairs.empty:
        raise DuplicatesError(f"the {engine} fit of {view.run_dir} has no pair terms: duplicates are found through "
                              f"them (a linear fit has none; fit=proxyspex fits them)")
    pairs = pairs[pairs["kind"] == "redundancy"]
    members = view.interactions_arrow.column("members").take(pa.array(pairs.index, pa.int64())).combine_chunks()
    members = np.sort(members.flatten().to_numpy(zero_copy_only=False).astype(np.int64).reshape(-1, 2), axis=1)
    tau = residual_sd(view, engine).reindex(pairs["target"]).to_numpy()
    strength = pairs["mobius"].abs().to_numpy() / tau
    # one integer per unordered pair: the sums over targets are a bincount, at millions of terms
    keys, inverse = np.unique(members[:, 0] * view.n + members[:, 1], return_inverse=True)
    out = pd.DataFrame({"player_a": keys // view.n, "player_b": keys % view.n,
                        "score": np.bincount(inverse, strength, len(keys)),
                        "targets": np.bincount(inverse, minlength=len(keys))})
    return out.sort_values("score", ascending=False, kind="stable", ignore_index=True)


def profile_neighbours(profiles: sparse.csr_matrix, k: int, progress: bool = False) -> np.ndarray:
    """``[pairs, 2]`` (``a < b``, unique): each player with its ``k`` nearest players by the cosine of
    their profiles (rows), those of positive cosine only; in blocks of players, never ``n x n``."""
    n = profiles.shape[0]
    if k == 0 or n < 2:
        return np.zeros((0, 2), np.int64)
    norms = np.sqrt(np.asarray(profiles.multiply(profiles).sum(1)).ravel())
    # float32: the products' cost is in their indices, but the dense blocks and their partitions
    # are half the size (15% less time at n = 50,000, T = 10,000; the same neighbours there)
    unit = (sparse.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ profiles).astype(np.float32).tocsr()
    unit_t = unit.T.tocsr()  # a CSC right operand was converted again for every block (30% of the time)
    found, k = [], min(k, n - 1)
    block = max(1, _CHUNK_CELLS // n)
    for start in tqdm(range(0, n, block), desc="profile neighbours", unit="block", disable=not progress):
        rows = np.arange(start, min(start + block, n))
        cos = (unit[rows] @ unit_t).toarray()
        cos[np.arange(len(rows)), rows] = -np.inf
        top, best = torch.topk(torch.from_numpy(cos), k, dim=1)  # half the time of np.argpartition
        keep = (top > 0).numpy()
        found.append(np.column_stack([np.repeat(rows, k)[keep.ravel()], best.numpy()[keep]]))
    pairs = np.sort(np.concatenate(found), axis=1)
    return np.unique(pairs, axis=0)


def duplicate_pairs(view: FitView, settings: DuplicatesSettings, progress: bool = True) -> pd.DataFrame:
    """Every candidate pair's duplicate fraction ``rho``, its standard error and test (module
    docstring), duplicates first, then by fraction. Refuses a run without a fit with pair terms."""
    engine, neighbours = settings.engine, settings.neighbours
    min_fraction, level = settings.min_fraction, settings.level
    proposed = redundant_pairs(view, engine)  # refuses a run without the fit
    ready = view.models
    targets = np.unique(view.fit_metrics.loc[view.fit_metrics["engine"] == engine, "target"].to_numpy(np.int64))
    surrogate = fitted_surrogate(ready, view.interactions, view.fit_metrics, engine, targets=targets)
    profiles = surrogate.main_effects
    weight = 1.0 / surrogate.scale**2
    near = profile_neighbours(profiles @ sparse.diags(1.0 / surrogate.scale), neighbours, progress)
    pairs = np.unique(np.concatenate([proposed[["player_a", "player_b"]].to_numpy(np.int64).reshape(-1, 2), near]),
                      axis=0)
    signal, reach = pair_signal(profiles, weight, pairs[:, 0], pairs[:, 1])
    a, b, signal, reach = pairs[signal > 0, 0], pairs[signal > 0, 1], signal[signal > 0], reach[signal > 0]
    weighted = (profiles @ sparse.diags(weight)).tocsr()  # w_t m_t({i}): players x targets
    fitted = _fitted_pair_part(surrogate, a, b, weighted)
    residual, variance = _residual_pair_part(ready, targets, surrogate, a, b, weighted, progress)
    fraction = -(fitted + residual) / signal
    se = np.sqrt(variance) / signal
    z = (fraction - min_fraction) / np.where(se > 0, se, np.inf)
    summed = proposed.set_index(["player_a", "player_b"])["score"]
    out = pd.DataFrame({"player_a": a, "player_b": b, "fraction": fraction, "se": se, "z": z,
                        "targets": reach, "duplicate": z > ndtri(1 - level / max(len(a), 1)),
                        "redundancy": summed.reindex(pd.MultiIndex.from_arrays([a, b]), fill_value=0.0).to_numpy()})
    return out.sort_values(["duplicate", "fraction"], ascending=False, kind="stable", ignore_index=True)


def pair_signal(profiles: sparse.csr_matrix, weight: np.ndarray, a: np.ndarray, b: np.ndarray):
    """Per pair ``(a, b)``: ``sum_t w_t g_t^2`` and the number of targets with ``g_t != 0``, ``g``
    the members' mean main effect (rows of ``profiles``); in blocks of pairs, so that no
    ``[pairs, T]`` matrix is held (180,000 candidates of 10,000 targets: 72 million entries)."""
    signal, reach = np.zeros(len(a)), np.zeros(len(a), np.int64)
    per_pair = 2 * max(1, profiles.nnz // max(profiles.shape[0], 1))
    step = max(1, _CHUNK_CELLS // per_pair)
    for lo in range(0, len(a), step):
        g = ((profiles[a[lo:lo + step]] + profiles[b[lo:lo + step]]) / 2).tocsr()
        signal[lo:lo + step] = g.multiply(g) @ weight
        reach[lo:lo + step] = np.diff(g.indptr)
    return signal, reach


def _fitted_pair_part(surrogate: Surrogate, a: np.ndarray, b: np.ndarray, weighted: sparse.csr_matrix) -> np.ndarray:
    """``sum_t w_t g_t m_t({a, b})`` over the fit's pair terms of every candidate pair
    (``weighted``: players x targets, ``w_t m_t({i})``)."""
    terms = np.flatnonzero(surrogate.orders == 2)
    members = surrogate.incidence.indices[surrogate.incidence.indptr[terms][:, None] + np.arange(2)]
    n = surrogate.n
    keys = a * n + b  # sorted: the pairs are unique and sorted
    where = np.searchsorted(keys, members[:, 0] * n + members[:, 1])
    hit = (where < len(keys)) & (keys[np.minimum(where, len(keys) - 1)] == members[:, 0] * n + members[:, 1])
    rows, targets = where[hit], surrogate.target[terms[hit]]
    mean = (np.asarray(weighted[a[rows], targets]).ravel() + np.asarray(weighted[b[rows], targets]).ravel()) / 2
    return np.bincount(rows, mean * surrogate.mobius[terms[hit]], minlength=len(a))


def _residual_pair_part(ready, targets: np.ndarray, surrogate: Surrogate, a, b, weighted: sparse.csr_matrix,
                        progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """What the fit left of each pair in its residual, ``sum_t w_t g_t beta_t`` (``beta_t`` the
    residual's coefficient on the centred pair feature ``c``; ``t`` over the fitted ``targets``, the
    surrogate's; ``weighted``: players x targets, ``w_t m_t({i})``), and its sandwich variance,
    clustered by mask: one pass over the models in chunks that never split a mask's models.

    ``sum_t w_t g_t r_t`` is the mean over the two members of ``sum_t w_t m_t({i}) r_t``: one
    sparse product per chunk for all players, then a gather per pair, so that the cost does not
    grow with the candidates' (pair, target) entries (at 180,000 candidates of 10,000 targets,
    36 million entries, the pass takes 12 s for 2,000 models; 22 s in float64, 53 s with one
    product per pair)."""
    order = np.argsort(ready.mask_id, kind="stable")
    first = np.flatnonzero(np.r_[True, np.diff(ready.mask_id[order]) != 0])  # each mask's first row in `order`
    one_model_a_mask = len(first) == len(order)
    kept = ready.masks.mean().astype(np.float32)
    weighted = weighted.astype(np.float32)
    step = max(1, _CHUNK_CELLS // (surrogate.n + len(targets) + len(a)))
    cross, norm, variance = np.zeros(len(a)), np.zeros(len(a)), np.zeros(len(a))
    snapped = np.searchsorted(first, np.arange(0, len(order), step))  # each chunk starts at a mask's first row
    bounds = np.unique(np.r_[np.append(first, len(order))[snapped], len(order)])
    for lo, hi in tqdm(list(zip(bounds[:-1], bounds[1:])), desc="duplicate pairs", unit="chunk",
                       disable=not progress):
        rows = order[lo:hi]
        x = ready.masks[rows].unpack()
        residual = np.asarray(ready.target_margins[np.ix_(targets, rows)], dtype=float).T - surrogate.predict(x)
        # [models, pairs] arrays in float32, in place, summed over the models in float64: half the
        # memory traffic of float64 (the pass's cost), the sums' error that of one chunk
        players = (weighted @ residual.T.astype(np.float32)).T  # [models, n]: sum_t w_t m_t({i}) r_t
        combined = players[:, a]
        combined += players[:, b]
        combined *= 0.5  # [models, pairs]: sum_t w_t g_t r_t
        c = x[:, a] - kept[a]
        c *= x[:, b] - kept[b]
        norm += np.square(c).sum(0, dtype=np.float64)
        products = np.multiply(c, combined, out=c)
        cross += products.sum(0, dtype=np.float64)
        if not one_model_a_mask:  # the models of a mask are one observation: their sum is its term
            starts = first[(first >= lo) & (first < hi)] - lo
            products = np.add.reduceat(products, starts, axis=0, dtype=np.float64)
        variance += np.square(products).sum(0, dtype=np.float64)
    norm = np.where(norm > 0, norm, np.inf)
    return cross / norm, variance / norm**2


def candidate_groups(pairs: pd.DataFrame, n: int) -> pd.DataFrame:
    """The groups of players joined by duplicate pairs (of :func:`duplicate_pairs`), best first
    (module docstring); an empty table when there is none."""
    strong = pairs[pairs["duplicate"]]
    if strong.empty:
        return pd.DataFrame({"members": pd.Series([], dtype=object), "score": np.zeros(0), "size": np.zeros(0, int),
                             "pairs": np.zeros(0, int), "targets": np.zeros(0, int),
                             "best_pair": pd.Series([], dtype=object), "best_pair_score": np.zeros(0)})
    a, b = strong["player_a"].to_numpy(np.int64), strong["player_b"].to_numpy(np.int64)
    graph = sparse.coo_array((np.ones(len(strong)), (a, b)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    edges = strong.assign(group=component[a])
    best = edges.loc[edges.groupby("group")["fraction"].idxmax()].set_index("group")
    grouped = edges.groupby("group")
    players = np.unique(np.concatenate([a, b]))
    members = pd.Series(list(players), index=component[players]).groupby(level=0).agg(list)
    out = pd.DataFrame({"members": members, "score": grouped["fraction"].mean(), "size": members.map(len),
                        "pairs": grouped.size(), "targets": grouped["targets"].max(),
                        "best_pair": [[int(x), int(y)] for x, y in zip(best["player_a"], best["player_b"])],
                        "best_pair_score": best["fraction"]})
    out["members"] = [[int(p) for p in group] for group in out["members"]]
    return out.sort_values("score", ascending=False, kind="stable", ignore_index=True)


def run_duplicates(run_dir: str | os.PathLike, settings: DuplicatesSettings, *, progress: bool = True,
                   force: bool = False) -> StageResult:
    """The stage: every candidate pair's duplicate fraction and the ranked groups of a run's
    ``settings.engine`` fit, written (``RunFolder.duplicate_pairs``, ``duplicate_candidates``):
    the stage's :class:`~datamodels.run.stage_result.StageResult` (``outputs``: the ``pairs`` and
    the ``candidates`` groups). Nothing is written on an error. ``force`` is taken for the stages'
    common call and changes nothing: no call is skipped, every one measures anew."""
    view = FitView.open(run_dir)
    pairs = duplicate_pairs(view, settings, progress)
    groups = candidate_groups(pairs, view.n)
    meta = asdict(settings) | {"fingerprint": view.meta["fingerprint"], "n": view.n}
    written = [write_frame(view.folder.duplicate_pairs, pairs, meta),
               write_frame(view.folder.duplicate_candidates, groups, meta)]
    return StageResult("duplicates", written, outputs={"pairs": pairs, "candidates": groups})


def read_pairs(run_dir: str | os.PathLike) -> pd.DataFrame:
    """Every candidate pair the duplicates stage measured (duplicates first, then by fraction)."""
    return read_frame(RunFolder(run_dir).duplicate_pairs, STAGE)[0]


def read_candidates(run_dir: str | os.PathLike) -> pd.DataFrame:
    """The ranked groups a run's duplicates stage wrote (members as lists of ints)."""
    frame, _ = read_frame(RunFolder(run_dir).duplicate_candidates, STAGE)
    return frame.assign(members=[[int(p) for p in m] for m in frame["members"]],
                        best_pair=[[int(p) for p in m] for m in frame["best_pair"]])


def named_candidates(view: FitView, k: int = 10) -> pd.DataFrame:
    """The ``k`` best groups, their members named (``player 12 (3)``: index and class, where known)."""
    top = read_candidates(view.run_dir).head(k)
    return pd.DataFrame({"rank": np.arange(1, len(top) + 1),
                         "players": [" + ".join(view.player_name(p) for p in m) for m in top["members"]],
                         "score": top["score"], "targets": top["targets"], "size": top["size"]})

