"""The linear datamodel on a GPU at CIFAR-10 scale, beside the CPU path on the same machine.

    .venv/bin/python -m benchmarks.bench_gpu_linear --n 50000 --m 100000 --targets 100 --cpu-targets 16

Writes (or reuses) the planted sweep of ``make bench-scale`` at ``n`` players and ``m`` models
(same game, same seeds, so the figures line up with that benchmark's rows), then, on the fit
stage's split (the same held-out models): every target with
:func:`datamodels.interactions.batched_lasso.fit_linear_batched` on the GPU, and the first
``--cpu-targets`` with the CPU path (screening, K-fold Gram Lasso, KKT check) in
``--cpu-workers`` processes of one thread. Reported: seconds per target (GPU wall time, masks'
upload included; CPU core-seconds), peak device memory, median held-out R^2 and its fraction of
the noise ceiling, on the targets both fitted.
"""

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench_scale import GAME, NOISE
from benchmarks.harness import cpu_name, pin_threads, save_results

from datamodels.store.fit_ready import build_fit_ready, open_fit_ready
from datamodels.fit.faithfulness import noise_ceiling, r2
from datamodels.fit.stage import fit_and_evaluate
from datamodels.interactions import heldout_split
from datamodels.interactions.batched_lasso import fit_linear_batched
from datamodels.sweep.planted import write_planted_sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--m", type=int, default=100_000, help="models: m / 2 masks x 2 seeds")
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--cpu-targets", type=int, default=16, help="0: the batched fit alone")
    parser.add_argument("--cpu-workers", type=int, default=os.cpu_count())
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", default="runs/bench-scale")
    args = parser.parse_args()
    pin_threads()
    device = torch.device(args.device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "no GPU"
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {gpu}, {cpu_name()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}; n={args.n:,}, m={args.m:,}, targets {args.targets}; game {GAME}, noise {NOISE}",
          flush=True)

    run_dir = Path(args.out) / f"n{args.n}-m{args.m}"
    start = time.perf_counter()
    write_planted_sweep(run_dir, n=args.n, T=args.targets, num_masks=args.m // 2, repeats=2, noise=NOISE, seed=0,
                        progress=False, **GAME)
    build_fit_ready(run_dir, progress=False)
    ready = open_fit_ready(run_dir)
    print(f"sweep and fit-ready layout: {time.perf_counter() - start:.0f} s", flush=True)

    held = heldout_split(ready.mask_id, 0.2, 0)
    used = np.flatnonzero(~held)
    Y = np.asarray(ready.target_margins, dtype=np.float32).T  # [m, T]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    fit = fit_linear_batched(ready.masks[used], Y[used], device=args.device, groups=ready.mask_id[used],
                             progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    gpu_s = time.perf_counter() - start
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    pred = fit.predict(ready.masks[held])
    gpu_r2 = np.array([r2(Y[held, t], pred[:, t]) for t in range(args.targets)])
    ceiling = np.array([noise_ceiling(Y[:, t], ready.mask_id) for t in range(args.targets)])
    print(f"batched on {args.device}: {gpu_s:.1f} s for {args.targets} targets = {gpu_s / args.targets:.2f} s per target; "
          f"peak device memory {memory:.1f} GB; median R^2 {np.median(gpu_r2):.3f} "
          f"({np.median(gpu_r2 / ceiling):.3f} of the ceiling {np.median(ceiling):.3f}); median non-zero "
          f"coefficients {np.median((fit.coef != 0).sum(0)):.0f}", flush=True)
    row = {"n": args.n, "m": args.m, "targets": args.targets, "device": args.device, "gpu": gpu, "gpu_s": gpu_s,
           "gpu_s_per_target": gpu_s / args.targets, "peak_device_gb": memory, "r2": np.median(gpu_r2),
           "r2_of_ceiling": np.median(gpu_r2 / ceiling), "ceiling": np.median(ceiling)}

    k = min(args.cpu_targets, args.targets)
    if k == 0:
        save_results("bench_gpu_linear", [row])
        return
    start = time.perf_counter()
    _, metrics = fit_and_evaluate(ready.masks, Y, ready.mask_id, "linear", workers=args.cpu_workers,
                                  progress=False, columns=range(k))
    cpu_s = (time.perf_counter() - start) * args.cpu_workers / k
    print(f"CPU path, first {k} targets, {args.cpu_workers} workers: {cpu_s:.1f} core-seconds per target; "
          f"median R^2 {metrics['r2'].median():.3f} against {np.median(gpu_r2[:k]):.3f} batched on the same "
          f"targets (largest difference {np.abs(metrics['r2'].to_numpy() - gpu_r2[:k]).max():.3f})")
    print(f"CPU core-seconds per target / GPU seconds per target: {cpu_s / (gpu_s / args.targets):.1f}x; "
          f"10,000 targets: {gpu_s / args.targets * 10_000 / 3600:.1f} h on this GPU, "
          f"{cpu_s * 10_000 / 3600 / os.cpu_count():.1f} h on its {os.cpu_count()} cores")
    save_results("bench_gpu_linear", [row | {"cpu_targets": k, "cpu_workers": args.cpu_workers,
                                             "cpu_core_s_per_target": cpu_s, "cpu_r2": metrics["r2"].median(),
                                             "gpu_r2_same_targets": np.median(gpu_r2[:k])}])


if __name__ == "__main__":
    main()
