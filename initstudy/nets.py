"""The torch modules the built-in models are made of.

Imported only when a model is built (models.py), so that reading a study or a run store needs no torch.
"""

from __future__ import annotations

import torch
from torch import nn

from .models import ACTIVATIONS


class Scalar(nn.Module):
    """A learnable scalar added (`mode="bias"`) or multiplied (`"scale"`): Fixup's extra parameters.

    It starts as the identity (0 or 1), so a model without Fixup computes what it would without it.
    """

    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode
        self.value = nn.Parameter(torch.zeros(1) if mode == "bias" else torch.ones(1))

    def forward(self, x):
        return x + self.value if self.mode == "bias" else x * self.value


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or 1x1 projection) shortcut, as in He et al. (2016)."""

    def __init__(self, c_in: int, c_out: int, stride: int, act, bn: bool):
        super().__init__()
        norm = (lambda c: nn.BatchNorm2d(c)) if bn else (lambda c: nn.Identity())
        # Without BatchNorm the block carries Fixup's scalar biases and multiplier, starting as the
        # identity, for every initializer alike: arms then differ only in their weights.
        scalar = (lambda mode: nn.Identity()) if bn else Scalar
        self.bias1a, self.bias1b, self.bias2a, self.bias2b = (scalar("bias") for _ in range(4))
        self.scale = scalar("scale")
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1, self.act1 = norm(c_out), act()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2, self.act2 = norm(c_out), act()
        self.shortcut = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), norm(c_out))
                         if stride != 1 or c_in != c_out else nn.Identity())

    def forward(self, x):
        out = self.act1(self.bias1b(self.bn1(self.conv1(self.bias1a(x)))))
        out = self.bias2b(self.scale(self.bn2(self.conv2(self.bias2a(out)))))
        return self.act2(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR-style ResNet (He et al. 2016, sec. 4.2): depth = 6n + 2, three stages of n blocks."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int, activation: str,
                 depth: int = 8, width: int = 16, bn: bool = True):
        super().__init__()
        act = ACTIVATIONS[activation].make
        n = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(width) if bn else nn.Identity(), act())
        blocks, c = [], width
        for stage in range(3):
            c_out = width * 2 ** stage
            for b in range(n):
                blocks.append(BasicBlock(c, c_out, 2 if (stage > 0 and b == 0) else 1, act, bn))
                c = c_out
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.bias_fc = nn.Identity() if bn else Scalar("bias")
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.fc(self.bias_fc(self.pool(self.blocks(self.stem(x))).flatten(1)))
