"""Initializers for initstudy: per layer, fn(weight, *, fan_in, fan_out, gain, generator, **options)."""

import math

import torch

import initstudy


def scaled_normal(weight, *, fan_in, fan_out, gain, generator, scale=1.0):
    """W ~ N(0, (scale * gain)^2 / fan_in)"""
    with torch.no_grad():
        weight.normal_(0.0, scale * gain / math.sqrt(fan_in), generator=generator)


# The std the diagnostics compare the drawn weights with.
scaled_normal.std = lambda fan_in, fan_out, gain, scale=1.0: scale * gain / math.sqrt(fan_in)


@initstudy.whole_model
def layer_sequential(model, *, generator, batch, activation, std=0.05):
    """W ~ N(0, std^2) in every conv and linear layer, biases 0"""
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            with torch.no_grad():
                m.weight.normal_(0.0, std, generator=generator)
                if m.bias is not None:
                    m.bias.zero_()
