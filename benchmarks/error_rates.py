"""Familywise against false-discovery control of ProxySPEX's tests, on games with known truth.

    .venv/bin/python -m benchmarks.error_rates [--seeds 10] [--grid 100:500 100:2000 1000:2000] [--level 0.05]

For each game (``datamodels.sweep.planted``: ``planted`` has dense small mains, 2 synergistic and 2
redundant pairs and a triple; ``unanimity`` is a sum of 100 unanimity games of 1 to 3 players,
shapiq's SOUM games, so dozens of real interactions), ``--seeds`` draws of the game and of its
random masks (alpha = 1/2) with seed noise at ``--noise`` times the signal's standard deviation.
ProxySPEX is fitted with ``error_rate="fwer"`` (the default) and ``"fdr"`` at the same ``level``
on the same data. Printed per (game, n, models, error rate), over the seeds: interactions found;
false ones (not in the game, counted without any magnitude cut), of which sub-terms of a
planted term (the tests' null is that a term's centred feature explains nothing beyond the
model; a planted triple whose own test fails leaves real signal on its pairs' features, so
those nulls are false and the pairs carry a real part of the game); the false discovery
proportion (false / found, pooled and averaged over fits) and that of the terms outside every
planted term; recall of the game's interactions and held-out R^2 on 5,000 fresh masks. False-discovery control at ``level`` promises an average proportion
at most ``level``; familywise control promises at most ``level`` fits with any false one.
"""

import argparse
import itertools
import time

import numpy as np

from benchmarks.harness import cpu_name, pin_threads, save_results

from datamodels.fit.faithfulness import r2
from datamodels.interactions import ProxySPEX, mobius_predict
from datamodels.sweep.planted import planted_game, unanimity_game

HELDOUT = 5000


def one_fit(game: dict, n: int, models: int, noise: float, seed: int, rates: list[str], level: float) -> list[dict]:
    rng = np.random.default_rng(seed)
    X, test = rng.random((models, n)) < 0.5, rng.random((HELDOUT, n)) < 0.5
    signal = mobius_predict(game, X)
    y = signal + rng.normal(0, noise * signal.std(), models)
    truth = {S for S, v in game.items() if len(S) > 1 and v != 0}
    inside = {frozenset(S) for T in truth for k in range(2, len(T)) for S in itertools.combinations(T, k)}
    rows = []
    for rate in rates:
        start = time.perf_counter()
        fit = ProxySPEX(level=level, error_rate=rate).fit(X, y)
        found = {S for S, v in fit.mobius_.items() if len(S) > 1 and v != 0}
        false = found - truth
        rows.append({"rate": rate, "found": len(found), "false": len(false),
                     "outside": sum(frozenset(S) not in inside for S in false),
                     "recall": len(found & truth) / len(truth) if truth else np.nan,
                     "r2": r2(mobius_predict(game, test), fit.predict(test)), "seconds": time.perf_counter() - start})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--games", default="planted,unanimity", help="comma-separated: planted, unanimity")
    parser.add_argument("--grid", nargs="+", default=["100:500", "100:2000", "1000:2000"], help="n:models items")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--noise", type=float, default=0.5, help="seed noise sd / signal sd")
    parser.add_argument("--level", type=float, default=0.05)
    args = parser.parse_args()
    pin_threads()
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {cpu_name()}, one thread; noise {args.noise} x signal sd, "
          f"level {args.level}, {args.seeds} seeds per row")
    print("| game | n | models | error rate | found | false (sub-terms) | FDP pooled | FDP mean | FDP outside planted "
          "| fits with a false one | recall | held-out R^2 | s per fit |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    fits = []  # every fit's row: the table above sums them over the seeds
    for name in args.games.split(","):
        for item in args.grid:
            n, models = map(int, item.split(":"))
            rows = []
            for seed in range(args.seeds):
                game = (planted_game(n, seed=seed) if name == "planted"
                        else unanimity_game(n, terms=100, max_size=3, seed=seed))
                rows += one_fit(game, n, models, args.noise, seed, ["fwer", "fdr"], args.level)
                fits += [{"game": name, "n": n, "models": models, "seed": seed} | row for row in rows[-2:]]
            for rate in ("fwer", "fdr"):
                r = [row for row in rows if row["rate"] == rate]
                found, false, outside = (np.array([x[key] for x in r]) for key in ("found", "false", "outside"))
                fdp = np.where(found > 0, false / np.maximum(found, 1), 0.0)
                print(f"| {name} | {n} | {models} | {rate} | {found.sum()} | {false.sum()} ({false.sum() - outside.sum()}) | "
                      f"{false.sum() / max(found.sum(), 1):.3f} | {fdp.mean():.3f} | {outside.sum() / max(found.sum(), 1):.3f} | "
                      f"{(false > 0).sum()} of {len(r)} | "
                      f"{np.nanmean([x['recall'] for x in r]):.3f} | {np.mean([x['r2'] for x in r]):.3f} | "
                      f"{np.mean([x['seconds'] for x in r]):.2f} |", flush=True)
    save_results("error_rates", fits)


if __name__ == "__main__":
    main()
