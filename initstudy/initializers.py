"""Named weight initializers, applied to a built model from outside, driven by the run's init generator.

Each entry of `INITIALIZERS` says which options it takes (with defaults), whether
it uses a gain and which, and its formula and source for the report. Fans are
torch's: for a conv weight (out, in/groups, kh, kw), fan_in = in/groups*kh*kw and
fan_out = out*kh*kw. Biases are set to zero, except by `default`, which
reproduces torch's own `reset_parameters` for weights and biases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from .models import ACTIVATIONS

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a Linear (out, in) or conv (out, in/groups, *kernel) weight."""
    return nn.init._calculate_fan_in_and_fan_out(weight)


# Each function fills `w` in place: fn(w, gain, generator, **options).
def _zeros(w, gain, g):
    nn.init.zeros_(w)


def _constant(w, gain, g, value):
    nn.init.constant_(w, value)


def _normal(w, gain, g, std, mean):
    nn.init.normal_(w, mean=mean, std=std, generator=g)


def _uniform(w, gain, g, bound):
    nn.init.uniform_(w, -bound, bound, generator=g)


def _xavier_uniform(w, gain, g):
    nn.init.xavier_uniform_(w, gain=gain, generator=g)


def _xavier_normal(w, gain, g):
    nn.init.xavier_normal_(w, gain=gain, generator=g)


def _fan(w, mode):
    fan_in, fan_out = fans(w)
    return fan_in if mode == "fan_in" else fan_out


def _kaiming_uniform(w, gain, g, mode):
    bound = gain * math.sqrt(3.0 / _fan(w, mode))
    nn.init.uniform_(w, -bound, bound, generator=g)


def _kaiming_normal(w, gain, g, mode):
    nn.init.normal_(w, 0.0, gain / math.sqrt(_fan(w, mode)), generator=g)


def _lecun_normal(w, gain, g):
    nn.init.normal_(w, 0.0, gain / math.sqrt(fans(w)[0]), generator=g)


def _orthogonal(w, gain, g):
    nn.init.orthogonal_(w, gain=gain, generator=g)


def _torch_default(w, gain, g):
    nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=g)  # bound 1/sqrt(fan_in)


@dataclass(frozen=True)
class Initializer:
    name: str
    fn: Callable
    options: dict = field(default_factory=dict)  # option -> default value
    gain: str = "none"  # "none": gain 1; "activation": the activation's gain; "fixed": no gain option
    formula: str = ""  # plain-text formula for the report's methods section
    source: str = ""


INITIALIZERS: dict[str, Initializer] = {i.name: i for i in [
    Initializer("zeros", _zeros, gain="fixed", formula="W = 0", source="baseline"),
    Initializer("constant", _constant, {"value": 0.1}, gain="fixed", formula="W = value",
                source="baseline"),
    Initializer("normal", _normal, {"std": 0.01, "mean": 0.0}, gain="fixed",
                formula="W ~ N(mean, std^2)", source="fixed-scale Gaussian"),
    Initializer("uniform", _uniform, {"bound": 0.05}, gain="fixed", formula="W ~ U(-bound, bound)",
                source="Keras RandomUniform default bound"),
    Initializer("xavier_uniform", _xavier_uniform, gain="none",
                formula="W ~ U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)), gain = 1",
                source="Glorot & Bengio 2010"),
    Initializer("xavier_normal", _xavier_normal, gain="none",
                formula="W ~ N(0, gain^2 * 2 / (fan_in + fan_out)), gain = 1",
                source="Glorot & Bengio 2010"),
    Initializer("kaiming_uniform", _kaiming_uniform, {"mode": "fan_in"}, gain="activation",
                formula="W ~ U(-a, a), a = gain * sqrt(3 / fan), gain = activation gain",
                source="He et al. 2015"),
    Initializer("kaiming_normal", _kaiming_normal, {"mode": "fan_in"}, gain="activation",
                formula="W ~ N(0, gain^2 / fan), gain = activation gain", source="He et al. 2015"),
    Initializer("lecun_normal", _lecun_normal, gain="none", formula="W ~ N(0, gain^2 / fan_in), gain = 1",
                source="LeCun et al. 1998, Efficient BackProp"),
    Initializer("orthogonal", _orthogonal, gain="activation",
                formula="W (flattened to out x in*k*k) = gain * a random (semi-)orthogonal matrix, "
                        "gain = activation gain", source="Saxe et al. 2014"),
    Initializer("default", _torch_default, gain="fixed",
                formula="W ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))",
                source="torch nn.Conv2d / nn.Linear reset_parameters (kaiming_uniform, a = sqrt(5))"),
]}

