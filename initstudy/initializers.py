"""Named weight initializers, applied to a built model from outside, driven by the run's init generator.

Each entry of `INITIALIZERS` says which options it takes (with defaults), which
gain it uses, its formula and source for the report, the weight std its formula
predicts, and a check that rejects layers it cannot initialise. Per-layer
methods fill one weight at a time; `lsuv`, `zero` and `fixup` work on the whole
model (LSUV needs a batch of training data).

Fans are group-aware: for a conv weight (out, in/groups, kh, kw),
fan_in = in/groups * kh * kw and fan_out = out/groups * kh * kw (torch counts
fan_out = out * kh * kw, which overstates it for grouped and depthwise convs).

A user's initializer (`package.module:fn` or an entry point, see plugins.py) is wrapped
as an `Initializer` by `get_initializer`: per layer `fn(weight, *, fan_in, fan_out, gain,
generator, **options)` with gain the activation's (or the entry's `gain`), or, marked with
`initstudy.whole_model`, `fn(model, *, generator, batch, activation, **options)` with the
activation's name; its docstring's first line is its formula, `fn.std` its theory.

The registry is plain data: torch (and scipy) are imported when an initializer runs, so that
reading a study needs neither.

Biases follow the spec's bias policy: "zeros" (the default), "torch" (torch's
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), the default for `default`) or a constant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

from .models import ACTIVATIONS, get_model

if TYPE_CHECKING:
    import torch
    from torch import nn


def _layer_types() -> tuple:
    """The layers an initializer fills: conv and linear."""
    from torch import nn

    return nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear


def __getattr__(name: str):
    if name == "LAYERS":  # made on first use: the registry below is read without torch
        return _layer_types()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


KERAS_TRUNC_CORRECTION = 0.87962566103423978  # std of N(0, 1) truncated to [-2, 2] (Keras VarianceScaling)


def layer_fans(module: nn.Module) -> tuple[int, int]:
    """(fan_in, fan_out) of a conv or linear layer, counting only the connections each unit has."""
    w = module.weight
    receptive = int(np.prod(w.shape[2:])) if w.dim() > 2 else 1
    groups = getattr(module, "groups", 1)
    return int(w.shape[1]) * receptive, int(w.shape[0]) // groups * receptive


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of an ungrouped weight: Linear (out, in) or conv (out, in, *kernel)."""
    receptive = int(np.prod(weight.shape[2:])) if weight.dim() > 2 else 1
    return int(weight.shape[1]) * receptive, int(weight.shape[0]) * receptive


def _pick(fan_in, fan_out, mode):
    return {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]


# ---------------------------------------------------------------- per-weight methods
# fn(w, gain, generator, fan_in, fan_out, **options) fills w in place.

def _zeros(w, gain, g, fi, fo):
    from torch import nn

    nn.init.zeros_(w)


def _ones(w, gain, g, fi, fo):
    from torch import nn

    nn.init.ones_(w)


def _constant(w, gain, g, fi, fo, value):
    from torch import nn

    nn.init.constant_(w, value)


def _normal(w, gain, g, fi, fo, std, mean):
    from torch import nn

    nn.init.normal_(w, mean, std, generator=g)


def _uniform(w, gain, g, fi, fo, bound):
    from torch import nn

    nn.init.uniform_(w, -bound, bound, generator=g)


def _positive(w, gain, g, fi, fo, bound):
    from torch import nn

    nn.init.uniform_(w, 0.0, bound, generator=g)


def _truncated_normal(w, gain, g, fi, fo, std, mean, a, b):
    from torch import nn

    nn.init.trunc_normal_(w, mean, std, a, b, generator=g)


def _sparse(w, gain, g, fi, fo, sparsity, std):
    # torch's sparse_ on the weight viewed as (out, in*k*k): in every column, a fraction of the rows is zeroed.
    import torch
    from torch import nn

    w2 = w.view(w.shape[0], -1)
    rows, cols = w2.shape
    nn.init.normal_(w2, 0.0, std, generator=g)
    n_zero = math.ceil(sparsity * rows)
    if n_zero:
        order = torch.argsort(torch.rand(rows, cols, generator=g), dim=0)[:n_zero]
        w2.scatter_(0, order, 0.0)


