"""Candidate duplicate groups of a run: players its fit finds redundant for many targets at once.

A pair of near-duplicate training examples is the textbook redundant pair: each alone teaches
what both teach together, so for every target they matter to, the fit's pair term ``m({i, j})``
has the opposite sign to the members' main effects (the ``redundancy`` kind of
:func:`datamodels.interactions.interaction_table`). One target's redundant pair may be chance;
a pair that is redundant for many targets is a duplicate candidate. The ranking:

1. every redundant pair term of the fit (``fit/interactions.parquet``, one method, ProxySPEX by
   default) is measured as ``|m| / tau_t``, in units of its target's residual sd
   (:func:`datamodels.analysis.term_strength`, the scale the report and pruning use), so that a
   noisy target's term does not outweigh a sharp one's;
2. per pair of players, these are summed over the targets (``score``), and the targets counted;
3. the pairs whose score reaches ``min_score`` are the edges of a graph on the players; its
   connected components (a player redundant with two others joins them) are the candidate
   groups, scored by the sum of their edges' scores and ranked by it.

Written to ``<run_dir>/duplicates/candidates.parquet`` (``RunFolder.duplicate_candidates``):
one row per group, best first, columns ``members`` (list of players), ``score``, ``size``,
``pairs`` (its edges), ``targets`` (the most targets any of its pairs is redundant for),
``best_pair`` and ``best_pair_score``. A curation script drops all but one member of a group,
or sends the group to review. It needs the fit only (no images, no dataset): it works on an
imported run as on a trained one.

The idea of finding duplicates through the attributions they share is the datamodels paper's
(Ilyas et al., 2022, "Datamodels: predicting predictions from training data", section on
train-test leakage, with the linear weights); here it reads the fit's pair terms instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pyarrow as pa
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from .analysis import RunView, _show, residual_sd
from .errors import UserError
from .run_folder import RunFolder
from .tables import read_frame, write_frame

STAGE = "duplicates (jobs/duplicates.py)"


class DuplicatesError(UserError):
    """A run lacks what the duplicate ranking reads (a fit with pair terms), or a setting is wrong."""


def redundant_pairs(view: RunView, method: str = "proxyspex") -> pd.DataFrame:
    """Every pair of players with a redundant pair term in some target's ``method`` fit: columns
    ``player_a < player_b``, ``score`` (``|m| / tau_t`` summed over those targets), ``targets``
    (how many), sorted by score, best first. Refuses a run without such a fit or without pairs."""
    if not view.folder.interactions().exists():
        raise DuplicatesError(f"{view.folder.interactions()} does not exist: fit the run first "
                              f"(jobs/fit.py run_dir={view.run_dir} fit={method})")
    fitted = view.fit_metrics["method"].unique()
    if method not in fitted:
        raise DuplicatesError(f"{view.run_dir} has no {method} fit (fitted: {sorted(fitted)}): run jobs/fit.py "
                              f"run_dir={view.run_dir} fit={method}")
    pairs = view.terms(method=method, orders=[2], members=False)
    if pairs.empty:
        raise DuplicatesError(f"the {method} fit of {view.run_dir} has no pair terms: duplicates are found through "
                              f"them (a linear fit has none; fit=proxyspex fits them)")
    pairs = pairs[pairs["kind"] == "redundancy"]
    members = view.interaction_table.column("members").take(pa.array(pairs.index, pa.int64())).combine_chunks()
    members = np.sort(members.flatten().to_numpy(zero_copy_only=False).astype(np.int64).reshape(-1, 2), axis=1)
    tau = residual_sd(view, method).reindex(pairs["target"]).to_numpy()
    strength = pairs["mobius"].abs().to_numpy() / tau
    # one integer per unordered pair: the sums over targets are a bincount, at millions of terms
    keys, inverse = np.unique(members[:, 0] * view.n + members[:, 1], return_inverse=True)
    out = pd.DataFrame({"player_a": keys // view.n, "player_b": keys % view.n,
                        "score": np.bincount(inverse, strength, len(keys)),
                        "targets": np.bincount(inverse, minlength=len(keys))})
    return out.sort_values("score", ascending=False, kind="stable", ignore_index=True)


def candidate_groups(pairs: pd.DataFrame, n: int, min_score: float = 1.0) -> pd.DataFrame:
    """The groups of players joined by pairs (of :func:`redundant_pairs`) of score at least
    ``min_score``, best first (module docstring); an empty table when no pair reaches it."""
    if not min_score > 0:
        raise DuplicatesError(f"duplicates.min_score={min_score} must be positive")
    strong = pairs[pairs["score"] >= min_score]
    if strong.empty:
        return pd.DataFrame({"members": pd.Series([], dtype=object), "score": np.zeros(0), "size": np.zeros(0, int),
                             "pairs": np.zeros(0, int), "targets": np.zeros(0, int),
                             "best_pair": pd.Series([], dtype=object), "best_pair_score": np.zeros(0)})
    a, b = strong["player_a"].to_numpy(np.int64), strong["player_b"].to_numpy(np.int64)
    graph = sparse.coo_array((np.ones(len(strong)), (a, b)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    edges = strong.assign(group=component[a])
    best = edges.loc[edges.groupby("group")["score"].idxmax()].set_index("group")
    grouped = edges.groupby("group")
    players = np.unique(np.concatenate([a, b]))
    members = pd.Series(list(players), index=component[players]).groupby(level=0).agg(list)
    out = pd.DataFrame({"members": members, "score": grouped["score"].sum(), "size": members.map(len),
                        "pairs": grouped.size(), "targets": grouped["targets"].max(),
                        "best_pair": [[int(x), int(y)] for x, y in zip(best["player_a"], best["player_b"])],
                        "best_pair_score": best["score"]})
    out["members"] = [[int(p) for p in group] for group in out["members"]]
    return out.sort_values("score", ascending=False, kind="stable", ignore_index=True)


def run_duplicates(run_dir: str | os.PathLike, method: str = "proxyspex", min_score: float = 1.0) -> Path:
    """The stage: rank the candidate groups of a run's ``method`` fit and write them
    (``RunFolder.duplicate_candidates``); returns the path. Nothing is written on an error."""
    view = RunView.open(run_dir)
    if not min_score > 0:  # before reading anything
        raise DuplicatesError(f"duplicates.min_score={min_score} must be positive")
    groups = candidate_groups(redundant_pairs(view, method), view.n, min_score)
    meta = {"method": method, "min_score": min_score, "fingerprint": view.meta["fingerprint"], "n": view.n}
    return write_frame(view.folder.duplicate_candidates, groups, meta)


def read_candidates(run_dir: str | os.PathLike) -> pd.DataFrame:
    """The ranked groups a run's duplicates stage wrote (members as lists of ints)."""
    frame, _ = read_frame(RunFolder(run_dir).duplicate_candidates, STAGE)
    return frame.assign(members=[[int(p) for p in m] for m in frame["members"]],
                        best_pair=[[int(p) for p in m] for m in frame["best_pair"]])


