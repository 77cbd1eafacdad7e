"""Training one model on a subset, and the margins it gives the target points.

The recipe follows the CIFAR-10 speed runs (airbench, the datamodels/FFCV ResNet-9 example):
batches come from a loader (:mod:`datamodels.sweep.loaders`: device-resident split or FFCV), with
augmentation (flip, translate, cutout) applied to whole batches, SGD with Nesterov momentum,
label smoothing, weight decay and a triangular (or one-cycle) learning-rate schedule.
:func:`datamodels.sweep.stacking.train_models` trains K models in one vectorised pass with the same
recipe.

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

from ..errors import UserError
from ..settings import Settings
from .loaders import ResidentLoader, ResidentSplits, augment, step_params, total_steps
from .stacking import StackedSGD, stack_networks

SCHEDULES = ("triangular", "onecycle")
PRECISIONS = ("fp32", "bf16")
# torch.compile's modes (the top-level ``compile`` setting); reduce-overhead adds CUDA graphs.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# Channels-last activations and weights: pooling, batch norm and convolutions vectorise over
# channels; about 30% less time per step for the small CNN and ResNet-9 on CPU (docs/loaders.md).
CHANNELS_LAST = torch.channels_last


class DivergedError(RuntimeError):
    """A model produced non-finite outputs: its margins cannot be logged."""


@dataclass(frozen=True)
class TrainConfig(Settings):
    section = "train"
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
    cutout: int = 0  # side of a random square zeroed in every training image, 0 = off
    eval_batch_size: int = 1024
    precision: str = "fp32"  # bf16: forward passes under bfloat16 autocast (weights, optimiser stay float32)
    # a torch.compile mode, or None (eager). Set by the top-level ``compile`` key, not recorded
    # with a run's recipe: like ``device``, it changes the rounding of the arithmetic, not the models.
    compile: str | None = None

    def __post_init__(self):
        if self.compile is not None and self.compile not in COMPILE_MODES:
            raise UserError(f"compile must be null or one of {', '.join(COMPILE_MODES)}, got {self.compile!r}")
        if self.precision not in PRECISIONS:
            raise UserError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.schedule not in SCHEDULES:
            raise UserError(f"train.schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.steps is None and self.epochs < 1:
            raise UserError(f"train.epochs must be >= 1 (or set train.steps), got {self.epochs}")
        if self.steps is not None and self.steps < 1:
            raise UserError(f"train.steps must be >= 1, got {self.steps}")
        if self.translate < 0 or self.cutout < 0:
            raise UserError(f"train.translate and train.cutout must be >= 0, got {self.translate} and {self.cutout}")
        if self.batch_size < 1 or not 0.0 <= self.warmup < 1.0:
            raise UserError(f"train.batch_size must be >= 1 and train.warmup in [0, 1); "
                            f"got {self.batch_size} and {self.warmup}")


@dataclass
class TrainResult:
    margins: np.ndarray  # float32 [T]
    holdout_accuracy: float
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)  # data / compute / eval seconds


def margins_of(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Correct-class logit minus the largest other logit (classes on the last axis)."""
    correct = logits.gather(-1, labels[..., None]).squeeze(-1)
    others = logits.scatter(-1, labels[..., None], float("-inf"))
    return correct - others.max(dim=-1).values


def lr_lambda(cfg: TrainConfig, num_steps: int) -> Callable[[int], float]:
    """Multiplier of the peak learning rate at each step."""
    peak = max(1, round(cfg.warmup * num_steps))
    if cfg.schedule == "triangular":
        return lambda s: (s + 1) / peak if s < peak else max(0.0, (num_steps - s) / max(1, num_steps - peak))
    # one-cycle: cosine rise to the peak, cosine decay to zero
    return lambda s: (0.5 - 0.5 * math.cos(math.pi * (s + 1) / peak) if s < peak
                      else 0.5 + 0.5 * math.cos(math.pi * (s - peak) / max(1, num_steps - peak)))


