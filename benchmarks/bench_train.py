"""Training throughput of the sweep on one process: models per minute, holdout accuracy, and
where the time goes (data preparation, batching/augmentation, forward/backward, evaluation,
shard I/O).

    make bench-train                         # digits default: 1,000 players, alpha 0.5
    make bench-train ARGS="--models 100 dataset=synthetic model=resnet9 model.width=0.25"

Positional arguments are Hydra overrides of conf/config.yaml.
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

from datamodels.store import shard_path, write_shard
from datamodels.sweep import SweepRun

CONF = Path(__file__).resolve().parents[1] / "conf"


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch thread(s), python {platform.python_version()}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=40, help="models to train (default 40)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. train.epochs=8")
    args = parser.parse_args(argv)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"sweep.models_per_shard={args.models}", *args.overrides])
    config = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    torch.set_num_threads(int(config["torch_threads"] or 1))

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run = SweepRun(config, tmp)
        run.splits  # noqa: B018  (moves the splits to the device: part of the preparation cost)
        prepare_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        records = [run.train_one(i) for i in range(args.models)]
        train_s = time.perf_counter() - t1
        t2 = time.perf_counter()
        write_shard(shard_path(Path(tmp) / "shards", 0), records, run.meta | {"shard": 0})
        io_s = time.perf_counter() - t2

    parts = {k: sum(r.timings[k] for r in records) for k in ("data", "compute", "eval")}
    other = train_s - sum(parts.values())
    accuracy = np.array([r.holdout_acc for r in records])
    kept = np.array([run.mask_of(i).mean() for i in range(args.models)])
    total = train_s + io_s
    print(f"machine: {machine()}")
    print(f"setting: dataset={run.data.name} n={run.n} players, T={run.meta['T']} targets, model="
          f"{config['model']['name']}, alpha={run.design.alpha} (mean kept {kept.mean():.3f}), "
          f"{run.train_cfg.epochs if run.train_cfg.steps is None else str(run.train_cfg.steps) + ' steps'} epochs, "
          f"batch {run.train_cfg.batch_size}, device {run.device}")
    print(f"models: {args.models} in {total:.1f} s -> {60 * args.models / total:.1f} models/minute/process "
          f"({total / args.models:.3f} s/model)")
    print(f"holdout accuracy: mean {accuracy.mean():.4f}, min {accuracy.min():.4f}, max {accuracy.max():.4f} "
          f"(chance {1 / run.data.num_classes:.2f})")
    print(f"one-off preparation (read, split, move to device): {prepare_s:.2f} s")
    print("time split per model:")
    for name, seconds in [("batching + augmentation", parts["data"]), ("forward/backward/step", parts["compute"]),
                          ("evaluation (margins, accuracy)", parts["eval"]), ("model setup, other", other),
                          ("shard write (I/O)", io_s)]:
        print(f"  {name:32s} {1000 * seconds / args.models:8.2f} ms  {100 * seconds / total:5.1f}%")


if __name__ == "__main__":
    sys.exit(main())
