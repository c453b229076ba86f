"""Datasets for initstudy: fn(data_dir, split_seed) -> (x_train, y_train, x_val, y_val, num_classes)."""

import torch


def blobs(data_dir, split_seed):
    """400 noisy 4x4 images of 2 classes (class 1 brighter), 300 train / 100 validation"""
    g = torch.Generator().manual_seed(split_seed)
    y = torch.arange(400) % 2
    x = torch.randn(400, 1, 4, 4, generator=g) + y.view(-1, 1, 1, 1).float()
    return {"x_train": x[:300], "y_train": y[:300], "x_val": x[300:], "y_val": y[300:], "num_classes": 2}
