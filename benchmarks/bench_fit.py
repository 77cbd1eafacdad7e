"""Fit benchmark: this package's ProxySPEX vs shapiq's ProxySPEX vs the linear datamodel.

    .venv/bin/python -m benchmarks.bench_fit [--grid 100:500,2000 1000:500] [--noise 0.5] [--strength 1]
    .venv/bin/python -m benchmarks.bench_fit --game unanimity --grid 30:500 60:2000 --noise 0

Planted games in the data-attribution regime (``datamodels.sweep.planted.planted_game``: dense
small mains on every player, 2 synergy pairs, 2 redundancy pairs, 1 triple) plus Gaussian seed
noise at ``--noise`` times the signal's standard deviation. shapiq 1.4.1 (the ``bench`` extra)
runs with its defaults (``index="FBII"``, ``max_order=3``) and samples the masks itself; every
mask it queries, with the noisy value it got, is recorded and given to the other two methods, so
all three fit identical data. shapiq's FBII values of order <= 3 are its surrogate (faithful
Banzhaf indices are the coefficients of the best order-3 polynomial in the Möbius basis), so
all three are judged the same way: R^2 on 5,000 held-out masks with fresh noise, and precision
and recall of the planted interactions among the non-zero interactions each method returns.
``--game unanimity`` draws sums of unanimity games instead (shapiq's SOUM benchmark games,
``datamodels.sweep.planted.unanimity_game``: dense interactions of every order up to ``--max-size``,
no hierarchy of mains to lean on), judged the same way against all their interactions.
Every fit runs on one thread. Rows are printed as they finish; ratios come from the same run.
"""

import argparse
import os
import platform
import time
import warnings
from importlib.metadata import version

import numpy as np

from benchmarks.harness import THREAD_VARIABLES, cpu_name, pin_threads, save_results

from datamodels.fit.faithfulness import r2
from datamodels.interactions import LinearDatamodel, ProxySPEX, mobius_predict
from datamodels.sweep.planted import planted_game, unanimity_game

HELDOUT = 5000


def support_scores(mobius: dict, planted: dict) -> tuple[float, float]:
    """Precision and recall of the planted interactions (right sign) among non-zero ones returned."""
    found = {k: v for k, v in mobius.items() if len(k) > 1 and v != 0}
    hits = sum(1 for k, v in planted.items() if k in found and np.sign(found[k]) == np.sign(v))
    return (hits / len(found) if found else float("nan")), hits / len(planted)


def shapiq_fit(n: int, budget: int, game, seed: int, max_order: int) -> dict:
    from shapiq.approximator import ProxySPEX as ShapiqProxySPEX

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its LightGBM grid search warns on every fit
        values = ShapiqProxySPEX(n=n, index="FBII", max_order=max_order, random_state=seed).approximate(
            budget, game)
    return {k: float(values.values[i]) for k, i in values.interaction_lookup.items()}


def sampled_by_shapiq(truth: dict, n: int, budget: int, noise: float, seed: int, max_order: int):
    """shapiq's fit of the game ``truth`` with seed noise at ``noise`` x the signal's sd:
    ``(its surrogate, seconds, (every mask it queried, the value it got), (held-out masks, their
    noisy values, their noiseless values))``; the other fits are given its masks."""
    rng = np.random.default_rng([seed, n, budget])
    X_test = rng.random((HELDOUT, n)) < 0.5
    f_test = mobius_predict(truth, X_test)
    noise_sd = noise * f_test.std()
    y_test = f_test + rng.normal(0, noise_sd, HELDOUT)
    queried, answers = [], []

    def game(coalitions):
        coalitions = np.asarray(coalitions, dtype=bool)
        values = mobius_predict(truth, coalitions) + rng.normal(0, noise_sd, len(coalitions))
        queried.append(coalitions)
        answers.append(values)
        return values

    start = time.perf_counter()
    surrogate = shapiq_fit(n, budget, game, seed, max_order)
    return surrogate, time.perf_counter() - start, (np.concatenate(queried), np.concatenate(answers)), \
        (X_test, y_test, f_test)


