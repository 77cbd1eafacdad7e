"""Training batches: which kept examples every SGD step sees, and how they reach the device.

Batch order. The kept examples are shuffled afresh every epoch, the epochs are laid end to end
and the stream is cut into full batches: ``ceil(epochs * kept / batch_size)`` steps (or
``train.steps``). Full batches give every step the same gradient noise whatever the mask's
size, and let the batches of K models trained in one pass (:mod:`datamodels.sweep.stacking`) be
stacked. Epoch ``e`` is the stream's positions ``[e * kept, (e + 1) * kept)``: every kept
example exactly once.

Subset semantics (as in the airbench loader): the permutations are drawn over *positions* in the
kept list from a generator seeded by the training seed, so the same seed with a different mask
changes only which examples are seen, not the order of the draws nor the augmentation.

Loaders (``loader=`` in the configs; :func:`datamodels.sweep.stage.make_loader` picks one):

- ``resident`` (default, :class:`ResidentLoader`): the train split's uint8 images live on the
  device as one tensor; a batch is one gather, then normalisation and augmentation (flips,
  translations, cutout) applied to the whole batch on the device.
- ``ffcv`` (:mod:`datamodels.sweep.ffcv_loader`): the split written once to a ``.beton`` and read by
  FFCV's loader; the same augmentation, drawn from the same generator, is applied after loading.

Augmentation parameters are drawn up front for all steps from a generator seeded by the
training seed, so a model's augmentation does not depend on the loader, nor on which other
models share its pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .data import PreparedData



@dataclass
class ResidentSplits:
    """The splits on one device: the train split as uint8 ``[N, C, H, W]`` (normalised per batch),
    the target and holdout splits as normalised float tensors (evaluated whole)."""

    train_images: torch.Tensor  # uint8 [N, C, H, W]
    train_y: torch.Tensor
    mean: torch.Tensor  # float [1, C, 1, 1], of the train split's pixels in [0, 1]
    std: torch.Tensor
    target_x: torch.Tensor
    target_y: torch.Tensor
    holdout_x: torch.Tensor
    holdout_y: torch.Tensor
    num_classes: int

    @property
    def in_channels(self) -> int:
        return self.train_images.shape[1]

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images ``[..., C, H, W]`` as float, with the train split's channel statistics."""
        return (images.float() / 255.0 - self.mean) / self.std


def to_device(data: PreparedData, device: str | torch.device = "cpu") -> ResidentSplits:
    """Move every split to ``device`` once."""
    train = data.images("train").astype(np.float32) / 255.0
    mean = train.mean(axis=(0, 1, 2))
    std = train.std(axis=(0, 1, 2)) + 1e-6
    stats = [torch.from_numpy(s.astype(np.float32)).reshape(1, -1, 1, 1).to(device) for s in (mean, std)]

    def chw(split: str) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(data.images(split).transpose(0, 3, 1, 2))).to(device)

    def labels(split: str) -> torch.Tensor:
        return torch.from_numpy(data.labels(split)).to(device)

    splits = ResidentSplits(chw("train"), labels("train"), *stats, None, labels("target"), None, labels("holdout"),
                            data.num_classes)
    splits.target_x = splits.normalise(chw("target"))
    splits.holdout_x = splits.normalise(chw("holdout"))
    return splits


def total_steps(num_kept: int, cfg) -> int:
    """SGD steps of a model trained on ``num_kept`` examples (``cfg`` is a TrainConfig)."""
    if cfg.steps is not None:
        return cfg.steps
    return math.ceil(cfg.epochs * num_kept / cfg.batch_size)


def epochs_spanned(num_kept: int, steps: int, batch_size: int) -> int:
    """Epochs the stream must hold for ``steps`` full batches."""
    return math.ceil(steps * batch_size / num_kept)


def batch_order(num_kept: int, steps: int, batch_size: int, gen: torch.Generator) -> torch.Tensor:
    """Positions (into the kept examples) of every batch, ``[steps, batch_size]``: epochs of fresh
    permutations laid end to end. A longer ``steps`` extends the same stream."""
    epochs = epochs_spanned(num_kept, steps, batch_size)
    stream = torch.cat([torch.randperm(num_kept, generator=gen) for _ in range(epochs)])
    return stream[:steps * batch_size].view(steps, batch_size)


