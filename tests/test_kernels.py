"""The memory format changes a run's bits, not what a study finds.

Channels-last kernels sum in another order than NCHW's, so the same spec trains to other weights in the last
bits (a run's numbers are reproducible within a version, not across kernel changes). Seeds trained in both
formats must then show the same outcomes: paired differences in final accuracy and in epochs to the study's
threshold centred on 0, while the same test on a real change (twice the learning rate) finds it. The paired
t-test is stats.paired_t, checked against R's t.test in tests/test_stats.py.
"""

import pickle

import numpy as np
import pytest
import torch

from initstudy.bench import raw_run
from initstudy.config import expand, load_study
from initstudy.stats import paired_t
from initstudy.training import weights_sha256

SEEDS, THRESHOLD = 8, 0.8


def _outcomes(naive: bool, lr: float) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(final val_acc, first epoch reaching THRESHOLD or epochs + 1, final weights' sha) per seed."""
    specs = expand(load_study("smoke", ["initializers=[xavier_normal]", f"seeds={SEEDS}", "epochs=3",
                                        f"lr={lr}", "accelerator=cpu"]))
    acc, reach, sha = [], [], []
    for spec in specs:
        history, net = raw_run(spec, naive=naive)
        curve = [row["val_acc"] for row in history]
        acc.append(curve[-1])
        reach.append(next((e for e, a in enumerate(curve) if a >= THRESHOLD), len(curve)))
        sha.append(weights_sha256(net))
    return np.array(acc), np.array(reach, float), sha


@pytest.fixture(scope="module")
def runs():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {"channels_last": _outcomes(False, 0.01), "nchw": _outcomes(True, 0.01),
                "planted": _outcomes(False, 0.02)}
    finally:
        torch.set_num_threads(threads)


def _same(x: np.ndarray, y: np.ndarray, margin: float) -> bool:
    """No detectable paired difference (p > 0.05, or all differences 0) and a mean difference within margin."""
    _, _, p = paired_t(x, y)
    return abs(float(np.mean(x - y))) <= margin and (p is None or p > 0.05)


def test_the_formats_train_other_bits(runs):
    """Not vacuous: channels-last and NCHW really are other kernels, seed by seed."""
    assert all(a != b for a, b in zip(runs["channels_last"][2], runs["nchw"][2]))


def test_memory_format_leaves_final_accuracy_and_epochs_to_threshold_alike(runs):
    (acc_cl, reach_cl, _), (acc_nchw, reach_nchw, _) = runs["channels_last"], runs["nchw"]
    assert len(set(acc_cl)) > 1  # the seeds differ, so there is a distribution to compare
    assert _same(acc_cl, acc_nchw, margin=0.01)
    assert _same(reach_cl, reach_nchw, margin=0.25)


def test_the_same_check_finds_a_doubled_learning_rate(runs):
    (acc, reach, _), (acc_planted, reach_planted, _) = runs["channels_last"], runs["planted"]
    assert not _same(acc_planted, acc, margin=0.01)
    _, _, p = paired_t(acc_planted, acc)
    assert p is not None and p < 0.01 and np.mean(acc_planted - acc) > 0.02
    assert np.mean(reach_planted) < np.mean(reach)  # and it reaches the threshold sooner


def test_a_dataset_is_laid_out_channels_last_once_and_shared_by_every_run():
    from initstudy.data import Dataset

    g = torch.Generator().manual_seed(0)
    dataset = Dataset("colour", torch.randn(8, 3, 4, 4, generator=g), torch.zeros(8, dtype=torch.long),
                      torch.randn(4, 3, 4, 4, generator=g), torch.zeros(4, dtype=torch.long), 2)
    x_train, x_val = dataset.images(torch.channels_last)
    assert x_train.is_contiguous(memory_format=torch.channels_last) and not x_train.is_contiguous()
    assert torch.equal(x_train, dataset.x_train) and torch.equal(x_val, dataset.x_val)
    assert dataset.images(torch.channels_last)[0] is x_train  # a second run copies nothing
    assert dataset.images(torch.contiguous_format)[0] is dataset.x_train
    shipped = pickle.loads(pickle.dumps(dataset))  # as to a Ray task: the data, not this process's copies
    assert "_by_format" not in shipped.__dict__ and torch.equal(shipped.x_train, dataset.x_train)
