"""Training throughput of the sweep, measured in one run so that the ratios are fair on a shared
machine (absolute figures drift with the load; the ratios are what to compare):

- ``digits``: models per hour and mean holdout accuracy, one-at-a-time training against K models
  per pass (``sweep.models_per_pass``), on the digits default (1,000 players, alpha 0.5, the
  small CNN); the same model indices at every K, trained in interleaved rounds.
- ``cifar``: images per second of ResNet-9 training on CIFAR-shaped synthetic data (32x32x3,
  the CIFAR-10 recipe: batch 512, flips, 2-pixel translations), one-at-a-time against K per pass.
- ``loaders``: images per second delivered by the resident and the FFCV loader (normalised and
  augmented batches, no training), digits and CIFAR-shaped; FFCV's one-off numba compile apart.

On a GPU, ``benchmarks/gpu_session.py`` measures all of it in one call (issue 20).

    make bench-train                                     # digits, cifar, loaders on CPU
    make bench-train ARGS="--sections digits --rounds 4"

One torch thread per process, as in a sweep (parallelism comes from processes).
"""

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from benchmarks.harness import cpu_name, pin_threads, save_results
from datamodels.sweep.loaders import ResidentLoader
from datamodels.sweep.masks import kept_examples, training_seed
from datamodels.sweep.stage import SweepRun

CONF = Path(__file__).resolve().parents[1] / "conf"
CIFAR_SHAPED = ["dataset=synthetic", "dataset.train=1000", "dataset.target=100", "dataset.options.num_images=1500",
                "model=resnet9", "train=cifar10"]


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu_name()}, {os.cpu_count()} cores, load average {load:.1f} at the start, torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch thread(s), python {platform.python_version()}")


def sweep_run(overrides: list[str], tmp: str) -> SweepRun:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    return SweepRun(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True), tmp)


def train_in_passes(run: SweepRun, indices: range, k: int) -> tuple[list, float]:
    """Records of ``indices`` trained ``k`` per pass (k = 1: one at a time), and the wall seconds."""
    start = time.perf_counter()
    records = []
    for at in range(0, len(indices), k):
        records += run.train_pass(indices[at:at + k])
    return records, time.perf_counter() - start


def digits_section(ks: list[int], rounds: int, tmp: str) -> list[dict]:
    per_round = max(ks)
    runs = {k: sweep_run([f"sweep.models_per_pass={k}", f"run_dir={tmp}"], tmp) for k in [1, *ks]}
    for run in runs.values():
        run.splits  # noqa: B018  (moves the splits to the device before any timing)
    runs[1].train_one(10**6)  # warm-up: first-call costs of torch kernels are not training
    seconds = {k: 0.0 for k in runs}
    records = {k: [] for k in runs}
    for r in range(rounds):  # interleaved, so that a change of load hits every K alike
        indices = range(r * per_round, (r + 1) * per_round)
        for k, run in runs.items():
            got, s = train_in_passes(run, indices, k)
            records[k] += got
            seconds[k] += s
    models = rounds * per_round
    base = models / seconds[1]
    reference = np.stack([r.margins for r in records[1]])
    print(f"\n## digits: {models} models at each K (small CNN, n=1000, alpha 0.5, 12 epochs, batch 64)\n")
    print("| models per pass | models/hour/core | vs one-at-a-time | mean holdout acc | median abs margin diff |")
    print("|---|---|---|---|---|")
    rows = []
    for k in runs:
        acc = np.array([r.holdout_acc for r in records[k]])
        diff = np.median(np.abs(np.stack([r.margins for r in records[k]]) - reference))
        label = "1 (one at a time)" if k == 1 else str(k)
        rows.append({"section": "digits", "K": k, "models": models, "models_per_hour": 3600 * models / seconds[k],
                     "vs_one_at_a_time": models / seconds[k] / base, "holdout_acc": acc.mean(),
                     "holdout_acc_se": acc.std(ddof=1) / np.sqrt(len(acc)), "median_abs_margin_diff": diff})
        print(f"| {label} | {3600 * models / seconds[k]:,.0f} | {models / seconds[k] / base:.2f}x | "
              f"{acc.mean():.4f} +- {acc.std(ddof=1) / np.sqrt(len(acc)):.4f} | {diff:.2g} |")
    return rows