def draw_augmentation(cfg, steps: int, batch_size: int, shape: tuple[int, int], gen: torch.Generator) -> dict:
    """Every step's augmentation parameters, drawn per example: ``flip [steps, B]``, ``shift``
    and ``cutout`` ``[steps, 2, B]`` (rows, columns)."""
    h, w = shape
    size = (steps, batch_size)
    params = {}
    if cfg.flip:
        params["flip"] = torch.rand(size, generator=gen) < 0.5
    if cfg.translate:
        params["shift"] = torch.randint(0, 2 * cfg.translate + 1, (steps, 2, batch_size), generator=gen)
    if cfg.cutout:
        c = min(cfg.cutout, h, w)
        params["cutout"] = torch.stack([torch.randint(0, h - c + 1, size, generator=gen),
                                        torch.randint(0, w - c + 1, size, generator=gen)], dim=1)
    return params


def step_params(params: dict, step: int) -> dict:
    """The parameters of one step (with a models axis first when K models are stacked)."""
    return {k: v[step] for k, v in params.items()}


def augment(x: torch.Tensor, params: dict, cfg) -> torch.Tensor:
    """Flips, translations (zero fill) and cutout (a zeroed square) applied to the whole batch
    ``x [N, C, H, W]``; ``params`` hold one step's draws, flattened to ``N`` examples."""
    n, c, h, w = x.shape
    device = x.device
    if "flip" in params:
        x = torch.where(params["flip"].reshape(n, 1, 1, 1).to(device), x.flip(3), x)
    if "shift" in params:
        t = cfg.translate
        dy, dx = params["shift"].movedim(-2, 0).reshape(2, n).to(device)
        rows = (dy[:, None] + torch.arange(h, device=device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=device))[:, None, None, :]
        x = F.pad(x, (t, t, t, t))[torch.arange(n, device=device)[:, None, None, None],
                                   torch.arange(c, device=device)[None, :, None, None], rows, cols]
    if "cutout" in params:
        size = min(cfg.cutout, h, w)
        y0, x0 = params["cutout"].movedim(-2, 0).reshape(2, n).to(device)
        r = torch.arange(h, device=device)[None, :]
        k = torch.arange(w, device=device)[None, :]
        inside = (((r >= y0[:, None]) & (r < y0[:, None] + size))[:, :, None]
                  & ((k >= x0[:, None]) & (k < x0[:, None] + size))[:, None, :])
        x = x.masked_fill(inside[:, None], 0.0)
    return x


class ResidentLoader:
    """Batches gathered from the device-resident split (see the module docstring)."""

    def __init__(self, splits: ResidentSplits):
        self.splits = splits

    def plan(self, kept: np.ndarray, seed: int, cfg, steps: int | None = None) -> tuple[torch.Tensor, dict]:
        """Split indices ``[steps, B]`` of every batch and the augmentation parameters of a model.

        ``steps`` beyond the model's own count extend its stream (a pass of several models runs
        until the longest is done) without changing the draws of its own steps."""
        own = total_steps(len(kept), cfg)
        steps = own if steps is None else steps
        positions = batch_order(len(kept), steps, cfg.batch_size, torch.Generator().manual_seed(seed))
        aug_gen = torch.Generator().manual_seed(seed)
        shape = tuple(self.splits.train_images.shape[2:])
        params = draw_augmentation(cfg, own, cfg.batch_size, shape, aug_gen)
        if steps > own:
            extra = draw_augmentation(cfg, steps - own, cfg.batch_size, shape, aug_gen)
            params = {k: torch.cat([v, extra[k]]) for k, v in params.items()}
        return torch.as_tensor(kept, dtype=torch.long)[positions], params

    def batches(self, kept: np.ndarray, seed: int, cfg) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Normalised, augmented ``(x, y)`` of every step of one model."""
        index, params = self.plan(kept, seed, cfg)
        index = index.to(self.splits.train_images.device)
        for step, batch in enumerate(index):
            x = self.splits.normalise(self.splits.train_images[batch])
            yield augment(x, step_params(params, step), cfg), self.splits.train_y[batch]
