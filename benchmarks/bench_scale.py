"""The fit stage at CIFAR-10 scale, on planted sweeps: memory, time per target, faithfulness.

    make bench-scale        # = .venv/bin/python -m benchmarks.bench_scale
    .venv/bin/python -m benchmarks.bench_scale --ns 5000,50000 --ms 20000 --targets 100

For each ``n`` (players) and ``m`` (models: ``m / 2`` masks x 2 seeds, so the noise ceiling is
measured) a planted sweep is written as genuine shards (``datamodels.sweep.planted``; reused when
already there), its fit-ready layout built (``jobs/collect.py``'s step), and ``jobs/fit.py``
run for the linear datamodel and ProxySPEX with 2 worker processes, exactly as a user runs it.
Every target is the same kind of game at every ``n``: 5 synergy pairs, 5 redundancy pairs and
1 triple of strength 1, small mains ``N(0, 0.1)`` on 500 other players, the rest of the players
null, seed noise at 0.5 x the signal's standard deviation. Reported per run: peak resident
memory of the whole process tree (sum of RSS, which counts the shared memory-mapped masks
once per process, and sum of PSS, which shares them out), CPU seconds per target (wall time x
workers / targets), median held-out R^2 and its fraction of the noise ceiling, and the planted
interactions recovered (exact members, right sign) and false ones per target.

``--parts tail``: the calibration and power of ProxySPEX's interaction tests on a dense-tail
game (every player a faint main effect ``N(0, TAIL_SD)`` on top of 3 synergistic and 3 redundant
planted pairs of strength 0.3 and mains ``N(0, 0.1)`` on 500 players; ``--tail-n`` players, 4
targets, each ``m`` of ``--ms``), for each of ``--tail-fits`` (ProxySPEX's parameters: familywise,
false discovery rate, the L1 refit without the relaxed one):
interactions reported that were not planted, counted per target without any magnitude cut,
planted pairs found, and beside them the oracle's count (planted pairs whose least-squares
statistic, the truth handed to it, clears the tests' familywise critical value:
``benchmarks/tail_pair_statistics.py``), the fit's CPU and wall seconds and their ratio between
the largest and smallest ``m`` beside the ratio of models, and the peak memory of the process
tree.

Two side experiments at the smallest ``n``: the same targets fitted with and without screening
(``screen_k = n``), and what screening misses: pairs whose members have no marginal effect.

Results: ``runs/benchmarks/bench_scale.json`` (every part's rows), and the grid's rows as they
finish in ``<out>/results.json`` (what ``--resume`` reads).
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.harness import cpu_name, pin_threads, run_measured, save_results

from datamodels.store.fit_ready import build_fit_ready, open_fit_ready
from datamodels.fit.faithfulness import r2
from datamodels.fit.stage import fit_and_evaluate
from datamodels.interactions import ProxySPEX, mobius_predict
from datamodels.sweep.planted import planted_game, read_planted_truth, write_planted_sweep

GAME = dict(n_synergy=5, n_redundancy=5, n_triples=1, main_sd=0.1, strength=1.0, n_mains=500)
NOISE = 0.5
METHODS = ("linear", "proxyspex")
# The dense-tail game of --parts tail: few planted pairs among thousands of faint mains (issue 22,
# item 5), redundant as well as synergistic (issue 31, item 5: real data has mostly redundancy).
TAIL_SD = 0.01
TAIL_GAME = dict(n_synergy=3, n_redundancy=3, n_triples=0, main_sd=0.1, strength=0.3, n_mains=500, tail_sd=TAIL_SD)


def recovery(interactions: pd.DataFrame, truth: dict[int, dict]) -> tuple[float, float]:
    """Planted interactions found with the right sign (fraction), and false ones per target."""
    hits = false = 0
    for target, rows in interactions[interactions["order"] > 1].groupby("target"):
        found = dict(zip(rows["members"].map(lambda k: tuple(int(i) for i in k)), rows["mobius"]))
        planted = {k: v for k, v in truth[target].items() if len(k) > 1}
        hits += sum(1 for k, v in planted.items() if k in found and np.sign(found[k]) == np.sign(v))
        false += len(set(found) - set(planted))
    planted_total = sum(sum(1 for k in truth[t] if len(k) > 1) for t in truth)
    return hits / planted_total, false / len(truth)


def sweep_for(out: Path, n: int, m: int, targets: int, game: dict = GAME, label: str = "") -> Path:
    run_dir = out / f"{label}n{n}-m{m}"
    start = time.perf_counter()
    write_planted_sweep(run_dir, n=n, T=targets, num_masks=m // 2, repeats=2, noise=NOISE, seed=0,
                        progress=False, **game)
    made = time.perf_counter() - start
    start = time.perf_counter()
    build_fit_ready(run_dir, progress=False)
    print(f"  sweep n={n:,} m={m:,}: generated in {made:.0f} s, fit-ready layout in "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    return run_dir


def fit_run(run_dir: Path, method: str, workers: int, targets: int, overrides: tuple = ()) -> dict:
    # force: jobs/fit.py skips a fit whose inputs are unchanged, and a rerun of the benchmark measures afresh
    figures = run_measured([sys.executable, "jobs/fit.py", f"run_dir={run_dir}", f"fit={method}",
                            f"fit.workers={workers}", "progress=false", "force=true", *overrides])
    metrics = pd.read_parquet(run_dir / "fit" / "fit_metrics.parquet")
    metrics = metrics[metrics["engine"] == method]
    interactions = pd.read_parquet(run_dir / "fit" / "interactions.parquet")
    recall, false = recovery(interactions[interactions["engine"] == method], read_planted_truth(run_dir))
    return figures | {
        "s_per_target": figures["wall_s"] * workers / targets,
        "r2": metrics["r2"].median(), "ceiling": metrics["noise_ceiling"].median(),
        "r2_of_ceiling": metrics["r2_fraction_of_ceiling"].median(),
        "working_set": metrics["working_set"].median(), "recall": recall, "false_per_target": false,
    }


def screening_cost(run_dir: Path, n: int, targets: int, workers: int) -> list[dict]:
    """The same targets with the default working set and with every player (no screening)."""
    ready = open_fit_ready(run_dir)
    truth = read_planted_truth(run_dir)
    rows = []
    for method in METHODS:
        for label, params in (("screened (default)", {}), ("every player", {"screen_k": n})):
            start = time.perf_counter()
            interactions, metrics = fit_and_evaluate(ready.masks, ready.target_margins.T, ready.mask_id, method, params,
                                                     workers=workers, progress=False, columns=range(targets))
            recall, false = recovery(interactions, {t: truth[t] for t in range(targets)})
            rows.append({"method": method, "working set": label, "r2": metrics["r2"].median(),
                         "recall": recall, "false_per_target": false,
                         "s_per_target": (time.perf_counter() - start) * workers / targets})
    return rows


def blind_spot(n: int, m: int, seed: int = 0) -> list[dict]:
    """Pairs whose members have no marginal effect (m(i) = -alpha m(ij)), with and without screening."""
    game = planted_game(n, seed=seed, **GAME)
    rng = np.random.default_rng(seed)
    free = [i for i in rng.permutation(n) if (int(i),) not in game][:6]
    hidden = {}
    for a, b in zip(free[::2], free[1::2]):
        pair = tuple(sorted((int(a), int(b))))
        hidden[pair] = 1.0
        game[pair] = 1.0
        game[(pair[0],)] = game[(pair[1],)] = -0.5  # alpha = 0.5: no marginal effect
    X, X_test = rng.random((m, n)) < 0.5, rng.random((5000, n)) < 0.5
    f, f_test = mobius_predict(game, X), mobius_predict(game, X_test)
    sd = NOISE * f.std()
    y, y_test = f + rng.normal(0, sd, m), f_test + rng.normal(0, sd, 5000)
    rows = []
    for label, k in (("screened (default)", None), ("every player", n)):
        fit = ProxySPEX(screen_k=k).fit(X, y)
        found = sum(1 for pair in hidden if fit.mobius_.get(pair, 0.0) > 0)
        rows.append({"working set": label, "zero-marginal pairs found": f"{found} of {len(hidden)}",
                     "r2": r2(y_test, fit.predict(X_test))})
    return rows


def grid(args, ns: list[int], ms: list[int], out: Path) -> list[dict]:
    """The n x m table: each row fitted by jobs/fit.py (or reused with --resume), then the ratios."""
    saved = out / "results.json"
    earlier = json.loads(saved.read_text()) if args.resume and saved.exists() else []
    earlier = earlier["rows"] if isinstance(earlier, dict) else earlier  # a list: written before the harness
    results = []
    skip = {tuple(int(v) for v in pair.split(":")) for pair in args.skip.split(",") if pair}
    for m in ms:
        for n in ns:
            if (n, m) in skip:
                continue
            for method in METHODS:
                key = {"n": n, "m": m, "method": method}
                row = next((r for r in earlier if {k: r[k] for k in key} == key and r["targets"] == args.targets), None)
                if row is None:
                    run_dir = sweep_for(out, n, m, args.targets)
                    row = key | {"targets": args.targets, "started": time.strftime("%Y-%m-%d %H:%M")} | fit_run(
                        run_dir, method, args.workers, args.targets)
                results.append(row)
                save_results("bench_scale", results + [r for r in earlier if r not in results], path=saved)
                print("  " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                       for k, v in row.items()), flush=True)
    table = pd.DataFrame(results)
    print("\n" + table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print("\nseconds per target at the largest n over those at the smallest (same m, same run):")
    for (m, method), rows in table.groupby(["m", "method"]):
        rows = rows.set_index("n")["s_per_target"]
        print(f"  m={m:,} {method}: {rows[rows.index.max()] / rows[rows.index.min()]:.2f}x")
    print("\nprojected wall time of 10,000 targets (from each run's CPU seconds per target):")
    for _, row in table[table["n"] == max(ns)].iterrows():
        hours = row["s_per_target"] * 10_000 / 3600
        print(f"  n={row['n']:,} m={row['m']:,} {row['method']}: {hours / 2:.1f} h on 2 cores; "
              f"{hours / 200 * 60:.1f} min on a 100-node SLURM array of 2-core tasks")
    return results


def tail(args, ms: list[int], out: Path) -> list[dict]:
    """ProxySPEX on the dense-tail game at each ``m`` and error rate: false pairs, pairs found
    beside the oracle's count, CPU and wall seconds."""
    from benchmarks.tail_pair_statistics import oracle_cleared  # it imports TAIL_GAME from here

    rows = []
    for m in ms:
        run_dir = sweep_for(out, args.tail_n, m, args.tail_targets, TAIL_GAME, label="tail-")
        truth = read_planted_truth(run_dir)
        planted = sum(1 for t in truth for k in truth[t] if len(k) > 1)
        oracle = oracle_cleared(run_dir, range(args.tail_targets))
        for params in args.tail_fits:
            row = fit_run(run_dir, "proxyspex", args.workers, args.tail_targets,
                          tuple(f"fit.params.{item}" for item in params.split(",")))
            interactions = pd.read_parquet(run_dir / "fit" / "interactions.parquet")
            pairs = interactions[(interactions["engine"] == "proxyspex") & (interactions["order"] > 1)]
            false = [abs(v) for t, k, v in zip(pairs["target"], pairs["members"], pairs["mobius"])
                     if tuple(int(i) for i in k) not in truth[t]]
            rows.append({"n": args.tail_n, "m": m, "targets": args.tail_targets, "params": params,
                         "found": f"{round(row['recall'] * planted)}/{planted}", "oracle": f"{oracle}/{planted}",
                         "false_per_target": row["false_per_target"], "max_false_abs": max(false, default=0.0),
                         "cpu_s": row["cpu_s"], "wall_s": row["wall_s"], "peak_rss_gb": row["peak_rss_gb"],
                         "peak_pss_gb": row["peak_pss_gb"], "r2": row["r2"]})
            print("  " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in rows[-1].items()),
                  flush=True)
    table = pd.DataFrame(rows)
    print(f"\ndense-tail game {TAIL_GAME}, noise {NOISE}, ProxySPEX, {args.workers} workers:\n"
          + table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    for params, rated in table.groupby("params", sort=False):
        if len(rated) > 1:
            first, last = rated.iloc[0], rated.iloc[-1]
            print(f"{params}: m x{last['m'] / first['m']:.3g}: CPU seconds x{last['cpu_s'] / first['cpu_s']:.3g}, "
                  f"wall x{last['wall_s'] / first['wall_s']:.3g}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ns", default="5000,20000,50000", help="players, comma-separated")
    parser.add_argument("--ms", default="20000,100000", help="models (masks x 2 seeds), comma-separated")
    parser.add_argument("--skip", default="", help="n:m pairs of the grid to leave out, e.g. 20000:100000")
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="runs/bench-scale", help="where the planted sweeps are written")
    parser.add_argument("--side-targets", type=int, default=10, help="targets of the with/without screening runs")
    parser.add_argument("--parts", default="grid,screening,blind,tail",
                        help="what to run: grid (the n x m table), screening (with and without screening), blind "
                             "(pairs screening misses); the side parts use the smallest n and m; tail (the tests' "
                             "false pairs on a dense-tail game of --tail-n players at each m)")
    parser.add_argument("--tail-n", type=int, default=50000, help="players of the dense-tail game (--parts tail)")
    parser.add_argument("--tail-targets", type=int, default=4, help="targets of the dense-tail game")
    parser.add_argument("--tail-fits", nargs="+", default=["error_rate=fwer", "error_rate=fdr", "relax=false"],
                        help="ProxySPEX's settings on the dense-tail game, one fit each (key=value[,key=value])")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the rows already in <out>/results.json (a grid of hours survives an interruption)")
    args = parser.parse_args()
    pin_threads()
    ns, ms = [int(v) for v in args.ns.split(",")], [int(v) for v in args.ms.split(",")]
    out = Path(args.out).resolve()
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {cpu_name()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, {args.workers} fit workers of one thread each", flush=True)
    parts, rows = set(args.parts.split(",")), {}
    if parts - {"tail"}:  # the tail part prints its own game with its table
        print(f"targets {args.targets}; game {GAME}, noise {NOISE}", flush=True)
    if "grid" in parts:
        rows["grid"] = grid(args, ns, ms, out)
    n0, m0 = min(ns), min(ms)
    if "screening" in parts:
        run_dir = sweep_for(out, n0, m0, args.targets)
        print(f"\nscreening cost at n={n0:,}, m={m0:,}, first {args.side_targets} targets:")
        rows["screening"] = screening_cost(run_dir, n0, args.side_targets, args.workers)
        print(pd.DataFrame(rows["screening"]).to_string(index=False, float_format=lambda v: f"{v:.3g}"), flush=True)
    if "tail" in parts:
        rows["tail"] = tail(args, ms, out)
    if "blind" in parts:
        print(f"\nwhat screening misses (ProxySPEX, n={n0:,}, {m0:,} models, 3 pairs with no marginal effect):")
        rows["blind"] = blind_spot(n0, m0)
        print(pd.DataFrame(rows["blind"]).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    save_results("bench_scale", [{"part": part} | row for part, found in rows.items() for row in found])


if __name__ == "__main__":
    main()
