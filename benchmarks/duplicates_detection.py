"""Issue 19, item 2: does jobs/duplicates.py find the known twins of the duplicates experiment?

    make duplicates-study   # its last step: .venv/bin/python -m benchmarks.duplicates_detection --run runs/duplicates

Reads a run of ``conf/experiment/duplicates.yaml`` (its ``twins.csv``: the ``D`` known pairs),
with a ProxySPEX and a linear fit and the output of jobs/duplicates.py. Every pair of players
gets a score from each of four detectors:

- ``duplicate fraction``: jobs/duplicates.py's pairs (``duplicates/pairs.parquet``) in its order:
  the duplicates first, then the other candidates, each by the fraction of the members' main
  effect the pair cancels; pairs that are not candidates last;
- ``summed redundancy``: the fit's redundant pair terms in units of each target's residual sd,
  summed over the targets (:func:`datamodels.pruning.duplicates.redundant_pairs`; 0 for a pair never
  redundant), the ranking jobs/duplicates.py used before the fraction;
- ``pixels``: the nearest-neighbour baseline in pixel space: for each image of one player the
  cosine similarity of its best match among the other player's images, averaged both ways;
- ``linear weights``: the cosine similarity of the two players' linear-datamodel weights over
  the targets, the datamodels paper's way to find duplicates (Ilyas et al. 2022, train-test
  leakage: examples with near-identical datamodel vectors).

Per detector: precision and recall of its ``D`` best pairs (equal, as there are ``D`` twins),
and the average precision of its whole ranking. For the candidate groups jobs/duplicates.py
wrote: recall (the twin pairs inside one group) and precision (the pairs inside groups that are
twins). Goal of the issue: recall >= 0.8 at precision >= 0.8.
"""

import argparse
import itertools

import numpy as np
import pandas as pd

from benchmarks.harness import pin_threads, save_results
from datamodels.views.analysis import RunView
from datamodels.pruning.duplicates import read_candidates, read_pairs, redundant_pairs


def pair_index(n: int) -> pd.MultiIndex:
    return pd.MultiIndex.from_tuples(list(itertools.combinations(range(n), 2)), names=["player_a", "player_b"])


def pixel_scores(view: RunView) -> np.ndarray:
    """[n, n]: the symmetric mean best-match cosine similarity of two players' images."""
    images = view.sweep_run.data.images("train").reshape(len(view.groups), -1).astype(np.float64)
    unit = images / np.maximum(np.linalg.norm(images, axis=1, keepdims=True), 1e-12)
    cos = unit @ unit.T
    best = np.stack([cos[:, view.groups == p].max(1) for p in range(view.n)], 1)  # [examples, players]
    mean = np.stack([best[view.groups == p].mean(0) for p in range(view.n)])  # [players, players]
    return (mean + mean.T) / 2


def weight_scores(view: RunView) -> np.ndarray:
    """[n, n]: cosine similarity of the players' linear-datamodel weights over the targets."""
    mains = view.terms(engine="linear", orders=[1])
    player = np.array([int(m[0]) for m in mains["members"]])
    weights = np.zeros((view.n, view.T))
    weights[player, mains["target"].to_numpy()] = mains["mobius"].to_numpy()
    unit = weights / np.maximum(np.linalg.norm(weights, axis=1, keepdims=True), 1e-12)
    return unit @ unit.T


def average_precision(scores: pd.Series, truth: pd.Series) -> float:
    ranked = truth.reindex(scores.sort_values(ascending=False, kind="stable").index).to_numpy()
    hits = np.cumsum(ranked)
    return float((hits / np.arange(1, len(ranked) + 1))[ranked].sum() / ranked.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a run folder of experiment=duplicates, fitted and ranked")
    args = parser.parse_args()
    pin_threads()
    view = RunView.open(args.run)
    twins = pd.read_csv(view.folder.twins)
    index = pair_index(view.n)
    truth = pd.Series(False, index=index)
    truth[list(zip(twins["player_a"], twins["player_b"]))] = True
    measured = read_pairs(args.run).set_index(["player_a", "player_b"])
    in_order = pd.Series(-np.arange(len(measured), dtype=float), index=measured.index)  # the stage's ranking
    summed = redundant_pairs(view).set_index(["player_a", "player_b"])["score"]
    a, b = index.get_level_values(0), index.get_level_values(1)
    pixels = pixel_scores(view)
    detectors = {"duplicate fraction (jobs/duplicates.py)": in_order.reindex(index, fill_value=-np.inf),
                 "summed redundancy (ProxySPEX pair terms)": summed.reindex(index, fill_value=0.0),
                 "pixels (nearest-neighbour cosine)": pd.Series(pixels[a, b], index=index),
                 "linear weights (cosine)": pd.Series(weight_scores(view)[a, b], index=index)}
    D = len(twins)
    rows = []
    for name, scores in detectors.items():
        top = scores.nlargest(D).index
        hit = truth[top].sum()
        rows.append({"detector": name, "precision": hit / D, "recall": hit / D,
                     "average precision": average_precision(scores, truth)})
    groups = read_candidates(args.run)
    inside = {tuple(p) for m in groups["members"] for p in itertools.combinations(sorted(m), 2)}
    found = sum((int(x), int(y)) in inside for x, y in zip(twins["player_a"], twins["player_b"]))
    rows.append({"detector": f"candidate groups of jobs/duplicates.py ({len(groups)} groups)",
                 "precision": found / max(len(inside), 1), "recall": found / D, "average precision": np.nan})
    print(f"{args.run}: n = {view.n} players, T = {view.T} targets, {len(view.models.model_index)} models, "
          f"D = {D} twin pairs among {len(index):,} pairs")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    # The duplicates that are not twins: what are they? Their classes and how alike their images
    # are, as a percentile among the pairs of original players of one class.
    labels = np.asarray(view.player_labels)
    same_class = np.array([pixels[i, j] for i, j in index if labels[i] == labels[j] and not truth[(i, j)]])
    others = measured[measured["duplicate"] & ~truth.reindex(measured.index, fill_value=False)]
    print(f"\n{len(others)} duplicates that are not twins:")
    not_twins = pd.DataFrame({"pair": [f"{i}-{j}" for i, j in others.index],
                              "classes": [f"{labels[i]}, {labels[j]}" for i, j in others.index],
                              "fraction": others["fraction"].round(2), "se": others["se"].round(2),
                              "pixel cosine": [round(pixels[i, j], 3) for i, j in others.index],
                              "percentile in class": [round(100 * np.mean(same_class < pixels[i, j]), 1)
                                                      for i, j in others.index]})
    print(not_twins.to_string(index=False))
    save_results("duplicates_detection", rows, not_twins=not_twins.to_dict("records"))


if __name__ == "__main__":
    main()
