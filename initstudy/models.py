"""CNN builders. Each returns a plain `nn.Module` and leaves its weights to the initializer.

Builders take (in_channels, image_size, num_classes, activation, **params); the
params each model accepts are declared in `MODELS` so study files are checked
when they are loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn


@dataclass(frozen=True)
class Activation:
    name: str
    make: Callable[[], nn.Module]
    gain: float  # torch.nn.init.calculate_gain for this nonlinearity


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation("relu", nn.ReLU, 2.0 ** 0.5),
    "tanh": Activation("tanh", nn.Tanh, 5.0 / 3.0),
    "sigmoid": Activation("sigmoid", nn.Sigmoid, 1.0),
}


def build_simple(in_channels: int, image_size: int, num_classes: int, activation: str) -> nn.Module:
    """Two conv blocks (3x3 conv, activation, 2x2 max-pool) of 16 and 32 channels, then a linear head."""
    act = ACTIVATIONS[activation].make
    side = image_size // 4
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1), act(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), act(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * side * side, num_classes),
    )


def build_plain(in_channels: int, image_size: int, num_classes: int, activation: str,
                depth: int = 6, width: int = 16) -> nn.Module:
    """`depth` 3x3 convs of `width` channels with the activation after each, no normalisation.

    2x2 max-pools after the 2nd and 4th conv (images of 16 pixels or more) keep deep
    stacks cheap: the layers past the 4th run at a quarter of the input resolution.
    A linear head follows.
    """
    act = ACTIVATIONS[activation].make
    pools = {min(2, depth), min(4, depth)} if image_size >= 16 else set()
    layers: list[nn.Module] = []
    channels, side = in_channels, image_size
    for i in range(1, depth + 1):
        layers += [nn.Conv2d(channels, width, 3, padding=1), act()]
        channels = width
        if i in pools:
            layers.append(nn.MaxPool2d(2))
            side //= 2
    layers += [nn.Flatten(), nn.Linear(width * side * side, num_classes)]
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class Model:
    name: str
    build: Callable[..., nn.Module]
    params: dict  # accepted keyword -> default
    description: str


MODELS: dict[str, Model] = {
    "simple": Model("simple", build_simple, {},
                    "two conv blocks (16 and 32 channels, 3x3, max-pool) and a linear head"),
    "plain": Model("plain", build_plain, {"depth": 6, "width": 16},
                   "a plain stack of 3x3 convs, no normalisation or skip connections, max-pools after conv 2 and 4, linear head"),
}


def build_model(name: str, in_channels: int, image_size: int, num_classes: int, activation: str,
                **params) -> nn.Module:
    model = MODELS[name]
    kwargs = {k: params.get(k, v) for k, v in model.params.items()}
    return model.build(in_channels, image_size, num_classes, activation, **kwargs)