def run_case(n: int, budget: int, noise: float, seed: int, game_args: dict) -> dict:
    if game_args["game"] == "unanimity":
        truth = unanimity_game(n, game_args["terms"], game_args["max_size"], seed=seed)
    else:
        truth = planted_game(n, strength=game_args["strength"], seed=seed)
    planted = {k: v for k, v in truth.items() if len(k) > 1}
    shapiq, seconds, (X, y), (X_test, y_test, f_test) = sampled_by_shapiq(truth, n, budget, noise, seed,
                                                                          game_args["max_order"])
    surrogates, seconds = {"shapiq": shapiq}, {"shapiq": seconds}
    for name, estimator in (("proxyspex", ProxySPEX(max_order=game_args["max_order"], random_state=seed)),
                            ("linear", LinearDatamodel(random_state=seed))):
        start = time.perf_counter()
        surrogates[name] = estimator.fit(X, y).mobius_
        seconds[name] = time.perf_counter() - start
    row = {"n": n, "budget": budget, "models": len(y), "ceiling": r2(y_test, f_test)}
    for name, mobius in surrogates.items():
        precision, recall = support_scores(mobius, planted)
        row |= {f"{name}_r2": r2(y_test, mobius_predict(mobius, X_test)), f"{name}_s": seconds[name],
                f"{name}_prec": precision, f"{name}_rec": recall}
    return row


def parse_grid(items: list[str]) -> list[tuple[int, int]]:
    return [(int(n), int(b)) for item in items for n, budgets in [item.split(":")] for b in budgets.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", nargs="+", default=["100:500,2000,5000,20000", "1000:500,2000,5000"],
                        help="n:budget,budget,... per player count")
    parser.add_argument("--noise", type=float, default=0.5, help="noise sd / signal sd")
    parser.add_argument("--strength", type=float, default=1.0,
                        help="size of the planted interactions and of their members' mains")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--game", choices=("planted", "unanimity"), default="planted",
                        help="planted: the data-attribution games above; unanimity: sums of unanimity games "
                             "(shapiq's SOUM), --terms random subsets of 1..--max-size players")
    parser.add_argument("--terms", type=int, default=100)
    parser.add_argument("--max-size", type=int, default=3)
    parser.add_argument("--max-order", type=int, default=3, help="of both ProxySPEX fits")
    args = parser.parse_args()
    pin_threads(THREAD_VARIABLES + ("NUMBA_NUM_THREADS",))  # shapiq's numba loads later, in the first fit
    game_args = {"game": args.game, "strength": args.strength, "terms": args.terms, "max_size": args.max_size,
                 "max_order": args.max_order}
    print(f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, "
          f"one thread per fit; lightgbm {version('lightgbm')}, scikit-learn {version('scikit-learn')}, "
          f"shapiq {version('shapiq')}; noise {args.noise} x signal sd; game {game_args}; "
          f"held-out {HELDOUT} masks")
    header = ("| n | budget | ceiling R^2 | R^2 new / shapiq / linear | prec new / shapiq "
              "| recall new / shapiq | fit s new / shapiq / linear | shapiq s / new s |")
    print(header + "\n|" + "---|" * (header.count("|") - 1))
    total, rows = time.perf_counter(), []
    for n, budget in parse_grid(args.grid):
        r = run_case(n, budget, args.noise, args.seed, game_args)
        rows.append(r)
        print(f"| {n} | {budget} | {r['ceiling']:.3f} "
              f"| {r['proxyspex_r2']:.3f} / {r['shapiq_r2']:.3f} / {r['linear_r2']:.3f} "
              f"| {r['proxyspex_prec']:.2f} / {r['shapiq_prec']:.2f} "
              f"| {r['proxyspex_rec']:.2f} / {r['shapiq_rec']:.2f} "
              f"| {r['proxyspex_s']:.2f} / {r['shapiq_s']:.2f} / {r['linear_s']:.2f} "
              f"| {r['shapiq_s'] / r['proxyspex_s']:.1f}x |", flush=True)
    print(f"total {time.perf_counter() - total:.0f} s")
    save_results("bench_fit", rows)


if __name__ == "__main__":
    main()
