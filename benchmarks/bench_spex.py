"""SPEX against ProxySPEX and the linear datamodel at equal numbers of retrained models.

    make bench-spex
    .venv/bin/python -m benchmarks.bench_spex [--n 100,1000] [--budgets 1000,2000,4000] [--run runs/classes-exhaustive]

Planted games (``datamodels.sweep.planted``), with seed noise of 0.3 times the game's spread
(noise ceiling R^2 = 1 / (1 + 0.3^2) = 0.917): *hierarchical* (planted pairs and a triple whose
members have main effects, as ProxySPEX assumes) and *pure* (the same interactions, their members'
main effects removed: each still correlates with the margin alone, through its Möbius pairs), and
*parity* (the same interactions as Fourier terms: each member alone is uncorrelated with the
margin, so nothing hints at them from main effects; no hierarchy at all). SPEX is fitted on its design's masks at each budget; ProxySPEX and the
linear datamodel on that many uniform random masks, and on a tenth of them (the "10x fewer"
claim of the ProxySPEX paper). Scores: R^2 on 2,000 held-out masks against noisy margins, as a
fraction of the noise ceiling, and recall of the planted interactions (same members, same sign).

Real game: the exhaustive sweep of the 10 digit classes (every subset, 2 seeds;
``make bench-exhaustive`` trains it). Every mask SPEX asks for exists there, so SPEX is answered
from the table (``datamodels.fit.exhaustive.recovery``), against the exact references.
"""

import argparse
import time

import numpy as np

from benchmarks.harness import cpu_name, pin_threads, save_results

from datamodels.fit.exhaustive import recovery
from datamodels.fit.faithfulness import r2
from datamodels.interactions import (SPEX, LinearDatamodel, ProxySPEX, fourier_to_mobius, mobius_predict, spex_design,
                                     spex_plan)
from datamodels.sweep.planted import bernoulli_sd, planted_game
from datamodels.store.shards import load_sweep

NOISE = 0.3


def games(n: int) -> dict:
    hierarchical = planted_game(n, n_synergy=2, n_redundancy=2, n_triples=1, seed=n, n_mains=10)
    planted = [S for S in hierarchical if len(S) > 1]
    members = {i for S in planted for i in S}
    pure = {S: v for S, v in hierarchical.items() if not (len(S) == 1 and S[0] in members)}
    # Parity-like: the same interactions as Fourier terms, so each member alone is uncorrelated
    # with the margin (its Möbius main effects cancel its pairs' on average): no hierarchy at all.
    fourier = {S: v / 2 ** len(S) for S, v in hierarchical.items() if not (len(S) == 1 and S[0] in members)}
    return {"hierarchical": hierarchical, "pure": pure, "parity": fourier_to_mobius(fourier)}


def score(fit, game, X_test, y_test, ceiling) -> dict:
    planted = {S: v for S, v in game.items() if len(S) > 1 and abs(v) > 0.05}
    found = fit.mobius_
    hits = [S for S, v in planted.items() if S in found and np.sign(found[S]) == np.sign(v)]
    return {"r2/ceiling": r2(y_test, fit.predict(X_test)) / ceiling, "recall": len(hits) / len(planted)}


def planted_part(ns, budgets, degree) -> list[dict]:
    rows = []
    for n in ns:
        for kind, game in games(n).items():
            sd = NOISE * bernoulli_sd(game, 0.5)
            ceiling = 1 / (1 + NOISE**2)
            rng = np.random.default_rng(n)
            X_test = rng.random((2000, n)) < 0.5
            y_test = mobius_predict(game, X_test) + sd * rng.normal(size=len(X_test))
            for budget in budgets:
                try:
                    spex_plan(n, budget, degree)
                except ValueError as err:
                    print(f"n={n} budget={budget}: SPEX skipped ({err})")
                    continue
                design = spex_design(n, budget, 0, degree)
                y = mobius_predict(game, design) + sd * rng.normal(size=len(design))
                start = time.perf_counter()
                fit = SPEX(budget, 0, degree).fit(design, y)
                rows.append({"n": n, "game": kind, "method": "spex", "models": len(design),
                             "seconds": time.perf_counter() - start, **score(fit, game, X_test, y_test, ceiling)})
                for models in (len(design) // 10, len(design) // 4, len(design) // 2, len(design)):
                    X = rng.random((models, n)) < 0.5
                    y = mobius_predict(game, X) + sd * rng.normal(size=models)
                    for name, estimator in (("proxyspex", ProxySPEX()), ("linear", LinearDatamodel())):
                        start = time.perf_counter()
                        fit = estimator.fit(X, y)
                        rows.append({"n": n, "game": kind, "method": name, "models": models,
                                     "seconds": time.perf_counter() - start,
                                     **score(fit, game, X_test, y_test, ceiling)})
    import pandas as pd

    table = pd.DataFrame(rows).sort_values(["n", "game", "models", "method"])
    print(f"\nplanted games (seed noise {NOISE} x the game's sd; noise ceiling R^2 {1 / (1 + NOISE**2):.3f}; "
          f"SPEX degree {degree}):")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    reached = table[table["r2/ceiling"] >= 0.9].groupby(["n", "game", "method"])["models"].min()
    print("\nfewest models reaching 90% of the noise ceiling (absent: not within the grid):")
    print(reached.unstack("method").to_string(float_format=lambda v: f"{v:.0f}"))
    return table.to_dict("records")


def exhaustive_part(run, budgets, targets, degree) -> list[dict]:
    sweep = load_sweep(run, require_complete=True)
    n = sweep.meta["n"]
    start = time.perf_counter()
    table = recovery(sweep.masks, sweep.margins, sweep.mask_id, sweep.repeat,
                     {"spex": SPEX(seed=0, degree=degree), "proxyspex": ProxySPEX(), "linear": LinearDatamodel()},
                     budgets, targets=range(min(targets, sweep.meta["T"])))
    print(f"\n{run}: n = {n} players, targets {table['target'].nunique()}, {time.perf_counter() - start:.0f} s "
          f"(SPEX degree {degree}; 'subsets' = distinct subsets fitted on, medians over targets)")
    summary = table.groupby(["budget", "engine"])[["subsets", "r2", "r2_projection", "recall", "precision",
                                                   "recall_order2"]].median()
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
    return summary.reset_index().assign(run=str(run), n=n).to_dict("records")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", default="100,1000", help="planted games' players, comma-separated ('' to skip)")
    parser.add_argument("--budgets", default="1000,2000,4000", help="SPEX budgets on planted games (most masks)")
    parser.add_argument("--degree", type=int, default=2, help="SPEX's degree parameter")
    parser.add_argument("--run", default="runs/classes-exhaustive", help="exhaustive sweep ('' to skip)")
    parser.add_argument("--run-budgets", default="264,528", help="SPEX budgets on the exhaustive game")
    parser.add_argument("--targets", type=int, default=20, help="exhaustive game: the first this many targets")
    args = parser.parse_args()
    pin_threads()
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {cpu_name()}, one thread")
    rows = []
    if args.n:
        rows += [{"part": "planted"} | row for row in planted_part(
            [int(n) for n in args.n.split(",")], [int(b) for b in args.budgets.split(",")], args.degree)]
    if args.run:
        rows += [{"part": "exhaustive"} | row for row in exhaustive_part(
            args.run, [int(b) for b in args.run_budgets.split(",")], args.targets, args.degree)]
    save_results("bench_spex", rows)


if __name__ == "__main__":
    main()
