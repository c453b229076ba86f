"""CNN builders. Each returns a plain `nn.Module` and leaves its weights to the initializer.

Builders take (in_channels, image_size, num_classes, activation, **params); the
params each model accepts are declared in `MODELS` so study files are checked
when they are loaded. A user's builder (`package.module:fn` or an entry point) gets the
activation as a zero-argument factory instead of its name (`get_model`).

The registries are plain data and the builders import torch when called, so that reading a study
or a run store (status, analyze, report) needs no torch; the layers live in nets.py.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class Activation:
    name: str
    layer: str  # the torch.nn class, named so that the registry needs no torch
    gain: float  # torch.nn.init.calculate_gain for this nonlinearity
    args: tuple = ()  # the layer's arguments

    @property
    def make(self) -> Callable[[], nn.Module]:
        """A zero-argument factory of the activation layer, e.g. `nn.ReLU`."""
        from torch import nn

        cls = getattr(nn, self.layer)
        return functools.partial(cls, *self.args) if self.args else cls


LEAKY_SLOPE = 0.01  # nn.LeakyReLU's default negative slope

# Gains are torch's calculate_gain table. Two documented choices: SELU uses torch's 3/4
# (chosen there to keep gradients stable with kaiming inits; self-normalisation itself
# wants lecun_normal, which has no gain). GELU is not in torch's table: we use ReLU's
# sqrt(2), since GELU(x) tends to ReLU(x) away from 0 and passes about half the
# second moment of a symmetric input, as ReLU does.
ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation("relu", "ReLU", 2.0 ** 0.5),
    "leaky_relu": Activation("leaky_relu", "LeakyReLU", (2.0 / (1 + LEAKY_SLOPE ** 2)) ** 0.5, (LEAKY_SLOPE,)),
    "tanh": Activation("tanh", "Tanh", 5.0 / 3.0),
    "sigmoid": Activation("sigmoid", "Sigmoid", 1.0),
    "selu": Activation("selu", "SELU", 0.75),
    "gelu": Activation("gelu", "GELU", 2.0 ** 0.5),
    "identity": Activation("identity", "Identity", 1.0),
}


def build_simple(in_channels: int, image_size: int, num_classes: int, activation: str) -> nn.Module:
    """Two conv blocks (3x3 conv, activation, 2x2 max-pool) of 16 and 32 channels, then a linear head."""
    from torch import nn

    act = ACTIVATIONS[activation].make
    side = image_size // 4
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1), act(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), act(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * side * side, num_classes),
    )


def build_plain(in_channels: int, image_size: int, num_classes: int, activation: str,
                depth: int = 6, width: int = 16, bn: bool = False, widen: bool = False) -> nn.Module:
    """`depth` 3x3 convs of `width` channels with the activation after each, no normalisation.

    2x2 max-pools after the 2nd and 4th conv (images of 16 pixels or more) keep deep
    stacks cheap: the layers past the 4th run at a quarter of the input resolution.
    A linear head follows. `bn` adds BatchNorm after each conv; `widen` doubles the
    channels after each pool (the VGG pattern).
    """
    from torch import nn

    act = ACTIVATIONS[activation].make
    pools = {min(2, depth), min(4, depth)} if image_size >= 16 else set()
    layers: list[nn.Module] = []
    channels, side, out = in_channels, image_size, width
    for i in range(1, depth + 1):
        layers.append(nn.Conv2d(channels, out, 3, padding=1, bias=not bn))
        if bn:
            layers.append(nn.BatchNorm2d(out))
        layers.append(act())
        channels = out
        if i in pools:
            layers.append(nn.MaxPool2d(2))
            side //= 2
            out = out * 2 if widen else out
    layers += [nn.Flatten(), nn.Linear(channels * side * side, num_classes)]
    return nn.Sequential(*layers)


def build_vgg(in_channels: int, image_size: int, num_classes: int, activation: str,
              depth: int = 8, width: int = 16, bn: bool = True) -> nn.Module:
    """VGG-style: `plain` with channels doubling after each pool and optional BatchNorm."""
    return build_plain(in_channels, image_size, num_classes, activation, depth, width, bn=bn, widen=True)


def build_resnet(in_channels: int, image_size: int, num_classes: int, activation: str,
                 depth: int = 8, width: int = 16, bn: bool = True) -> nn.Module:
    from .nets import ResNet

    return ResNet(in_channels, image_size, num_classes, activation, depth, width, bn)


def _check_resnet(params: dict) -> str | None:
    d = params["depth"]
    return None if d >= 8 and (d - 2) % 6 == 0 else f"resnet depth must be 6n + 2 (8, 14, 20, 26, ...), got {d}"


@dataclass(frozen=True)
class Model:
    name: str
    build: Callable[..., nn.Module]
    params: dict  # accepted keyword -> default
    description: str
    residual: bool = False  # has residual branches (Fixup applies)
    check: Callable[[dict], str | None] = lambda params: None  # a reason the params are invalid, or None


MODELS: dict[str, Model] = {
    "simple": Model("simple", build_simple, {},
                    "two conv blocks (16 and 32 channels, 3x3, max-pool) and a linear head"),
    "plain": Model("plain", build_plain, {"depth": 6, "width": 16},
                   "a plain stack of 3x3 convs, no normalisation or skip connections, max-pools after conv 2 "
                   "and 4, linear head"),
    "vgg": Model("vgg", build_vgg, {"depth": 8, "width": 16, "bn": True},
                 "VGG-style 3x3 conv stack, channels doubling after the max-pools after conv 2 and 4, "
                 "optional BatchNorm after each conv, linear head"),
    "resnet": Model("resnet", build_resnet, {"depth": 8, "width": 16, "bn": True},
                    "CIFAR-style ResNet (depth 6n+2, three stages of basic blocks, widths w, 2w, 4w, 1x1 "
                    "projection shortcuts), optional BatchNorm, global average pool, linear head",
                    residual=True, check=_check_resnet),
}


def _plugin_model(name: str) -> Model:
    """A user's model builder (import path or entry point) behind the built-ins' calling convention.

    The builder gets the activation as a zero-argument factory, e.g. `nn.ReLU`, and must return an nn.Module.
    """
    from .plugins import lookup

    plugin = lookup("model", name)

    def build(in_channels, image_size, num_classes, activation, **params):
        from torch import nn

        net = plugin.fn(in_channels, image_size, num_classes, ACTIVATIONS[activation].make, **params)
        if not isinstance(net, nn.Module):
            raise TypeError(f"model {name!r} returned a {type(net).__name__}, not an nn.Module")
        return net

    description = plugin.doc or "user model"
    return Model(name, build, dict(plugin.options), f"{description} ({plugin.module})",
                 residual=bool(getattr(plugin.fn, "initstudy_residual", False)))


def get_model(name: str) -> Model:
    """The built-in model `name`, or a user's one named by import path or entry point (StudyError)."""
    if name in MODELS:
        return MODELS[name]
    return _plugin_model(name)


def build_model(name: str, in_channels: int, image_size: int, num_classes: int, activation: str,
                **params) -> nn.Module:
    model = get_model(name)
    kwargs = {k: params.get(k, v) for k, v in model.params.items()}
    return model.build(in_channels, image_size, num_classes, activation, **kwargs)


def __getattr__(name: str):
    """The layers of nets.py under their former home (`from initstudy.models import ResNet`)."""
    if name in ("Scalar", "BasicBlock", "ResNet"):
        from . import nets

        return getattr(nets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
