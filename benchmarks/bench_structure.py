"""ProxySPEX on interaction structures with a known answer: hierarchy, dense games, high orders.

    .venv/bin/python -m benchmarks.bench_structure

Each case draws i.i.d. masks (keep probability 1/2), evaluates a game given as a Möbius spectrum
(plus Gaussian noise at ``noise`` x its standard deviation), fits ProxySPEX and scores it on
5,000 fresh masks against the noiseless game: R^2, the true interactions (order >= 2) found
exactly, the false ones, and the orders found.

- hierarchical triple: mains of 0.2, their three pairs of 0.2 and the triple 0.5, n = 64;
- unanimity: sums of unanimity games (shapiq's SOUM benchmark games), 100 random subsets of
  1..3 players with weights U(0, 1), n = 60, noiseless;
- high order: the same with subsets of up to 5 players, n = 40, ``max_order = 5``.
"""

import argparse
import time

import numpy as np

from benchmarks.harness import cpu_name, pin_threads, save_results

from datamodels.fit.faithfulness import r2
from datamodels.interactions import ProxySPEX, mobius_predict
from datamodels.sweep.planted import unanimity_game

HIERARCHY = {(): 0.0, (3,): 0.2, (17,): 0.2, (40,): 0.2, (3, 17): 0.2, (3, 40): 0.2, (17, 40): 0.2,
             (3, 17, 40): 0.5}
CASES = [("hierarchical triple", HIERARCHY, 64, m, 0.1, 3, 0) for m in (2000, 20000)] + [
    (f"unanimity, seed {seed}", unanimity_game(60, 100, 3, seed), 60, m, 0.0, 3, seed)
    for seed in range(3) for m in (2000, 10000)] + [
    (f"unanimity up to order 5, seed {seed}", unanimity_game(40, 40, 5, seed), 40, 4000, 0.0, 5, seed)
    for seed in range(2)]


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    pin_threads()
    rows = []
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {cpu_name()}, one thread")
    print("| case | n | models | max_order | R^2 | found / true | false | orders found | fit s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, game, n, m, noise, max_order, seed in CASES:
        X, y = _draw(game, n, m, noise, seed)
        X_test = np.random.default_rng([seed, m, 1]).random((5000, n)) < 0.5
        start = time.perf_counter()
        fit = ProxySPEX(max_order=max_order).fit(X, y)
        seconds = time.perf_counter() - start
        true = {k for k in game if len(k) > 1}
        found = {k for k, v in fit.mobius_.items() if len(k) > 1 and v != 0}
        rows.append({"case": name, "n": n, "models": m, "max_order": max_order,
                     "r2": r2(mobius_predict(game, X_test), fit.predict(X_test)), "found": len(true & found),
                     "true": len(true), "false": len(found - true), "orders": sorted({len(k) for k in found}),
                     "seconds": seconds})
        print(f"| {name} | {n} | {m} | {max_order} | {rows[-1]['r2']:.4f} "
              f"| {len(true & found)} / {len(true)} | {len(found - true)} | {rows[-1]['orders']} "
              f"| {seconds:.1f} |", flush=True)
    hierarchy = ProxySPEX().fit(*_draw(HIERARCHY, 64, 20000, 0.1))
    print("hierarchical triple at 20,000 models, true / fitted:",
          ", ".join(f"{k}: {v:+.2f} / {hierarchy.mobius_.get(k, 0.0):+.3f}" for k, v in HIERARCHY.items() if k))
    save_results("bench_structure", rows, hierarchy=[
        {"term": list(k), "true": v, "fitted": hierarchy.mobius_.get(k, 0.0)} for k, v in HIERARCHY.items() if k])


def _draw(game, n, m, noise, seed=0):
    """``m`` i.i.d. masks over ``n`` players and the game's values on them, with noise."""
    rng = np.random.default_rng([seed, m])
    X = rng.random((m, n)) < 0.5
    f = mobius_predict(game, X)
    return X, f + rng.normal(0, noise * f.std(), m) if noise else f


if __name__ == "__main__":
    main()
