"""Init-time diagnostics: how the signal and its gradient scale layer by layer before any training.

`layer_diagnostics` runs one forward and backward pass of a copy of the model
(so the model itself, its gradients and BatchNorm statistics are untouched) on a
batch of real training images and returns one dict per conv/linear layer in
forward (execution) order:

- `weight_std` and `weight_std_theory` (what the initializer's formula predicts; None if
  it is structured or data-dependent),
- `activation_std`: std of the layer's output on the batch,
- `gradient_std`: std of d(loss)/d(layer output), the back-propagated signal,
- `weight_grad_std`: std of d(loss)/d(weight),
- `dead_fraction`: with ReLU, the fraction of the layer's output channels whose following
  ReLU outputs zero for every image and position (None for other activations).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from .initializers import LAYERS, InitSpec, layer_fans, theoretical_std


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def layer_diagnostics(model: nn.Module, spec: InitSpec, activation: str, x: torch.Tensor,
                      y: torch.Tensor) -> list[dict]:
    """Per-layer statistics of `model` at its current weights on images `x` (N, C, H, W), labels `y` (N,)."""
    net = copy.deepcopy(model)
    net.train()
    order: list[tuple[str, nn.Module, torch.Tensor]] = []  # (kind, module, output) in execution order
    hooks = []
    for name, m in net.named_modules():
        if isinstance(m, LAYERS):
            def hook(mod, inp, out, name=name):
                out.retain_grad()
                order.append(("layer", name, mod, out))
            hooks.append(m.register_forward_hook(hook))
        elif isinstance(m, nn.ReLU):
            hooks.append(m.register_forward_hook(lambda mod, inp, out: order.append(("relu", None, mod, out))))
    try:
        loss = F.cross_entropy(net(x), y)
        loss.backward()
    finally:
        for h in hooks:
            h.remove()
    rows = []
    for i, (kind, name, mod, out) in enumerate(order):
        if kind != "layer":
            continue
        dead = None
        if activation == "relu":
            nxt = next((o for o in order[i + 1:] if o[0] == "relu" or o[0] == "layer"), None)
            if nxt is not None and nxt[0] == "relu":
                act = nxt[3].detach()
                per_channel = act.transpose(0, 1).reshape(act.shape[1], -1) if act.dim() > 1 else act[None]
                dead = float((per_channel.abs().amax(dim=1) == 0).float().mean())
        fi, fo = layer_fans(mod)
        w = mod.weight.detach()
        grad = out.grad
        rows.append({
            "index": len(rows), "name": name, "kind": type(mod).__name__, "shape": list(w.shape),
            "fan_in": fi, "fan_out": fo,
            "weight_std": _finite(float(w.std())), "weight_std_theory": theoretical_std(spec, mod, activation),
            "activation_std": _finite(float(out.detach().std())),
            "gradient_std": _finite(float(grad.std())) if grad is not None else None,
            "weight_grad_std": _finite(float(mod.weight.grad.std())) if mod.weight.grad is not None else None,
            "dead_fraction": dead,
        })
    return rows
