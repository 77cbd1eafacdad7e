"""Network architectures, chosen by name (``model=`` in the configs)."""

from __future__ import annotations

import torch
from torch import nn

MODELS = ("small_cnn", "resnet9")


def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class SmallCNN(nn.Module):
    """A small CNN sized for 8x8 digits: two 3x3 conv-BN-ReLU layers, a 2x2 pool, a third,
    a global max-pool and a linear head (batch norm makes small-subset training stable)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 16):
        super().__init__()
        self.net = nn.Sequential(
            _conv_bn(in_channels, width), _conv_bn(width, 2 * width), nn.MaxPool2d(2),
            _conv_bn(2 * width, 2 * width),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(),
            nn.Linear(2 * width, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(_conv_bn(channels, channels), _conv_bn(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNet9(nn.Module):
    """The ResNet-9 of the CIFAR-10 speed runs (Page's DAWNBench net, as used by the datamodels
    and FFCV CIFAR examples): prep conv, three stages with max-pooling, two residual blocks,
    global max-pool, a linear head scaled by 1/8. ``width`` scales every layer (64 at 1.0)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: float = 1.0):
        super().__init__()
        c = [max(1, round(k * width)) for k in (64, 128, 256, 512)]
        self.net = nn.Sequential(
            _conv_bn(in_channels, c[0]),
            _conv_bn(c[0], c[1]), nn.MaxPool2d(2), _Residual(c[1]),
            _conv_bn(c[1], c[2]), nn.MaxPool2d(2),
            _conv_bn(c[2], c[3]), nn.MaxPool2d(2), _Residual(c[3]),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(),
            nn.Linear(c[3], num_classes, bias=False),
        )
        self.scale = 0.125  # keeps initial logits small, as in the speed-run recipes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * self.scale


def build_model(name: str, in_channels: int, num_classes: int, **options) -> nn.Module:
    builders = {"small_cnn": SmallCNN, "resnet9": ResNet9}
    if name not in builders:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return builders[name](in_channels=in_channels, num_classes=num_classes, **options)
