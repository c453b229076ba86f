"""Models for initstudy: fn(in_channels, image_size, num_classes, activation, **params) -> nn.Module."""

from torch import nn


def tiny(in_channels, image_size, num_classes, activation, width=8):
    """one 3x3 conv of `width` channels, the activation, a linear head"""
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), activation(), nn.Flatten(),
                         nn.Linear(width * image_size * image_size, num_classes))