def _xavier_uniform(w, gain, g, fi, fo):
    from torch import nn

    a = gain * math.sqrt(6.0 / (fi + fo))
    nn.init.uniform_(w, -a, a, generator=g)


def _xavier_normal(w, gain, g, fi, fo):
    from torch import nn

    nn.init.normal_(w, 0.0, gain * math.sqrt(2.0 / (fi + fo)), generator=g)


def _kaiming_uniform(w, gain, g, fi, fo, mode):
    from torch import nn

    a = gain * math.sqrt(3.0 / _pick(fi, fo, mode))
    nn.init.uniform_(w, -a, a, generator=g)


def _kaiming_normal(w, gain, g, fi, fo, mode):
    from torch import nn

    nn.init.normal_(w, 0.0, gain / math.sqrt(_pick(fi, fo, mode)), generator=g)


def _lecun_uniform(w, gain, g, fi, fo):
    from torch import nn

    a = gain * math.sqrt(3.0 / fi)
    nn.init.uniform_(w, -a, a, generator=g)


def _lecun_normal(w, gain, g, fi, fo):
    from torch import nn

    nn.init.normal_(w, 0.0, gain / math.sqrt(fi), generator=g)


def _variance_scaling(w, gain, g, fi, fo, scale, mode, distribution):
    from torch import nn

    var = scale / _pick(fi, fo, mode)
    if distribution == "truncated_normal":
        std = math.sqrt(var) / KERAS_TRUNC_CORRECTION  # cut at 2 std, then the survivors have std sqrt(var)
        nn.init.trunc_normal_(w, 0.0, std, -2 * std, 2 * std, generator=g)
    elif distribution == "untruncated_normal":
        nn.init.normal_(w, 0.0, math.sqrt(var), generator=g)
    else:
        a = math.sqrt(3.0 * var)
        nn.init.uniform_(w, -a, a, generator=g)


def _orthogonal(w, gain, g, fi, fo):
    from torch import nn

    nn.init.orthogonal_(w, gain=gain, generator=g)


def _dirac(w, gain, g, fi, fo):
    from torch import nn

    if w.dim() == 2:
        nn.init.eye_(w)
    else:
        nn.init.dirac_(w)


