"""CIFAR-10's scale end to end, from the datamodels release's format to a report: import, fit,
prune, curate, report and notebooks on a planted game without images.

    make bench-e2e-scale   # = .venv/bin/python -m benchmarks.bench_e2e_scale
    .venv/bin/python -m benchmarks.bench_e2e_scale --n 50000 --targets 10000 --masks 2000

Every stage runs as a user runs it (a job or module in its own process), and is measured with
:func:`benchmarks.harness.run_measured`: wall time and the peak summed RSS / PSS of its process tree.

1. planted games written in the release's format (``python -m datamodels.sweep.planted --release``:
   ``train_masks_50pct.npy``, ``test_margins_50pct.npy`` in float16, ``labels.npy`` of 10
   classes and the truth): ``n`` players, ``T`` targets, ``masks`` models, 500 mains per target;
2. ``jobs/import_sweep.py dataset=none`` with ``source.labels``, then ``jobs/collect.py``;
3. genuine fits of a target range: ``fit=linear`` and ``fit=proxyspex`` on targets
   ``0..fit_targets - 1`` (``fit.stop``), 2 workers;
4. **the shortcut** for the other targets (fitting 10,000 targets takes about 5 h for linear and
   15 to 19 h for ProxySPEX on these 2 cores: docs/benchmarks.md): fit tables written from the
   planted truth, as a fit that found exactly the planted terms would write them (``linear``:
   the constant and mains; ``proxyspex``: every planted term), judged like a fit on the fit
   stage's held-out models (the engine's own split), so the held-out R^2 and Spearman are
   genuine for those polynomials. Same tables, same sizes (about 500 mains and 5 interactions
   per target), so every stage after the fit reads what it would read after a real fit; each
   engine's entry in the tables' metadata says ``shortcut``;
5. ``jobs/prune.py``: interactions, linear (the greedy on every target's surrogate), random and
   stratified at 5 fractions (EL2N and CCS retrain, which a run without images cannot);
6. ``jobs/curate.py`` of one keep-set; 7. ``jobs/report.py``; 8. the three notebooks, executed.
"""

import argparse
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.harness import cpu_name, pin_threads, run_measured, save_results

from datamodels.store.fit_ready import open_fit_ready
from datamodels.fit.faithfulness import r2, spearman
from datamodels.fit.outputs import INTERACTION_COLUMNS, save_fit
from datamodels.interactions import interaction_table, make_engine
from datamodels.sweep.games import _by_order, _PlantedGames
from datamodels.sweep.planted import read_planted_truth
from datamodels.run.folder import RunFolder

NOTEBOOKS = ("01_target_interactions.ipynb", "02_dataset_patterns.ipynb", "03_pruning.ipynb")