def cifar_section(ks: list[int], width: float, steps: int, tmp: str) -> list[dict]:
    print(f"\n## CIFAR-shaped: ResNet-9 width {width}, 32x32x3 synthetic, batch 512 per model, flips + "
          f"translate 2, {steps} steps per model\n")
    print("| models per pass | images/s/core | vs one-at-a-time | seconds per pass |")
    print("|---|---|---|---|")
    base, rows = None, []
    for k in [1, *ks]:
        run = sweep_run(CIFAR_SHAPED + [f"model.width={width}", f"train.steps={steps}",
                                        f"sweep.models_per_pass={k}", f"run_dir={tmp}"], tmp)
        run.train_one(10**6)  # warm-up
        indices = range(2 * k) if k == 1 else range(k)
        records, seconds = train_in_passes(run, indices, k)
        train = sum(r.timings["data"] + r.timings["compute"] for r in records)
        rate = len(indices) * steps * run.train_cfg.batch_size / train
        base = base or rate
        label = "1 (one at a time)" if k == 1 else str(k)
        print(f"| {label} | {rate:,.0f} | {rate / base:.2f}x | {seconds / (len(indices) // k):.1f} |")
        rows.append({"section": "cifar", "K": k, "width": width, "steps": steps, "images_per_s": rate,
                     "vs_one_at_a_time": rate / base, "seconds_per_pass": seconds / (len(indices) // k)})
    return rows


def loader_rate(loader, run: SweepRun, epochs: int) -> float:
    """Images per second of normalised, augmented batches for one alpha-0.5 model."""
    from dataclasses import replace

    cfg = replace(run.train_cfg, epochs=epochs, steps=None)
    kept = kept_examples(run.mask_of(0), run.groups)
    start = time.perf_counter()
    steps = sum(1 for _ in loader.batches(kept, training_seed(run.seed, 0), cfg))
    return steps * cfg.batch_size / (time.perf_counter() - start)


def loaders_section(tmp: str) -> list[dict]:
    from datamodels.sweep.ffcv_loader import FFCVLoader

    print("\n## loaders: images/s/core of normalised, augmented batches (no training), alpha 0.5\n")
    print("| data | resident | FFCV | resident / FFCV | FFCV first epoch (numba compile) |")
    print("|---|---|---|---|---|")
    rows = []
    for label, overrides, epochs in [("digits 8x8x1, no augmentation", [], 50),
                                     ("CIFAR-shaped 32x32x3, flips + translate 2", CIFAR_SHAPED, 8)]:
        folder = tempfile.mkdtemp(dir=tmp)
        run = sweep_run(overrides + [f"run_dir={folder}"], folder)
        start = time.perf_counter()
        ffcv = FFCVLoader(run.splits, run.data, folder)
        loader_rate(ffcv, run, 1)
        first = time.perf_counter() - start
        resident = ResidentLoader(run.splits)
        loader_rate(resident, run, 1)
        r, f = loader_rate(resident, run, epochs), loader_rate(ffcv, run, epochs)
        print(f"| {label} | {r:,.0f} | {f:,.0f} | {r / f:.1f}x | {first:.1f} s |")
        rows.append({"section": "loaders", "data": label, "resident_images_per_s": r, "ffcv_images_per_s": f,
                     "ffcv_first_epoch_s": first})
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default="digits,cifar,loaders", help="CPU sections (default: all three)")
    parser.add_argument("--ks", default="4,8,32", help="models per pass to compare with one-at-a-time")
    parser.add_argument("--rounds", type=int, default=2, help="digits: rounds of max(K) models per K")
    parser.add_argument("--cifar-width", type=float, default=0.125, help="cifar: ResNet-9 width (1.0 = 64..512)")
    parser.add_argument("--cifar-steps", type=int, default=3, help="cifar: SGD steps per model")
    args = parser.parse_args(argv)
    ks = [int(k) for k in args.ks.split(",") if k]
    if any(k < 2 for k in ks):
        parser.error(f"--ks lists models per pass >= 2 (one-at-a-time is always measured), got {args.ks}")
    pin_threads()
    torch.set_num_threads(1)
    print(f"machine: {machine()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sections = args.sections.split(",")
        if unknown := set(sections) - {"digits", "cifar", "loaders"}:
            parser.error(f"unknown sections {sorted(unknown)}; choose from digits, cifar, loaders")
        if "digits" in sections:
            rows += digits_section(ks, args.rounds, tmp)
        if "cifar" in sections:
            rows += cifar_section(ks, args.cifar_width, args.cifar_steps, tmp)
        if "loaders" in sections:
            rows += loaders_section(tmp)
    save_results("bench_train", rows)


if __name__ == "__main__":
    sys.exit(main())