def named_candidates(view: RunView, k: int = 10) -> pd.DataFrame:
    """The ``k`` best groups, their members named (``player 12 (3)``: index and class, where known)."""
    top = read_candidates(view.run_dir).head(k)
    return pd.DataFrame({"rank": np.arange(1, len(top) + 1),
                         "players": [" + ".join(view.player_name(p) for p in m) for m in top["members"]],
                         "score": top["score"], "targets": top["targets"], "size": top["size"]})


def plot_candidates(view: RunView, k: int = 6, max_members: int = 8):
    """The ``k`` best groups, one row each: the first image of each member (up to ``max_members``),
    side by side, titled with the player and its class. Needs the run's images."""
    view._need_images("the images of the candidate duplicates")
    top = read_candidates(view.run_dir).head(k)
    cols = max(2, min(max_members, int(top["size"].max()) if len(top) else 2))
    fig, axes = plt.subplots(max(len(top), 1), cols, figsize=(1.1 * cols, 1.3 * max(len(top), 1) + 0.3),
                             squeeze=False)
    images, classes = view.sweep_run.data.images("train"), view.class_names
    for row, (members, score) in enumerate(zip(top["members"], top["score"])):
        for col, player in enumerate(members[:cols]):
            label = view.player_labels[player]
            _show(axes[row, col], images[view.first_example[player]], f"#{player} {classes[label]}")
        axes[row, 0].set_ylabel(f"{row + 1}: {score:.1f}", fontsize=8)
    for ax in axes.flat:
        if not ax.images:
            ax.axis("off")
    fig.suptitle("candidate duplicate groups, best first (row label: rank and score)", fontsize=9)
    fig.tight_layout()
    return fig