def autocast(cfg: TrainConfig, device: torch.device):
    """The forward passes' precision (``train.precision``): bfloat16 autocast, the format of the
    GPUs' tensor cores, or float32 (autocast off: the same kernels as without it)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")


# (architecture, mode, tensor shapes) -> a network kept for the process, and its compiled forward
_COMPILED: dict[tuple, tuple[nn.Module, nn.Module]] = {}


def compiled(model: nn.Module, cfg: TrainConfig) -> tuple[nn.Module, nn.Module]:
    """The network to train and its training steps' forward: ``model`` itself twice (eager), or,
    with ``cfg.compile`` set, a network kept for the process per architecture, mode and shapes,
    its tensors overwritten in place with ``model``'s initial state, and that network compiled.

    The same tensors for every model: CUDA graphs (reduce-overhead) record their addresses, and a
    new network's would be recorded again, up to torch's limit of re-recordings (128), after
    which the graphs are dropped. Dynamo compiles once per process. Evaluation stays eager: a
    few percent of a model's work, and each of its shapes would be one more compilation. Static
    shapes, as CUDA graphs need: training sees one (the batch)."""
    if cfg.compile is None:
        return model, model
    state = model.state_dict()
    key = (type(model), cfg.compile, tuple((k, v.shape, v.dtype, v.device) for k, v in state.items()))
    if key in _COMPILED:
        _COMPILED[key][0].load_state_dict(state)
    else:
        _COMPILED[key] = model, torch.compile(model, mode=cfg.compile, dynamic=False)
    return _COMPILED[key]


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Margins and correctness of every point, in batches of ``cfg.eval_batch_size`` at the
    forward's precision (margins in float32 whatever it is)."""
    model.eval()
    with autocast(cfg, x.device):
        logits = torch.cat([model(chunk.contiguous(memory_format=CHANNELS_LAST))
                            for chunk in x.split(cfg.eval_batch_size)])
    logits = logits.float()
    return margins_of(logits, y), logits.argmax(-1) == y


