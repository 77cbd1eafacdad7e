"""TRAK against the linear datamodel and ProxySPEX at equal training compute: LDS vs models.

    make bench-trak          # the demo's sweep into runs/trak-lds, then this
    .venv/bin/python -m benchmarks.trak_lds --run runs/trak-lds [--ks 1,2,5,10,20] [--budgets 20,50,100]

TRAK (datamodels.fit.trak) on the first K models of the fit split, retrained with their masks and
seeds, so TRAK with K models costs the training of K sweep models (plus its gradients); the
linear datamodel and ProxySPEX fitted on the first m models of the same split
(datamodels.views.analysis.faithfulness_vs_models; they need at least 20). Everything is judged on the
fit stage's held-out models: LDS is the median over targets of the Spearman correlation of
predicted and observed margins. TRAK's raw LDS uses only its K models; its R^2 is of the
calibrated prediction (a least-squares slope and intercept per target over the fit split's
margins, as jobs/trak.py writes it). Report, don't tune: every setting is the default.
"""

import argparse
import os
import platform
import sys
import time

import numpy as np
import pandas as pd
import torch

from benchmarks.harness import cpu_name, pin_threads, save_results

from datamodels.views.analysis import RunView, faithfulness_vs_models
from datamodels.fit.faithfulness import r2, spearman
from datamodels.interactions.engine import heldout_split
from datamodels.fit.trak import TrakSettings, calibrate, predict, retrain, run_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a digits sweep's run folder (e.g. the demo's)")
    parser.add_argument("--ks", default="1,2,5,10,20", help="TRAK's models, comma-separated")
    parser.add_argument("--budgets", default="20,50,100,200,400,800",
                        help="the datamodels' models, comma-separated (more than the fit split: all of it)")
    parser.add_argument("--targets", type=int, default=50, help="the first this many targets are scored")
    args = parser.parse_args()
    pin_threads()
    torch.set_num_threads(1)
    ks = [int(k) for k in args.ks.split(",")]
    budgets = [int(b) for b in args.budgets.split(",")]

    view = RunView.open(args.run)
    ready, run = view.models, view.sweep_run
    targets = np.arange(min(args.targets, ready.target_margins.shape[0]))
    settings = TrakSettings()
    held = heldout_split(ready.mask_id, settings.heldout_fraction, settings.split_seed)
    fitting = np.flatnonzero(~held)
    margins = np.asarray(ready.target_margins[targets], dtype=float).T  # [m, targets]
    print(f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, "
          f"torch {torch.__version__}, 1 thread")
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"sweep: {args.run}: {len(ready.model_index)} models ({held.sum()} held out), {run.n} players over "
          f"{len(run.groups)} examples, {len(targets)} targets; TRAK proj_dim={settings.proj_dim}")

    start = time.perf_counter()
    checkpoints = retrain(run, ready, fitting[:max(ks)])
    train_seconds = (time.perf_counter() - start) / max(ks)
    rows = []
    for k in ks:
        start = time.perf_counter()
        weights = run_weights(run, checkpoints[:k], settings)[targets]
        seconds = time.perf_counter() - start
        raw = predict(ready.masks, weights)
        slope, intercept = calibrate(raw[fitting], margins[fitting])
        pred = raw * slope + intercept
        rows.append({"models": k, "engine": "trak",
                     "median_spearman": np.median([spearman(margins[held, t], raw[held, t])
                                                   for t in range(len(targets))]),
                     "median_spearman_calibrated": np.median([spearman(margins[held, t], pred[held, t])
                                                              for t in range(len(targets))]),
                     "median_r2": np.median([r2(margins[held, t], pred[held, t]) for t in range(len(targets))]),
                     "negative_slopes": int((slope < 0).sum()), "seconds": seconds})
    print(f"training one sweep model: {train_seconds:.2f} s (TRAK's K models are K sweep models)")
    print(pd.DataFrame(rows).to_string(index=False, float_format="%.3f"), flush=True)
    fits = faithfulness_vs_models(view, [min(b, len(fitting)) for b in budgets], targets=list(targets))
    fits = fits.assign(seconds=fits["fit_seconds"] * len(targets))[["models", "engine", "median_spearman",
                                                                     "median_r2", "seconds"]]
    table = pd.concat([pd.DataFrame(rows), fits], ignore_index=True)
    print("seconds: TRAK's gradients and solve for all targets; a fit's total over the targets")
    print(table.to_string(index=False, float_format="%.3f", na_rep="-"))
    save_results("trak_lds", table.to_dict("records"), train_seconds_per_model=train_seconds)


if __name__ == "__main__":
    main()
