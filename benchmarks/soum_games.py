"""ProxySPEX against shapiq's and the linear datamodel on 42 sums of unanimity games (issue 31).

    .venv/bin/python -m benchmarks.soum_games [--n 30 60 100] [--budgets 500 2000] [--seeds 7]
    .venv/bin/python -m benchmarks.soum_games --game planted --noise 0.5 --n 30 60 --budgets 500 --seeds 4

The games are shapiq's SOUM benchmark cases, drawn by the project's own generator
(``datamodels.sweep.planted.unanimity_game``: 100 random subsets of 1 to 3 players, weights
U(0, 1), no seed noise): by default n = 30, 60 and 100 players x 500 and 2,000 masks x 7 seeds,
42 games. shapiq's ProxySPEX (its defaults, FBII of order <= 3) samples the masks; every mask it
queried is given to the others, so all fit the same data. Fits: ``proxyspex`` (the default,
tested interactions only), ``proxyspex_cv`` (``untested="cv"``: untested proposals where
cross-validation wants them), shapiq's, and the linear datamodel; each judged by R^2 on 5,000
held-out masks. One row per game, then per (n, budget): the games where each ProxySPEX is at
least as faithful as shapiq and at least the linear datamodel, and the worst R^2.
``--game planted --noise 0.5`` runs the same fits on noisy planted games instead
(``planted_game``: dense small mains, 5 planted interactions, seed noise at 0.5 x the signal's
sd on every queried and held-out value), where untested terms would fit noise.
"""

import argparse
import itertools
import time

import numpy as np

from benchmarks.bench_fit import sampled_by_shapiq
from benchmarks.harness import cpu_name, machine, pin_threads, save_results


def game_row(n: int, budget: int, seed: int, game_name: str = "soum", noise: float = 0.0) -> dict:
    from datamodels.fit.faithfulness import r2
    from datamodels.interactions import LinearDatamodel, ProxySPEX, mobius_predict
    from datamodels.sweep.planted import planted_game, unanimity_game

    truth = unanimity_game(n, 100, 3, seed=seed) if game_name == "soum" else planted_game(n, seed=seed)
    shapiq, seconds, (X, y), (X_test, y_test, _) = sampled_by_shapiq(truth, n, budget, noise, seed, 3)
    surrogates, seconds = {"shapiq": shapiq}, {"shapiq": seconds}
    fits = {"proxyspex": ProxySPEX(random_state=seed), "proxyspex_cv": ProxySPEX(random_state=seed, untested="cv"),
            "linear": LinearDatamodel(random_state=seed)}
    row = {"n": n, "budget": budget, "seed": seed, "models": len(y)}
    for name, estimator in fits.items():
        start = time.perf_counter()
        estimator.fit(X, y)
        seconds[name] = time.perf_counter() - start
        surrogates[name] = estimator.mobius_
        if name != "linear":
            row[f"{name}_tested"] = len(estimator.tested_)
    row["proxyspex_cv_untested"] = fits["proxyspex_cv"].untested_terms_
    for name, mobius in surrogates.items():
        row |= {f"{name}_r2": r2(y_test, mobius_predict(mobius, X_test)), f"{name}_s": seconds[name]}
    return row


def summary(rows: list[dict]) -> list[dict]:
    """Per (n, budget), and over all games: wins against shapiq and the linear datamodel."""
    out = []
    groups = sorted({(r["n"], r["budget"]) for r in rows}) + [("all", "all")]
    for n, budget in groups:
        chosen = [r for r in rows if n == "all" or (r["n"], r["budget"]) == (n, budget)]
        line = {"n": n, "budget": budget, "games": len(chosen),
                "shapiq_min_r2": min(r["shapiq_r2"] for r in chosen)}
        for name in ("proxyspex", "proxyspex_cv"):
            line |= {f"{name}_vs_shapiq": sum(r[f"{name}_r2"] >= r["shapiq_r2"] for r in chosen),
                     f"{name}_vs_linear": sum(r[f"{name}_r2"] >= r["linear_r2"] - 1e-9 for r in chosen),
                     f"{name}_min_r2": min(r[f"{name}_r2"] for r in chosen)}
        out.append(line)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[30, 60, 100])
    parser.add_argument("--budgets", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--seeds", type=int, default=7)
    parser.add_argument("--game", choices=("soum", "planted"), default="soum")
    parser.add_argument("--noise", type=float, default=0.0, help="seed noise sd / signal sd")
    args = parser.parse_args()
    pin_threads()
    print(f"machine: {cpu_name()}; {machine()['date']}")
    print("n budget seed | R^2 proxyspex / proxyspex_cv / shapiq / linear | tested, untested | s proxyspex / cv / shapiq")
    rows = []
    for n, budget, seed in itertools.product(args.n, args.budgets, range(args.seeds)):
        row = game_row(n, budget, seed, args.game, args.noise)
        rows.append(row)
        print(f"{n} {budget} {seed} | {row['proxyspex_r2']:.3f} / {row['proxyspex_cv_r2']:.3f} / "
              f"{row['shapiq_r2']:.3f} / {row['linear_r2']:.3f} | {row['proxyspex_tested']}, "
              f"{row['proxyspex_cv_untested']} | {row['proxyspex_s']:.1f} / {row['proxyspex_cv_s']:.1f} / "
              f"{row['shapiq_s']:.1f}", flush=True)
    print("\n| n | budget | games | >= shapiq: default / cv | >= linear: default / cv | min R^2 default / cv / shapiq |")
    print("|---|---|---|---|---|---|")
    lines = summary(rows)
    for line in lines:
        print(f"| {line['n']} | {line['budget']} | {line['games']} | {line['proxyspex_vs_shapiq']} / "
              f"{line['proxyspex_cv_vs_shapiq']} | {line['proxyspex_vs_linear']} / {line['proxyspex_cv_vs_linear']} | "
              f"{line['proxyspex_min_r2']:.3f} / {line['proxyspex_cv_min_r2']:.3f} / {line['shapiq_min_r2']:.3f} |")
    save_results("soum_games" if args.game == "soum" else f"soum_games-{args.game}", rows, summary=lines)


if __name__ == "__main__":
    main()
