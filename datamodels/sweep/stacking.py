"""K networks as one: grouped convolutions over the models' stacked channels.

A small network (digits, CIFAR at small widths) leaves the hardware idle between Python calls.
:func:`stack_networks` merges K networks of the same architecture, each initialised exactly as
it would be alone, into one network that computes all K forward passes in the same kernels:

- every ``Conv2d`` becomes one convolution with ``groups * K`` groups, the K weights stacked
  along the output channels;
- every ``BatchNorm2d`` covers ``K * C`` channels: its statistics are per channel, hence per model;
- every ``Linear`` becomes a batched matrix product over the K heads (:class:`StackedLinear`);
- layers without parameters (ReLU, pooling, flatten, residual sums, scaling) act per channel or
  per element and are kept as they are.

The stacked network maps ``[B, K * C, H, W]`` (channel block ``k`` holds model ``k``'s batch) to
logits ``[B, K, classes]``. Every parameter's first axis holds the K models' blocks in order,
so :class:`StackedSGD` can give each model its own learning rate.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class StackedLinear(nn.Module):
    """K linear heads applied to their own slices of ``[B, K * C]``; output ``[B, K, out]``."""

    def __init__(self, heads: list[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([h.weight.detach() for h in heads]))  # [K, out, in]
        self.bias = nn.Parameter(torch.stack([h.bias.detach() for h in heads])) if heads[0].bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, _, c = self.weight.shape
        out = torch.bmm(x.reshape(len(x), k, c).transpose(0, 1), self.weight.transpose(1, 2)).transpose(0, 1)
        return out if self.bias is None else out + self.bias


def _stack_layer(layers: list[nn.Module]) -> nn.Module | None:
    """The stacked version of K corresponding layers, or None for a container or parameter-free layer."""
    first, k = layers[0], len(layers)
    if isinstance(first, nn.Conv2d):
        conv = nn.Conv2d(first.in_channels * k, first.out_channels * k, first.kernel_size, first.stride,
                         first.padding, first.dilation, first.groups * k, first.bias is not None, first.padding_mode)
        with torch.no_grad():
            conv.weight.copy_(torch.cat([m.weight for m in layers]))
            if first.bias is not None:
                conv.bias.copy_(torch.cat([m.bias for m in layers]))
        return conv
    if isinstance(first, nn.BatchNorm2d):
        norm = nn.BatchNorm2d(first.num_features * k, first.eps, first.momentum, first.affine,
                              first.track_running_stats)
        with torch.no_grad():
            for name, _ in list(norm.named_parameters()) + list(norm.named_buffers()):
                if name != "num_batches_tracked":
                    getattr(norm, name).copy_(torch.cat([getattr(m, name) for m in layers]))
        return norm
    if isinstance(first, nn.Linear):
        return StackedLinear(layers)
    if any(True for _ in first.parameters(recurse=False)) or any(True for _ in first.buffers(recurse=False)):
        raise TypeError(f"cannot stack {type(first).__name__} layers: only Conv2d, BatchNorm2d and Linear "
                        f"carry parameters in a stackable network")
    return None


def _stack_children(target: nn.Module, sources: list[nn.Module]) -> None:
    for name, _ in list(target.named_children()):
        layers = [getattr(s, name) for s in sources]
        stacked = _stack_layer(layers)
        if stacked is None:
            _stack_children(getattr(target, name), layers)
        else:
            setattr(target, name, stacked)


def stack_networks(nets: list[nn.Module]) -> nn.Module:
    """One network computing the K networks ``nets`` (same architecture) side by side."""
    if len({type(n) for n in nets}) != 1:
        raise TypeError("only networks of one architecture can be stacked")
    stacked = copy.deepcopy(nets[0])
    if _stack_layer([stacked]) is not None:
        raise TypeError(f"stack a network of layers, not a single {type(stacked).__name__}")
    _stack_children(stacked, nets)
    return stacked


class StackedSGD:
    """SGD with Nesterov momentum and (coupled) weight decay over stacked parameters, with a
    learning rate per model: the arithmetic of ``torch.optim.SGD(nesterov=True)`` applied blockwise."""

    def __init__(self, params, num_models: int, momentum: float, weight_decay: float):
        self.params = [p for p in params if p.requires_grad]
        self.k = num_models
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.buffers = [torch.zeros_like(p) for p in self.params]
        # the lr of model k broadcast over its block of a parameter: its rows along the first axis
        self.blocks = [(p.shape[0] // num_models, (-1,) + (1,) * (p.dim() - 1)) for p in self.params]

    @torch.no_grad()
    def step(self, lr: torch.Tensor) -> None:
        """One update with learning rates ``lr [K]`` (zero leaves a model's weights as they are)."""
        grads = [p.grad for p in self.params]
        if self.weight_decay:
            torch._foreach_add_(grads, self.params, alpha=self.weight_decay)
        torch._foreach_mul_(self.buffers, self.momentum)
        torch._foreach_add_(self.buffers, grads)
        torch._foreach_add_(grads, self.buffers, alpha=self.momentum)
        torch._foreach_mul_(grads, [lr.repeat_interleave(rows).view(shape) for rows, shape in self.blocks])
        torch._foreach_sub_(self.params, grads)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None