def train_network(build: Callable[[], nn.Module], splits: ResidentSplits, kept: np.ndarray, seed: int,
                  cfg: TrainConfig, loader=None) -> tuple[nn.Module, dict[str, float]]:
    """Train a fresh network on the kept train examples; return it and its data/compute seconds.

    ``loader`` defaults to the device-resident one over ``splits``. With ``cfg.compile`` set, the
    network is the process's kept one (:func:`compiled`): the next model overwrites it, so copy
    what is to be kept."""
    torch.manual_seed(seed)
    model, forward = compiled(build().to(splits.train_images.device, memory_format=CHANNELS_LAST), cfg)
    data_s = compute_s = 0.0
    if len(kept):
        loader = loader or ResidentLoader(splits)
        optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                                    weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, total_steps(len(kept), cfg)))
        model.train()
        t0 = time.perf_counter()
        for x, y in loader.batches(kept, seed, cfg):
            t1 = time.perf_counter()
            with autocast(cfg, x.device):
                loss = F.cross_entropy(forward(x.contiguous(memory_format=CHANNELS_LAST)), y,
                                       label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            t2 = time.perf_counter()
            data_s += t1 - t0
            compute_s += t2 - t1
            t0 = t2
    return model, {"data": data_s, "compute": compute_s}


def check_margins(margins: np.ndarray, seed: int) -> None:
    if not np.isfinite(margins).all():
        raise DivergedError(f"non-finite margins on {int((~np.isfinite(margins)).sum())} of {len(margins)} "
                            f"targets (training seed {seed}): the model diverged; lower train.lr")


def train_model(build: Callable[[], nn.Module], splits: ResidentSplits, kept: np.ndarray, seed: int,
                cfg: TrainConfig, loader=None) -> TrainResult:
    """Train a fresh model on the kept train examples; return its target margins and holdout accuracy."""
    start = time.perf_counter()
    model, timings = train_network(build, splits, kept, seed, cfg, loader)
    t3 = time.perf_counter()
    margins, _ = evaluate(model, splits.target_x, splits.target_y, cfg)
    _, correct = evaluate(model, splits.holdout_x, splits.holdout_y, cfg)
    margins = margins.float().cpu().numpy()
    check_margins(margins, seed)
    end = time.perf_counter()
    return TrainResult(margins, float(correct.float().mean()), end - start, timings | {"eval": end - t3})


def train_models(build: Callable[[], nn.Module], splits: ResidentSplits, kept: list[np.ndarray], seeds: list[int],
                 cfg: TrainConfig) -> list[TrainResult]:
    """Train ``len(seeds)`` models in one vectorised pass (:mod:`datamodels.sweep.stacking`), model ``k``
    on the examples ``kept[k]`` with training seed ``seeds[k]``.

    Each model gets what :func:`train_model` would give it: the same initialisation, batches,
    augmentation and learning-rate schedule, so it differs from its one-at-a-time twin only by
    floating-point rounding (grouped kernels sum in another order). A model whose mask keeps
    fewer examples takes fewer steps: after its last one its learning rate is zero and its batch
    norm statistics are restored to their values at that step. Reported seconds are the pass's,
    shared equally.
    """
    if len(kept) != len(seeds):
        raise ValueError(f"{len(kept)} kept sets for {len(seeds)} seeds")
    if len(seeds) == 1 or not all(len(k) for k in kept):
        # nothing to stack with, or a model without data (it only needs its initialisation)
        return [train_model(build, splits, k, s, cfg) for k, s in zip(kept, seeds)]
    start = time.perf_counter()
    device = splits.train_images.device
    num = len(seeds)
    nets = []
    for seed in seeds:
        torch.manual_seed(seed)
        nets.append(build())
    model, forward = compiled(stack_networks(nets).to(device, memory_format=CHANNELS_LAST), cfg)
    steps = [total_steps(len(k), cfg) for k in kept]
    longest = max(steps)
    loader = ResidentLoader(splits)
    plans = [loader.plan(k, s, cfg, longest) for k, s in zip(kept, seeds)]
    index = torch.stack([p[0] for p in plans], dim=1).to(device)  # [steps, K, B]
    params = {name: torch.stack([p[1][name] for p in plans], dim=1) for name in plans[0][1]}  # [steps, K, ...]
    schedules = [lr_lambda(cfg, n) for n in steps]
    lrs = torch.tensor([[cfg.lr * f(s) if s < n else 0.0 for f, n in zip(schedules, steps)] for s in range(longest)],
                       device=device)
    optimizer = StackedSGD(model.parameters(), num, cfg.momentum, cfg.weight_decay)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    final_stats: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    model.train()
    b, (c, h, w) = cfg.batch_size, splits.train_images.shape[1:]
    data_s = compute_s = 0.0
    for step in range(longest):
        t0 = time.perf_counter()
        x = augment(splits.normalise(splits.train_images[index[step]]).view(num * b, c, h, w),
                    step_params(params, step), cfg)
        x = x.view(num, b, c, h, w).transpose(0, 1).reshape(b, num * c, h, w).contiguous(memory_format=CHANNELS_LAST)
        y = splits.train_y[index[step]].T  # [B, K]
        t1 = time.perf_counter()
        with autocast(cfg, device):
            logits = forward(x)  # [B, K, classes]
            # the sum over models of each model's mean loss: every model gets its own gradient
            loss = F.cross_entropy(logits.transpose(1, 2), y, label_smoothing=cfg.label_smoothing, reduction="none")
        optimizer.zero_grad()
        loss.mean(0).sum().backward()
        optimizer.step(lrs[step])
        for k in (k for k, n in enumerate(steps) if n == step + 1 and n < longest):
            final_stats[k] = [(m.running_mean.view(num, -1)[k].clone(), m.running_var.view(num, -1)[k].clone())
                              for m in norms]
        t2 = time.perf_counter()
        data_s += t1 - t0
        compute_s += t2 - t1
    with torch.no_grad():
        for k, stats in final_stats.items():
            for m, (mean, var) in zip(norms, stats):
                m.running_mean.view(num, -1)[k] = mean
                m.running_var.view(num, -1)[k] = var
    t3 = time.perf_counter()
    margins, _ = evaluate(model, splits.target_x.repeat(1, num, 1, 1), splits.target_y[:, None].expand(-1, num), cfg)
    _, correct = evaluate(model, splits.holdout_x.repeat(1, num, 1, 1), splits.holdout_y[:, None].expand(-1, num), cfg)
    margins = margins.float().cpu().numpy()  # [T, K]
    for k, seed in enumerate(seeds):
        check_margins(margins[:, k], seed)
    end = time.perf_counter()
    share = {"data": data_s / num, "compute": compute_s / num, "eval": (end - t3) / num}
    return [TrainResult(np.ascontiguousarray(margins[:, k]), float(correct[:, k].float().mean()),
                        (end - start) / num, dict(share)) for k in range(num)]
