"""Keep-sets at CIFAR-10 scale: the sparse greedy against today's dense one (docs/benchmarks.md).

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.bench_prune   (make bench-prune)

Synthetic surrogates over n = 50,000 players, as the fit produces them: every target has
``--mains`` main effects on random players and ``--pairs`` pair terms, a few of them
(``--strong`` per target) strong enough to form synergy blocks; players in 10 classes (quotas on).

(a) T = 10 and T = 1,000 targets, one kept fraction (0.5): the new greedy and the frozen dense
    one (tests/prune_reference.py) side by side, each in a process of its own; the dense
    one is stopped after ``--reference-timeout`` seconds, and then the ratio printed is a lower
    bound. Where both finish, their keep-sets must be equal.
(b) T = 10,000 targets, the default kept fractions (0.9, 0.7, 0.5, 0.3, 0.2), both surrogate
    methods (``interactions``: mains and pairs; ``linear``: mains only), one process each, as
    ``make_keep_sets`` runs them: wall time and peak memory (the process's VmHWM).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

import numpy as np

from benchmarks.harness import (cpu_name, cpu_seconds, peak_rss_gb, pin_threads, process_cpu_seconds, save_results,
                                tests_module)

N = 50_000
FRACTIONS = (0.9, 0.7, 0.5, 0.3, 0.2)


def synthetic_surrogate(n: int, T: int, mains: int, pairs: int, strong: float, seed: int):
    """Random fitted polynomials built straight into the Surrogate's CSR terms."""
    from datamodels.pruning.surrogate import Surrogate, member_incidence

    rng = np.random.default_rng([seed, T])
    main_players = np.concatenate([rng.choice(n, mains, replace=False) for _ in range(T)])
    first = rng.integers(0, n, (T, pairs))
    second = (first + rng.integers(1, n, (T, pairs))) % n  # a different player
    pair_players = np.stack([first.ravel(), second.ravel()], 1).ravel()
    pair_mobius = rng.normal(0, 0.05, (T, pairs))
    # About ``strong`` pairs per target above the synergy threshold (m / tau > 1, tau <= 1.5 here).
    pair_mobius[rng.random((T, pairs)) < strong / max(pairs, 1)] = 2.0
    target = np.concatenate([np.repeat(np.arange(T), mains), np.repeat(np.arange(T), pairs)])
    mobius = np.concatenate([rng.normal(0.001, 0.02, T * mains), pair_mobius.ravel()])
    lengths = np.concatenate([np.ones(T * mains, np.int64), np.full(T * pairs, 2)])
    incidence = member_incidence(n, lengths, np.concatenate([main_players, pair_players]))
    return Surrogate(n, rng.normal(0, 1, T), rng.uniform(0.5, 1.5, T), target, incidence, mobius)


def classes_of(n: int) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 10, n)


def _job(kind: str, T: int, args: dict, queue) -> None:
    """One measured run in its own process: ``(seconds to build, seconds to choose, CPU seconds to
    choose, peak GB, keep-sets)``."""
    from datamodels.pruning.greedy import greedy_keep_sets

    start = time.perf_counter()
    surrogate = synthetic_surrogate(N, T, args["mains"], args["pairs"] if kind != "linear" else 0, args["strong"],
                                    args["seed"])
    sizes = [round(f * N) for f in args["fractions"]]
    classes = classes_of(N)
    if kind == "reference":
        frozen = tests_module("prune_reference")  # the frozen greedy: tests/prune_reference.py
        reference = frozen.as_reference(surrogate)
        built, cpu = time.perf_counter() - start, cpu_seconds()
        queue.put(cpu)  # choosing starts now
        keep = {size: frozen.greedy_keep_set(reference, size, classes) for size in sizes}
    else:
        built, cpu = time.perf_counter() - start, cpu_seconds()
        queue.put(cpu)
        keep = greedy_keep_sets(surrogate, sizes, classes)
    chose = time.perf_counter() - start - built
    queue.put((built, chose, cpu_seconds() - cpu, peak_rss_gb(), {k: v.tolist() for k, v in keep.items()}))


