"""Training one model on a subset, and the margins it gives the target points.

The recipe follows the CIFAR-10 speed runs (airbench, the datamodels/FFCV ResNet-9 example):
the split lives on the device as one normalised tensor, batches are drawn by indexing it,
augmentation (flip, translate) is applied to whole batches, SGD with Nesterov momentum, label
smoothing, weight decay and a triangular (or one-cycle) learning-rate schedule.

Reproducibility: everything random (initialisation, batch order, augmentation) is drawn from
generators seeded by the model's training seed. On CPU, with the same thread count, a re-run
of a model gives bit-identical margins. The same seed with a different mask changes only which
examples are seen.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import PreparedData

SCHEDULES = ("triangular", "onecycle")


class DivergedError(RuntimeError):
    """A model produced non-finite outputs: its margins cannot be logged."""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 12
    steps: int | None = None  # a fixed number of SGD steps instead of epochs
    batch_size: int = 64
    lr: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    schedule: str = "triangular"
    warmup: float = 0.2  # fraction of the steps spent rising to the peak learning rate
    flip: bool = False
    translate: int = 0  # pixels of random translation (zero padding), 0 = off
    eval_batch_size: int = 1024

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"train.schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.steps is None and self.epochs < 1:
            raise ValueError(f"train.epochs must be >= 1 (or set train.steps), got {self.epochs}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"train.steps must be >= 1, got {self.steps}")
        if self.batch_size < 1 or not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"train.batch_size must be >= 1 and train.warmup in [0, 1); "
                             f"got {self.batch_size} and {self.warmup}")


@dataclass
class ResidentSplits:
    """The splits as normalised float tensors ``[N, C, H, W]`` on one device."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    target_x: torch.Tensor
    target_y: torch.Tensor
    holdout_x: torch.Tensor
    holdout_y: torch.Tensor
    num_classes: int

    @property
    def in_channels(self) -> int:
        return self.train_x.shape[1]


def to_device(data: PreparedData, device: str | torch.device = "cpu") -> ResidentSplits:
    """Move every split to ``device`` once, normalised with the train split's channel statistics."""
    train = data.images("train").astype(np.float32) / 255.0
    mean = train.mean(axis=(0, 1, 2))
    std = train.std(axis=(0, 1, 2)) + 1e-6

    def tensor(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        x = (data.images(split).astype(np.float32) / 255.0 - mean) / std
        x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(device)
        return x, torch.from_numpy(data.labels(split)).to(device)

    return ResidentSplits(*tensor("train"), *tensor("target"), *tensor("holdout"), data.num_classes)


@dataclass
class TrainResult:
    margins: np.ndarray  # float32 [T]
    holdout_accuracy: float
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)  # data / compute / eval seconds


def margins_of(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Correct-class logit minus the largest other logit."""
    correct = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return correct - others.max(dim=1).values


def augment(x: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flips and translations, drawn per example, applied to the whole batch."""
    if cfg.flip:
        flip = torch.rand(len(x), generator=gen, device=x.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if cfg.translate:
        t = cfg.translate
        b, _, h, w = x.shape
        padded = F.pad(x, (t, t, t, t))
        dy, dx = torch.randint(0, 2 * t + 1, (2, b), generator=gen, device=x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        x = padded[torch.arange(b, device=x.device)[:, None, None, None],
                   torch.arange(x.shape[1], device=x.device)[None, :, None, None], rows, cols]
    return x


def batch_order(num_kept: int, cfg: TrainConfig, gen: torch.Generator) -> list[torch.Tensor]:
    """Positions (into the kept examples) of every batch: a fresh permutation each epoch."""
    per_epoch = math.ceil(num_kept / cfg.batch_size)
    total = cfg.steps if cfg.steps is not None else cfg.epochs * per_epoch
    batches: list[torch.Tensor] = []
    while len(batches) < total:
        perm = torch.randperm(num_kept, generator=gen)
        batches.extend(perm.split(cfg.batch_size))
    return batches[:total]


def lr_lambda(cfg: TrainConfig, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the peak learning rate at each step."""
    peak = max(1, round(cfg.warmup * total_steps))
    if cfg.schedule == "triangular":
        return lambda s: (s + 1) / peak if s < peak else max(0.0, (total_steps - s) / max(1, total_steps - peak))
    # one-cycle: cosine rise to the peak, cosine decay to zero
    return lambda s: (0.5 - 0.5 * math.cos(math.pi * (s + 1) / peak) if s < peak
                      else 0.5 + 0.5 * math.cos(math.pi * (s - peak) / max(1, total_steps - peak)))


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Margins and correctness of every point."""
    model.eval()
    logits = torch.cat([model(chunk) for chunk in x.split(batch_size)])
    return margins_of(logits, y), logits.argmax(1) == y


def train_network(build: Callable[[], nn.Module], splits: ResidentSplits, kept: np.ndarray, seed: int,
                  cfg: TrainConfig) -> tuple[nn.Module, dict[str, float]]:
    """Train a fresh network on the kept train examples; return it and its data/compute seconds."""
    torch.manual_seed(seed)
    model = build().to(splits.train_x.device)
    gen = torch.Generator().manual_seed(seed)
    aug_gen = torch.Generator(device=splits.train_x.device).manual_seed(seed)
    kept_t = torch.as_tensor(kept, dtype=torch.long, device=splits.train_x.device)
    data_s = compute_s = 0.0
    if len(kept):
        batches = batch_order(len(kept), cfg, gen)
        optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                                    weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, len(batches)))
        model.train()
        for positions in batches:
            t0 = time.perf_counter()
            index = kept_t[positions.to(kept_t.device)]
            x = augment(splits.train_x[index], cfg, aug_gen)
            y = splits.train_y[index]
            t1 = time.perf_counter()
            loss = F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            t2 = time.perf_counter()
            data_s += t1 - t0
            compute_s += t2 - t1
    return model, {"data": data_s, "compute": compute_s}


def train_model(build: Callable[[], nn.Module], splits: ResidentSplits, kept: np.ndarray, seed: int,
                cfg: TrainConfig) -> TrainResult:
    """Train a fresh model on the kept train examples; return its target margins and holdout accuracy."""
    start = time.perf_counter()
    model, timings = train_network(build, splits, kept, seed, cfg)
    t3 = time.perf_counter()
    margins, _ = evaluate(model, splits.target_x, splits.target_y, cfg.eval_batch_size)
    _, correct = evaluate(model, splits.holdout_x, splits.holdout_y, cfg.eval_batch_size)
    margins = margins.float().cpu().numpy()
    if not np.isfinite(margins).all():
        raise DivergedError(f"non-finite margins on {int((~np.isfinite(margins)).sum())} of {len(margins)} "
                            f"targets (training seed {seed}): the model diverged; lower train.lr")
    end = time.perf_counter()
    return TrainResult(margins, float(correct.float().mean()), end - start, timings | {"eval": end - t3})