def _delta_orthogonal(w, gain, g, fi, fo):
    import torch
    from torch import nn

    if w.dim() == 2:
        nn.init.orthogonal_(w, gain=gain, generator=g)
        return
    nn.init.zeros_(w)
    centre = tuple(k // 2 for k in w.shape[2:])
    tap = torch.empty(w.shape[0], w.shape[1])
    nn.init.orthogonal_(tap, gain=gain, generator=g)
    w[(slice(None), slice(None), *centre)] = tap


def _torch_default(w, gain, g, fi, fo):
    from torch import nn

    nn.init.uniform_(w, -1 / math.sqrt(fi), 1 / math.sqrt(fi), generator=g)  # kaiming_uniform, a = sqrt(5)


def zero_matrix(p: int, q: int) -> torch.Tensor:
    """ZerO's deterministic P x Q matrix (Zhao et al. 2022, Algorithm 1).

    P = Q: identity; P < Q: partial identity; P > Q: c I* H_m I* with
    m = ceil(log2 P) and c = 2^(-(m-1)/2), H_m the 2^m Hadamard matrix.
    """
    import torch
    from scipy.linalg import hadamard

    if p <= q:
        return torch.eye(p, q)
    m = math.ceil(math.log2(p))
    h = torch.tensor(hadamard(2 ** m), dtype=torch.float32)
    return 2 ** (-(m - 1) / 2) * h[:p, :q]


# ---------------------------------------------------------------- whole-model methods

def _layers(model: nn.Module) -> list[nn.Module]:
    layers = _layer_types()
    return [m for m in model.modules() if isinstance(m, layers)]


def _lsuv(model, spec, activation, g, batch, tol, max_iter):
    """Mishkin & Matas (2015): orthonormal init, then scale each layer in forward order to unit output std."""
    from torch import nn

    for layer in _layers(model):
        nn.init.orthogonal_(layer.weight, gain=1.0, generator=g)
        _set_bias(layer, spec, g)
    if batch is None:
        raise ValueError("lsuv needs a batch of training data")
    was_training = model.training
    model.eval()
    for layer in _layers(model):
        seen = {}
        hook = layer.register_forward_hook(lambda m, i, o: seen.__setitem__("std", float(o.std())))
        for _ in range(max_iter):
            model(batch)
            std = seen["std"]
            if not math.isfinite(std) or std == 0 or abs(std - 1.0) < tol:
                break
            layer.weight.div_(std)
        hook.remove()
    model.train(was_training)


def _residual_last(model) -> set[int]:
    from .nets import BasicBlock

    return {id(b.conv2) for b in model.modules() if isinstance(b, BasicBlock)}


def _zero(model, spec, activation, g, batch):
    """ZerO (Zhao et al. 2022): Algorithm 1 on every layer (centre tap for convs); last conv of each
    residual branch zero."""
    from torch import nn

    last = _residual_last(model)
    for layer in _layers(model):
        w = layer.weight
        nn.init.zeros_(w)
        if id(layer) not in last:
            mat = zero_matrix(w.shape[0], w.shape[1])
            if w.dim() == 2:
                w.copy_(mat)
            else:
                w[(slice(None), slice(None), *(k // 2 for k in w.shape[2:]))] = mat
        _set_bias(layer, spec, g)


def _fixup(model, spec, activation, g, batch):
    """Fixup (Zhang et al. 2019): classifier and the last layer of each residual branch zero; the other
    branch layers He-normal scaled by L^(-1/(2m-2)) with L branches of m = 2 layers; scalar biases 0,
    multipliers 1; stem and projection shortcuts He-normal."""
    from torch import nn

    from .nets import BasicBlock, Scalar

    blocks = [b for b in model.modules() if isinstance(b, BasicBlock)]
    gain = resolve_gain(spec, activation)
    scale = len(blocks) ** (-1.0 / (2 * 2 - 2))
    inside = {id(b.conv1) for b in blocks}
    last = {id(b.conv2) for b in blocks}
    layers = _layers(model)
    for layer in layers:
        fi, _ = layer_fans(layer)
        if id(layer) in last or layer is layers[-1]:
            nn.init.zeros_(layer.weight)
        else:
            nn.init.normal_(layer.weight, 0.0, gain / math.sqrt(fi), generator=g)
            if id(layer) in inside:
                layer.weight.mul_(scale)
        _set_bias(layer, spec, g)
    for s in model.modules():
        if isinstance(s, Scalar):
            nn.init.zeros_(s.value) if s.mode == "bias" else nn.init.ones_(s.value)


# ---------------------------------------------------------------- applicability checks

def _check_delta_orthogonal(model: nn.Module, model_name: str) -> str | None:
    layers = _layer_types()
    for name, m in model.named_modules():
        if isinstance(m, layers) and m.weight.dim() > 2 and m.weight.shape[1] > m.weight.shape[0]:
            return (f"delta_orthogonal needs out >= in channels for an orthogonal centre tap, but layer "
                    f"{name} of {model_name} maps {m.weight.shape[1]} to {m.weight.shape[0]}")
    return None


def _check_residual(model: nn.Module, model_name: str) -> str | None:
    if not get_model(model_name).residual:
        return f"fixup needs residual branches; model {model_name!r} has none (use resnet)"
    return None


# ---------------------------------------------------------------- theory

def _truncnorm_std(std, mean, a, b):
    from scipy import stats

    return float(stats.truncnorm.std((a - mean) / std, (b - mean) / std, loc=mean, scale=std))


def _orth_std(gain, shape):
    rows, cols = shape[0], int(np.prod(shape[1:]))
    return gain / math.sqrt(max(rows, cols))


@dataclass(frozen=True)
class Initializer:
    name: str
    fn: Callable  # per-weight: fn(w, gain, g, fan_in, fan_out, **options); whole-model: fn(model, spec, act, g, batch, **options)
    options: dict = field(default_factory=dict)  # option -> default value
    gain: str = "none"  # "none": gain 1 unless overridden; "activation": the activation's gain; "fixed": no gain
    formula: str = ""  # plain-text formula for the report's methods section
    source: str = ""
    whole_model: bool = False
    bias: str = "zeros"  # default bias policy
    # theory(gain, fan_in, fan_out, shape, **options) -> predicted weight std, or None when it is not one number
    theory: Callable | None = None
    check: Callable[[nn.Module, str], str | None] | None = None
    module: str = ""  # a plugin's module ("" for a built-in)
    plugin: object = None  # plugins.Plugin of a user's initializer, None for a built-in


INITIALIZERS: dict[str, Initializer] = {i.name: i for i in [
    Initializer("zeros", _zeros, gain="fixed", formula="W = 0", source="baseline",
                theory=lambda g, fi, fo, sh: 0.0),
    Initializer("ones", _ones, gain="fixed", formula="W = 1", source="baseline", theory=lambda g, fi, fo, sh: 0.0),
    Initializer("constant", _constant, {"value": 0.1}, gain="fixed", formula="W = value", source="baseline",
                theory=lambda g, fi, fo, sh, value: 0.0),
    Initializer("normal", _normal, {"std": 0.01, "mean": 0.0}, gain="fixed", formula="W ~ N(mean, std^2)",
                source="fixed-scale Gaussian", theory=lambda g, fi, fo, sh, std, mean: std),
    Initializer("uniform", _uniform, {"bound": 0.05}, gain="fixed", formula="W ~ U(-bound, bound)",
                source="Keras RandomUniform default bound",
                theory=lambda g, fi, fo, sh, bound: bound / math.sqrt(3)),
    Initializer("positive", _positive, {"bound": 0.05}, gain="fixed", formula="W ~ U(0, bound)",
                source="\"Neural Network Weight Initialization\" (web article), section Positive Initialization",
                theory=lambda g, fi, fo, sh, bound: bound / math.sqrt(12)),
    Initializer("truncated_normal", _truncated_normal, {"std": 0.02, "mean": 0.0, "a": -2.0, "b": 2.0},
                gain="fixed", formula="W ~ N(mean, std^2) redrawn outside [a, b] (absolute cut-offs, as torch)",
                source="torch.nn.init.trunc_normal_",
                theory=lambda g, fi, fo, sh, std, mean, a, b: _truncnorm_std(std, mean, a, b)),
    Initializer("sparse", _sparse, {"sparsity": 0.1, "std": 0.01}, gain="fixed",
                formula="W ~ N(0, std^2), then ceil(sparsity * rows) entries of each column of the (out, in*k*k) "
                        "view set to 0", source="Martens 2010; torch.nn.init.sparse_",
                theory=lambda g, fi, fo, sh, sparsity, std: std * math.sqrt(1 - math.ceil(sparsity * sh[0]) / sh[0])),
    Initializer("xavier_uniform", _xavier_uniform, gain="none",
                formula="W ~ U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)), gain = 1",
                source="Glorot & Bengio 2010", theory=lambda g, fi, fo, sh: g * math.sqrt(2 / (fi + fo))),
    Initializer("xavier_normal", _xavier_normal, gain="none",
                formula="W ~ N(0, gain^2 * 2 / (fan_in + fan_out)), gain = 1",
                source="Glorot & Bengio 2010", theory=lambda g, fi, fo, sh: g * math.sqrt(2 / (fi + fo))),
    Initializer("kaiming_uniform", _kaiming_uniform, {"mode": "fan_in"}, gain="activation",
                formula="W ~ U(-a, a), a = gain * sqrt(3 / fan), gain = activation gain",
                source="He et al. 2015", theory=lambda g, fi, fo, sh, mode: g / math.sqrt(_pick(fi, fo, mode))),
    Initializer("kaiming_normal", _kaiming_normal, {"mode": "fan_in"}, gain="activation",
                formula="W ~ N(0, gain^2 / fan), gain = activation gain", source="He et al. 2015",
                theory=lambda g, fi, fo, sh, mode: g / math.sqrt(_pick(fi, fo, mode))),
    Initializer("lecun_uniform", _lecun_uniform, gain="none", formula="W ~ U(-a, a), a = gain * sqrt(3 / fan_in), "
                "gain = 1", source="LeCun et al. 1998, Efficient BackProp",
                theory=lambda g, fi, fo, sh: g / math.sqrt(fi)),
    Initializer("lecun_normal", _lecun_normal, gain="none", formula="W ~ N(0, gain^2 / fan_in), gain = 1",
                source="LeCun et al. 1998, Efficient BackProp", theory=lambda g, fi, fo, sh: g / math.sqrt(fi)),
    Initializer("variance_scaling", _variance_scaling,
                {"scale": 1.0, "mode": "fan_in", "distribution": "truncated_normal"}, gain="fixed",
                formula="Keras VarianceScaling: var = scale / n (n = fan_in, fan_out or their mean); truncated_normal "
                        "draws N(0, (sqrt(var) / 0.87962566)^2) cut at 2 std; untruncated_normal N(0, var); "
                        "uniform U(-sqrt(3 var), sqrt(3 var))", source="Keras initializers.VarianceScaling",
                theory=lambda g, fi, fo, sh, scale, mode, distribution: math.sqrt(scale / _pick(fi, fo, mode))),
    Initializer("orthogonal", _orthogonal, gain="activation",
                formula="W (flattened to out x in*k*k) = gain * a random (semi-)orthogonal matrix, "
                        "gain = activation gain", source="Saxe et al. 2014",
                theory=lambda g, fi, fo, sh: _orth_std(g, sh)),
    Initializer("dirac", _dirac, gain="fixed", formula="conv: identity at the kernel centre (torch dirac_); "
                "linear: identity (partial when not square)", source="identity initialization; torch.nn.init.dirac_"),
    Initializer("delta_orthogonal", _delta_orthogonal, gain="activation",
                formula="conv: centre tap = gain * random orthogonal (out x in), other taps 0; linear: orthogonal",
                source="Xiao et al. 2018", check=_check_delta_orthogonal),
    Initializer("default", _torch_default, gain="fixed", bias="torch",
                formula="W ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))",
                source="torch nn.Conv2d / nn.Linear reset_parameters (kaiming_uniform, a = sqrt(5))",
                theory=lambda g, fi, fo, sh: 1 / math.sqrt(3 * fi)),
    Initializer("lsuv", _lsuv, {"tol": 0.1, "max_iter": 10}, gain="fixed", whole_model=True,
                formula="orthonormal W, then per layer in forward order W /= std(layer output on a training batch) "
                        "until |std - 1| < tol (at most max_iter times)", source="Mishkin & Matas 2015"),
    Initializer("zero", _zero, gain="fixed", whole_model=True,
                formula="deterministic: identity, partial identity, or c * I* H_m I* (Hadamard) per layer, at the "
                        "conv centre tap; last conv of each residual branch 0", source="Zhao et al. 2022 (ZerO)"),
    Initializer("fixup", _fixup, gain="activation", whole_model=True,
                formula="classifier and last conv of each residual branch 0; other branch convs He-normal times "
                        "L^(-1/(2m-2)) (L branches, m = 2); scalar biases 0, multipliers 1",
                source="Zhang et al. 2019 (Fixup)", check=_check_residual),
]}

def _plugin_initializer(name: str) -> Initializer:
    """A user's initializer (import path or entry point) behind the built-ins' calling convention."""
    from .plugins import lookup

    plugin = lookup("initializer", name)
    fn = plugin.fn
    if plugin.whole:
        def run(model, spec, activation, g, batch, **options):
            fn(model, generator=g, batch=batch, activation=activation, **options)
    else:
        def run(w, gain, g, fi, fo, **options):
            fn(w, fan_in=fi, fan_out=fo, gain=gain, generator=g, **options)
    std = getattr(fn, "std", None)
    theory = None if not callable(std) or plugin.whole else (
        lambda gain, fi, fo, shape, **options: std(fi, fo, gain, **options))
    return Initializer(name, run, {}, gain="activation", formula=plugin.doc, source=plugin.module,
                       whole_model=plugin.whole, theory=theory, module=plugin.module, plugin=plugin)


def get_initializer(name: str) -> Initializer:
    """The built-in initializer `name`, or a user's one named by import path or entry point (ValueError)."""
    if name in INITIALIZERS:
        return INITIALIZERS[name]
    return _plugin_initializer(name)


_OPTION_CHOICES = {"mode": ("fan_in", "fan_out", "fan_avg"),
                   "distribution": ("truncated_normal", "untruncated_normal", "uniform")}
_OPTION_LIMITS = {"std": (0, False), "bound": (0, False), "sparsity": (0, True), "tol": (0, False),
                  "max_iter": (1, True), "scale": (0, False)}  # option -> (low, low allowed)


@dataclass(frozen=True)
class InitSpec:
    """An initializer with its options resolved; `label` names the arm in results."""

    name: str
    options: tuple[tuple[str, object], ...] = ()  # sorted (option, value) pairs, defaults filled in
    gain: float | None = None  # explicit override; None means the initializer's own rule
    label: str = ""
    bias: object = None  # "zeros", "torch" or a number; None means the initializer's default

    def to_dict(self) -> dict:
        return {"name": self.name, "options": dict(self.options), "gain": self.gain, "label": self.label,
                "bias": self.bias}


def _check_option(name: str, key: str, value):
    if key in _OPTION_CHOICES:
        if value not in _OPTION_CHOICES[key]:
            raise ValueError(f"initializer {name!r}: {key} must be one of {', '.join(_OPTION_CHOICES[key])}")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"initializer {name!r}: option {key} must be a finite number, got {value!r}")
    if key in _OPTION_LIMITS:
        low, inclusive = _OPTION_LIMITS[key]
        if value < low or (value == low and not inclusive) or (key == "sparsity" and value >= 1):
            raise ValueError(f"initializer {name!r}: option {key} out of range, got {value!r}")
    if key == "max_iter" and not isinstance(value, int):
        raise ValueError(f"initializer {name!r}: max_iter must be an integer, got {value!r}")


def make_spec(name: str, options: dict | None = None, gain: float | None = None,
              label: str | None = None, bias=None) -> InitSpec:
    """Check `name` and `options` against the registry and fill in defaults (raises ValueError)."""
    from .plugins import is_reference

    options = dict(options or {})
    if name not in INITIALIZERS:
        from .errors import StudyError
        from .plugins import check_options

        try:
            init = get_initializer(name)
        except StudyError as exc:
            if is_reference(name) or not str(exc).startswith("unknown initializer"):
                raise
            raise ValueError(f"unknown initializer {name!r}; choose one of: {', '.join(INITIALIZERS)} (or name "
                             "your own as package.module:function)") from None
        filled = check_options("initializer", init.plugin, options)
        gain = _check_gain(name, gain)
        bias = _check_bias(name, bias)
        if not label:
            shown = {k: v for k, v in options.items() if init.plugin.options.get(k) != v}
            if gain is not None:
                shown["gain"] = gain
            if bias is not None and bias != init.bias:
                shown["bias"] = bias
            label = name.rpartition(":")[2] + ("(" + ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) + ")"
                                               if shown else "")
        return InitSpec(name, tuple(sorted(filled.items())), gain, label, None if bias == init.bias else bias)
    init = INITIALIZERS[name]
    unknown = set(options) - set(init.options)
    if unknown:
        allowed = ", ".join(init.options) or "none"
        raise ValueError(f"initializer {name!r} takes no option {sorted(unknown)[0]!r} (its options: {allowed}; "
                         "every initializer also takes gain, bias and label)")
    for key, value in options.items():
        _check_option(name, key, value)
    filled = {**init.options, **options}
    if name == "truncated_normal" and not filled["a"] < filled["mean"] < filled["b"]:
        raise ValueError("initializer 'truncated_normal': need a < mean < b")
    if gain is not None and init.gain == "fixed":
        raise ValueError(f"initializer {name!r} has no gain; remove 'gain'")
    gain, bias = _check_gain(name, gain), _check_bias(name, bias)
    if not label:
        shown = {k: v for k, v in options.items() if init.options[k] != v}
        if gain is not None:
            shown["gain"] = gain
        if bias is not None and bias != init.bias:
            shown["bias"] = bias
        label = name + ("(" + ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) + ")" if shown else "")
    return InitSpec(name, tuple(sorted(filled.items())), gain, label, None if bias == init.bias else bias)


def _check_gain(name: str, gain):
    if gain is None:
        return None
    if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not gain > 0 or not math.isfinite(gain):
        raise ValueError(f"initializer {name!r}: gain must be a positive number, got {gain!r}")
    return float(gain)


def _check_bias(name: str, bias):
    if bias is not None and bias not in ("zeros", "torch") and (
            isinstance(bias, bool) or not isinstance(bias, (int, float)) or not math.isfinite(bias)):
        raise ValueError(f"initializer {name!r}: bias must be zeros, torch or a number, got {bias!r}")
    return bias


def resolve_gain(spec: InitSpec, activation: str) -> float:
    """The gain the initializer uses with this activation (1 for gain-free methods)."""
    if spec.gain is not None:
        return spec.gain
    if get_initializer(spec.name).gain == "activation":
        return ACTIVATIONS[activation].gain
    return 1.0


def bias_policy(spec: InitSpec):
    return get_initializer(spec.name).bias if spec.bias is None else spec.bias


def _set_bias(layer: nn.Module, spec: InitSpec, g: torch.Generator) -> None:
    from torch import nn

    if layer.bias is None:
        return
    policy = bias_policy(spec)
    if policy == "torch":
        bound = 1 / math.sqrt(layer_fans(layer)[0])
        nn.init.uniform_(layer.bias, -bound, bound, generator=g)
    else:
        nn.init.constant_(layer.bias, 0.0 if policy == "zeros" else float(policy))


def check_applicable(spec: InitSpec, model: nn.Module, model_name: str) -> str | None:
    """The reason `spec` cannot initialise `model`, or None."""
    check = get_initializer(spec.name).check
    return check(model, model_name) if check else None


def theoretical_std(spec: InitSpec, layer: nn.Module, activation: str) -> float | None:
    """The weight std the initializer's formula predicts for `layer`, or None (data-dependent or structured)."""
    init = get_initializer(spec.name)
    if init.theory is None:
        return None
    fi, fo = layer_fans(layer)
    return float(init.theory(resolve_gain(spec, activation), fi, fo, tuple(layer.weight.shape), **dict(spec.options)))


def apply_init(model: nn.Module, spec: InitSpec, activation: str, generator: torch.Generator,
               batch: torch.Tensor | None = None) -> nn.Module:
    """Initialise every conv and linear layer of `model` in module (forward) order; returns `model`.

    `batch` (N, C, H, W) is a batch of training images, needed by data-dependent methods (lsuv).
    """
    import torch

    init = get_initializer(spec.name)
    options = dict(spec.options)
    with torch.no_grad():
        if init.whole_model:
            init.fn(model, spec, activation, generator, batch, **options)
            return model
        gain = resolve_gain(spec, activation)
        for layer in _layers(model):
            fi, fo = layer_fans(layer)
            init.fn(layer.weight, gain, generator, fi, fo, **options)
            _set_bias(layer, spec, generator)
    return model