def truth_fit(run_dir: Path, truth_file: Path, start: int) -> None:
    """Step 4: fit tables of targets ``start..T-1`` from the planted truth, judged on held-out models."""
    folder = RunFolder(run_dir)
    ready = open_fit_ready(run_dir, progress=False)
    T, n = ready.target_margins.shape[0], ready.meta["n"]
    targets = np.arange(start, T)
    truth = read_planted_truth(truth_file)
    for method in ("linear", "proxyspex"):
        # what a fit that found exactly the planted terms would hold: linear, the constant and the mains
        spectra = [truth[t] if method == "proxyspex" else {k: v for k, v in truth[t].items() if len(k) <= 1}
                   for t in targets]
        held = make_engine(method).heldout_models(ready.masks, ready.mask_id, 0.2, 0)
        pred = _PlantedGames([_by_order(s) for s in spectra])(ready.masks[held].unpack().astype(bool))
        y = np.stack([np.asarray(ready.target_margins[t], dtype=np.float64)[held] for t in targets], axis=1)
        metrics = pd.DataFrame({
            "target": targets, "engine": method, "r2": [r2(y[:, j], pred[:, j]) for j in range(len(targets))],
            "spearman": [spearman(y[:, j], pred[:, j]) for j in range(len(targets))], "noise_ceiling": np.nan,
            "r2_fraction_of_ceiling": np.nan, "models_used": int((~held).sum()), "seconds": 0.0, "working_set": 0,
            "kkt_added": 0, "penalty_at_floor": False, "tested_zeroed": 0})
        interactions = pd.concat([interaction_table(s, tested={k for k in s if len(k) > 1}).assign(target=t, engine=method)
                                  for t, s in zip(targets, spectra)], ignore_index=True)[list(INTERACTION_COLUMNS)]
        shortcut = f"the planted truth of targets {start}..{T - 1}, judged on the held-out models (this benchmark)"
        meta = {"fingerprint": ready.meta["fingerprint"], "n": n, "T": T, "config_hash": ready.meta.get("config_hash"),
                "alpha": None, "engines": {method: {"shortcut": shortcut}}}
        save_fit(folder, None, interactions, metrics, meta)
        print(f"{method}: {len(interactions):,} terms of {len(targets):,} targets written, median held-out R^2 "
              f"{metrics['r2'].median():.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--masks", type=int, default=2_000)
    parser.add_argument("--fit-targets", type=int, default=10, help="targets fitted for real by each method")
    parser.add_argument("--out", default="runs/bench-e2e-scale")
    parser.add_argument("--only", default=None,
                        help="run only the stages whose names start with one of these, comma-separated (e.g. "
                             "'report,notebook'), on a run folder the full benchmark wrote")
    parser.add_argument("--step", default=None, help=argparse.SUPPRESS)  # internal: one step in its own process
    args = parser.parse_args()
    pin_threads()
    release = Path(args.out).resolve() / f"release-n{args.n}-T{args.targets}-m{args.masks}"
    run_dir = Path(args.out).resolve() / f"n{args.n}-T{args.targets}-m{args.masks}"
    if args.step == "truth-fit":
        truth_fit(run_dir, release / "truth.parquet", args.fit_targets)
        return
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {cpu_name()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; n={args.n:,}, T={args.targets:,}, m={args.masks:,}, real fits of "
          f"{args.fit_targets} targets per method", flush=True)
    py, run = sys.executable, f"run_dir={run_dir}"
    stages = [
        ("planted release (two .npy files)", [py, "-m", "datamodels.sweep.planted", "--release", str(release), "--n",
                                              str(args.n), "--targets", str(args.targets), "--masks",
                                              str(args.masks), "--n-mains", "500"]),
        ("import (dataset=none, labels)",
         [py, "jobs/import_sweep.py", run, "dataset=none", f"source.masks={release / 'train_masks_50pct.npy'}",
          f"source.margins={release / 'test_margins_50pct.npy'}", f"source.labels={release / 'labels.npy'}",
          "source.models_per_shard=500", "progress=false"]),
        ("collect (fit-ready layout)", [py, "jobs/collect.py", run, "progress=false"]),
        (f"fit=linear, targets 0..{args.fit_targets - 1}",
         [py, "jobs/fit.py", run, "fit=linear", f"fit.stop={args.fit_targets}", "progress=false"]),
        (f"fit=proxyspex, targets 0..{args.fit_targets - 1}",
         [py, "jobs/fit.py", run, "fit=proxyspex", f"fit.stop={args.fit_targets}", "progress=false"]),
        ("shortcut: both fit tables of the other targets from the truth",
         [py, "-m", "benchmarks.bench_e2e_scale", "--step", "truth-fit", "--n", str(args.n), "--targets", str(args.targets), "--masks",
          str(args.masks), "--fit-targets", str(args.fit_targets), "--out", args.out]),
        ("prune (interactions, linear, random, stratified; 5 fractions)",
         [py, "jobs/prune.py", run, "prune.methods=[interactions,linear,random,stratified]", "progress=false"]),
        ("curate (interactions at 0.5)", [py, "jobs/curate.py", run, "curate.method=interactions", "curate.fraction=0.5"]),
        ("report", [py, "jobs/report.py", run, "force=true"]),
    ] + [(f"notebook {name}", [py, "-c", "import nbformat, sys; from nbclient import NotebookClient; "
                               f"b = nbformat.read('analysis/{name}', as_version=4); "
                               "NotebookClient(b, timeout=3000, kernel_name='python3', "
                               "resources={'metadata': {'path': 'analysis'}}).execute(); "
                               "e = [o for c in b.cells if c.cell_type == 'code' for o in c.outputs "
                               "if o.output_type == 'error']; sys.exit(f'{len(e)} cells failed' if e else 0)"])
         for name in NOTEBOOKS]
    if args.only:
        stages = [(name, command) for name, command in stages if name.startswith(tuple(args.only.split(",")))]
    os.environ["DATAMODELS_RUN"] = str(run_dir)
    rows = []
    for name, command in stages:
        if name.startswith("curate"):  # a second run of the bench writes the keep-set again
            shutil.rmtree(RunFolder(run_dir).curated("interactions", 0.5), ignore_errors=True)
        figures = run_measured(command)
        rows.append({"stage": name} | figures)
        print(f"  {name}: {figures['wall_s']:.1f} s, peak RSS {figures['peak_rss_gb']:.2f} GB, "
              f"PSS {figures['peak_pss_gb']:.2f} GB", flush=True)
    folder = RunFolder(run_dir)
    if not folder.report_page.exists():
        return
    report = folder.report
    figures = sorted(report.glob("figure-*.png"))
    sizes = {"page (index.html)": folder.report_page.stat().st_size,
             f"{len(figures)} figures": sum(p.stat().st_size for p in figures),
             "faithfulness.csv": folder.report_faithfulness.stat().st_size,
             "fit/interactions.parquet": folder.interactions_file().stat().st_size}
    print("\n" + pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print("\nsizes: " + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in sizes.items()))
    save_results("bench_e2e_scale", rows, path=Path(args.out) / "results.json", sizes=sizes)


if __name__ == "__main__":
    main()
