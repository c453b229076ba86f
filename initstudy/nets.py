"""The torch modules the built-in models are made of.

Imported only when a model is built (models.py), so that reading a study or a run store needs no torch.
"""

from __future__ import annotations

import torch
from torch import nn

from .models import ACTIVATIONS


def _quarters(x: torch.Tensor) -> list[torch.Tensor]:
    """The four positions of every 2x2 window as strided views, in max_pool2d's scan order (row-major)."""
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    return [x[..., i:h:2, j:w:2] for i in (0, 1) for j in (0, 1)]


def _max4(q: list[torch.Tensor]) -> torch.Tensor:
    return torch.maximum(torch.maximum(q[0], q[1]), torch.maximum(q[2], q[3]))


class _MaxPool2x2Fn(torch.autograd.Function):
    """max_pool2d(x, 2) with torch's own backward, its indices found only when a backward needs them."""

    @staticmethod
    def forward(ctx, x):
        out = _max4(_quarters(x))
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, out = ctx.saved_tensors
        q, w = _quarters(x), x.shape[-1]
        # The index max_pool2d records: the window's first maximum in row-major order (its kernel keeps a
        # candidate only when strictly greater). Ties matter: after a ReLU a window is often all zeros.
        # Position k = 0..3 of the first maximum, in uint8: 0 if q0 is it, else 1 + (0 if q1, else 1 + ...).
        k = (q[0] != out).to(torch.uint8) * (1 + (q[1] != out) * (1 + (q[2] != out).to(torch.uint8)))
        offsets = torch.tensor([0, 1, w, w + 1], device=x.device)  # of position k from the window's corner
        corners = (torch.arange(out.shape[-2], device=x.device).view(-1, 1) * (2 * w)
                   + torch.arange(out.shape[-1], device=x.device) * 2)
        index = offsets.index_select(0, k.view(-1).to(torch.int32)).view(k.shape) + corners
        return torch.ops.aten.max_pool2d_with_indices_backward(grad, x, [2, 2], [2, 2], [0, 0], [1, 1], False,
                                                               index)


class MaxPool2x2(nn.MaxPool2d):
    """nn.MaxPool2d(2) with the same numbers and a faster forward on the CPU.

    torch's CPU kernel scans each window element by element and writes an int64 index per output:
    10-12% of a plain CNN's training step on one core and a quarter of its evaluation. The max of
    four strided views is 8x faster; a backward finds the indices from the saved input and output
    and hands them to torch's own backward kernel. Same numbers (tests/test_models.py): equal
    outputs, gradients and trained weights bit for bit. Two edge cases differ: a zero maximum may
    come out as -0.0 where torch gives 0.0 or back (equal values, and the tests train equal weights
    from all-zero ones and with BatchNorm), and a NaN input may send its NaN gradient to another
    position of its window (the run diverges either way).
    """

    def __init__(self):
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or x.dim() != 4:
            return super().forward(x)
        if torch.is_grad_enabled() and x.requires_grad:
            return _MaxPool2x2Fn.apply(x)
        return _max4(_quarters(x))


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
