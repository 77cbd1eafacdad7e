"""Does a fit predict the size of the pairs that retraining measured? Two fits of one sweep
against the same retraining checks (issue 31: ``fit.params.relax=true``, the default since
2026-12-07, refits the tested terms without their L1 penalty; ``false`` keeps the L1 refit).

The checks (``jobs/ablate.py ablate=pairs``, measured once, on ``--checked``'s run) hold each
pair's measured double difference; each fit predicts it from its own terms at the run's alpha
(:func:`datamodels.ablation.design.fitted_pairs`). Printed per fit and per check: the slope of
measured on predicted (1: the fit's sizes are right; above 1: it shrinks them) with its 95%
interval, the pairs it still reports, and the mean absolute error.

    python jobs/fit.py fit=proxyspex fit.params.relax=false run_dir=/tmp/l1 force=true   # a cp -a of runs/demo
    python -m benchmarks.refit_shrinkage --checked runs/demo --fits /tmp/l1 runs/demo
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.harness import pin_threads, save_results
from datamodels.ablation.design import fitted_pairs
from datamodels.ablation.measure import measured_slope
from datamodels.views.analysis import RunView, residual_sd


def predictions(run: Path, alpha: float) -> pd.DataFrame:
    view = RunView(run.absolute())
    terms = view.terms(engine="proxyspex")
    return fitted_pairs(terms, view.n, alpha, residual_sd(view, "proxyspex")).set_index(["target", "i", "j"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checked", type=Path, required=True, help="the run whose ablations/ hold measured pair checks")
    parser.add_argument("--fits", type=Path, nargs="+", required=True, help="run folders of the same sweep, each fitted")
    parser.add_argument("--checks", nargs="+", default=["pairs", "pairs-by-rank"])
    args = parser.parse_args()
    pin_threads()
    checked = RunView(args.checked.absolute())
    alpha = float(checked.meta["alpha"])  # the sweep's: the level the checks measured pairs at
    print(f"# {platform.node()}, {platform.processor() or platform.machine()}; checks of {args.checked}")
    print("| check | fit | pairs | still reported | slope [95%] | mean abs error |")
    print("|---|---|---|---|---|---|")
    results = []
    for fit in args.fits:
        predicted = predictions(fit, alpha)
        for name in args.checks:
            checks = checked.ablation(name)
            checks = checks[~checks["control"]]
            key = pd.MultiIndex.from_arrays([checks["target"], checks["i"], checks["j"]])
            new = predicted["predicted"].reindex(key).to_numpy()
            reported = ~np.isnan(new)
            rows = checks.assign(predicted=np.where(reported, new, 0.0))  # a pair no longer reported predicts 0
            slope, low, high = measured_slope(rows)
            error = np.abs(rows["measured"] - rows["predicted"]).mean()
            results.append({"check": name, "fit": str(fit), "pairs": len(rows), "still_reported": reported.sum(),
                            "slope": slope, "slope_low": low, "slope_high": high, "mean_abs_error": error})
            print(f"| {name} | {fit} | {len(rows)} | {reported.sum()} | {slope:.2f} [{low:.2f}, {high:.2f}] | "
                  f"{error:.3f} |")
    save_results("refit_shrinkage", results)


if __name__ == "__main__":
    main()