def measure(kind: str, T: int, args: dict, timeout: float | None = None):
    """``(figures, wall seconds)``; figures None when choosing ran past ``timeout`` seconds, then
    stopped, and the wall seconds are ``(wall, CPU seconds)`` it had spent choosing."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_job, args=(kind, T, args, queue))
    process.start()
    try:
        cpu_at_start = queue.get(timeout=3600)
    except Exception:  # queue.Empty
        cpu_at_start = None
    if cpu_at_start is None:
        process.join()
        raise RuntimeError(f"the {kind} run at T = {T} died before choosing (exit code {process.exitcode})")
    start = time.perf_counter()
    try:
        result = queue.get(timeout=timeout)
    except Exception:  # queue.Empty: past the timeout
        result = None
    process.join(1 if result is None else None)
    wall = time.perf_counter() - start
    if result is None and not process.is_alive():
        raise RuntimeError(f"the {kind} run at T = {T} died while choosing (exit code {process.exitcode})")
    if process.is_alive():
        used = process_cpu_seconds(process.pid) - cpu_at_start
        process.kill()
        process.join()
        return None, (wall, used)
    return result, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mains", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--strong", type=float, default=0.05, help="strong pairs per target (synergy blocks)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare-targets", type=int, nargs="*", default=[10, 1000])
    parser.add_argument("--compare-fraction", type=float, default=0.5)
    parser.add_argument("--reference-timeout", type=float, default=900.0)
    parser.add_argument("--scale-targets", type=int, default=10_000)
    parser.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS))
    parser.add_argument("--part", choices=["a", "b", "all"], default="all")
    args = parser.parse_args()
    pin_threads()
    settings = vars(args)
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; n = {N:,}, "
          f"{args.mains} mains and {args.pairs} pairs per target ({args.strong} strong), 10 classes, quotas on")
    rows = []
    if args.part in ("a", "all"):
        rows += compare(args, settings)
    if args.part in ("b", "all"):
        rows += scale(args, settings)
    save_results("bench_prune", rows)


def compare(args, settings: dict) -> list[dict]:
    print("\n(a) one kept fraction, new vs today's dense greedy (each in its own process)")
    print("wall and CPU seconds of choosing the keep-set (the surrogate's build apart), peak resident GB")
    print(f"{'T':>6} {'new s':>7} {'new cpu':>8} {'new GB':>7} {'dense s':>8} {'dense cpu':>9} {'dense GB':>8} "
          f"{'speed-up (wall, cpu)':>21} same")
    one = dict(settings, fractions=[args.compare_fraction])
    rows = []
    for T in args.compare_targets:
        new, _ = measure("interactions", T, one)
        ref, ref_wall = measure("reference", T, one, args.reference_timeout)
        rows.append({"part": "a", "T": T, "fraction": args.compare_fraction, "new_choose_s": new[1],
                     "new_cpu_s": new[2], "new_peak_gb": new[3]})
        if ref is None:  # stopped: its time so far (build included) bounds the ratio from below
            wall, cpu = ref_wall
            rows[-1] |= {"dense_stopped": True, "dense_choose_s_at_least": wall, "dense_cpu_s_at_least": cpu}
            print(f"{T:>6} {new[1]:>7.1f} {new[2]:>8.1f} {new[3]:>7.2f} {'>' + format(wall, '.0f'):>8} "
                  f"{'>' + format(cpu, '.0f'):>9} {'-':>8} "
                  f"{'>' + format(wall / new[1], '.0f') + 'x, >' + format(cpu / new[2], '.0f') + 'x':>21} "
                  f"(dense stopped)", flush=True)
        else:
            rows[-1] |= {"dense_stopped": False, "dense_choose_s": ref[1], "dense_cpu_s": ref[2],
                         "dense_peak_gb": ref[3], "same": new[4] == ref[4]}
            print(f"{T:>6} {new[1]:>7.1f} {new[2]:>8.1f} {new[3]:>7.2f} {ref[1]:>8.1f} {ref[2]:>9.1f} {ref[3]:>8.2f} "
                  f"{format(ref[1] / new[1], '.0f') + 'x, ' + format(ref[2] / new[2], '.0f') + 'x':>21} "
                  f"{new[4] == ref[4]}", flush=True)
    return rows


def scale(args, settings: dict) -> list[dict]:
    print(f"\n(b) T = {args.scale_targets:,}, fractions {args.fractions}, one process per method")
    print(f"{'method':>13} {'build s':>8} {'choose s':>9} {'choose cpu':>10} {'peak GB':>8}")
    total, cpu, peak, rows = 0.0, 0.0, 0.0, []
    for method in ("interactions", "linear"):
        result, wall = measure(method, args.scale_targets, settings)
        total, cpu, peak = total + wall, cpu + result[2], max(peak, result[3])
        rows.append({"part": "b", "T": args.scale_targets, "method": method, "build_s": result[0],
                     "choose_s": result[1], "choose_cpu_s": result[2], "peak_gb": result[3], "wall_s": wall})
        print(f"{method:>13} {result[0]:>8.1f} {result[1]:>9.1f} {result[2]:>10.1f} {result[3]:>8.2f}", flush=True)
    print(f"both: {total:.0f} s wall and {cpu:.0f} CPU s choosing (builds and process starts apart), "
          f"peak {peak:.2f} GB")
    return rows


if __name__ == "__main__":
    main()