_OPTION_CHOICES = {"mode": ("fan_in", "fan_out")}


@dataclass(frozen=True)
class InitSpec:
    """An initializer with its options resolved; `label` names the arm in results."""

    name: str
    options: tuple[tuple[str, object], ...] = ()  # sorted (option, value) pairs, defaults filled in
    gain: float | None = None  # explicit override; None means the initializer's own rule
    label: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "options": dict(self.options), "gain": self.gain, "label": self.label}


def make_spec(name: str, options: dict | None = None, gain: float | None = None,
              label: str | None = None) -> InitSpec:
    """Check `name` and `options` against the registry and fill in defaults (raises ValueError)."""
    if name not in INITIALIZERS:
        raise ValueError(f"unknown initializer {name!r}; choose one of: {', '.join(INITIALIZERS)}")
    init = INITIALIZERS[name]
    options = dict(options or {})
    unknown = set(options) - set(init.options)
    if unknown:
        allowed = ", ".join(init.options) or "none"
        raise ValueError(f"initializer {name!r} takes no option {sorted(unknown)[0]!r} (its options: {allowed})")
    for key, choices in _OPTION_CHOICES.items():
        if key in options and options[key] not in choices:
            raise ValueError(f"initializer {name!r}: {key} must be one of {', '.join(choices)}")
    for key, value in options.items():
        if key != "mode" and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not math.isfinite(value)):
            raise ValueError(f"initializer {name!r}: option {key} must be a finite number, got {value!r}")
    if gain is not None:
        if init.gain == "fixed":
            raise ValueError(f"initializer {name!r} has no gain; remove 'gain'")
        if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not gain > 0:
            raise ValueError(f"initializer {name!r}: gain must be a positive number, got {gain!r}")
        gain = float(gain)
    if not label:
        shown = {k: v for k, v in options.items() if init.options[k] != v}
        if gain is not None:
            shown["gain"] = gain
        label = name + ("(" + ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) + ")" if shown else "")
    filled = {**init.options, **options}
    return InitSpec(name, tuple(sorted(filled.items())), gain, label)


def resolve_gain(spec: InitSpec, activation: str) -> float:
    """The gain the initializer uses with this activation (1 for gain-free methods)."""
    if spec.gain is not None:
        return spec.gain
    if INITIALIZERS[spec.name].gain == "activation":
        return ACTIVATIONS[activation].gain
    return 1.0


@torch.no_grad()
def apply_init(model: nn.Module, spec: InitSpec, activation: str, generator: torch.Generator) -> nn.Module:
    """Initialise every conv and linear layer of `model` in forward (module) order; returns `model`."""
    init = INITIALIZERS[spec.name]
    gain = resolve_gain(spec, activation)
    options = dict(spec.options)
    for module in model.modules():
        if not isinstance(module, _LAYERS):
            continue
        init.fn(module.weight, gain, generator, **options)
        if module.bias is not None:
            if spec.name == "default":
                bound = 1.0 / math.sqrt(fans(module.weight)[0]) if fans(module.weight)[0] > 0 else 0.0
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)
            else:
                nn.init.zeros_(module.bias)
    return model
