"""Issue 19, item 2: is it the interaction tests that miss the twins, or the data? Every pair's
redundancy statistic, with no selection and no threshold, summed over the targets.

    .venv/bin/python -m benchmarks.twins_pair_statistics --run runs/duplicates

For each target: ProxySPEX's tests' model with no interaction (the linear datamodel's mains, the
clearly non-zero ones by least squares) on the fit stage's 80% of the models, and every pair's
test statistic against its residual (``<r, c_ij> / (sigma ||c_ij||)``, ``c_ij`` the centred pair
feature), the same statistic the tests use. A pair's redundancy is its negative statistics summed
over the targets. If the known twins rank low even here, no test threshold or search could find
them: the models do not see them as more redundant than other pairs.
"""

import argparse

import numpy as np
import pandas as pd

from benchmarks.harness import pin_threads, save_results
from benchmarks.tail_pair_statistics import fit_with_selection, fitting_split
from datamodels.run.folder import RunFolder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="runs/duplicates")
    args = parser.parse_args()
    pin_threads()
    ready, rows, X = fitting_split(args.run)
    n = ready.meta["n"]
    centred = X.columns(np.arange(n)).astype(float)
    centred -= centred.mean(axis=0)
    norms = np.sqrt((centred**2).T @ (centred**2))
    redundancy = np.zeros((n, n))
    for target in range(ready.target_margins.shape[0]):
        _, sel = fit_with_selection(X, np.asarray(ready.target_margins[target])[rows].astype(float), screen_k=n)
        resid, sigma = sel.fit(np.empty(0, dtype=np.int64))
        z = (centred * resid[:, None]).T @ centred / np.where(norms > 0, norms, 1) / sigma
        redundancy += np.where(z < 0, -z, 0.0)
    twins = pd.read_csv(RunFolder(args.run).twins)
    upper = np.triu_indices(n, 1)
    order = np.argsort(-redundancy[upper], kind="stable")
    rank = {(int(a), int(b)): r for r, (a, b) in enumerate(zip(upper[0][order], upper[1][order]))}
    ranks = sorted(rank[(min(a, b), max(a, b))] + 1 for a, b in zip(twins["player_a"], twins["player_b"]))
    D = len(twins)
    print(f"{args.run}: {D} twin pairs among {len(order):,} pairs; summed redundancy over {ready.target_margins.shape[0]} "
          f"targets, no selection: twins in the top {D}: {sum(r <= D for r in ranks)}; their ranks: {ranks}")
    save_results("twins_pair_statistics", [{"run": args.run, "twin_pairs": D, "pairs": len(order),
                                            "targets": ready.target_margins.shape[0], "twins_in_top": sum(r <= D for r in ranks),
                                            "ranks": ranks}])


if __name__ == "__main__":
    main()
