"""The benchmark's two sides compute the same thing, and its synthetic store is analysable.

Speed itself is checked by `make bench` against a baseline measured in the same run, never here.
"""

import copy
import os

import pytest
import torch

from initstudy.bench import (bench_executor, check_targets, flops_per_image, pack_runs, paired_seconds,
                             peak_fp32_tflops, raw_run,
                             synthetic_store)
from initstudy.config import expand, load_study
from initstudy.data import load_dataset
from initstudy.training import build_run, train_run, weights_sha256


@pytest.mark.parametrize("overrides", [["optimizer=sgd"], ["optimizer=adam"], ["models=[vgg]", "lr=0.05"],
                                       ["eval_every=0.25", "epochs=2"]])
def test_lightning_path_equals_raw_loop(overrides):
    """Lightning adds bookkeeping, not arithmetic: bit for bit the hand-written loop's history and weights on CPU.

    The raw loop is plain PyTorch, so this pins every change to the training path (manual optimization,
    on-device sums) to the numbers the run would have without Lightning. vgg has BatchNorm buffers.
    """
    spec = expand(load_study("smoke", ["seeds=[4]", "initializers=[kaiming_normal]", "lr=0.01",
                                       "accelerator=cpu", *overrides]))[0]
    ours = train_run(spec, None, "cpu")
    history, net = raw_run(spec)
    assert ours.history == history and len(history) == 1 + spec.epochs * round(1 / spec.eval_every)
    assert ours.final_sha256 == weights_sha256(net) != ours.init_sha256


def test_raw_loop_trains_channels_last_on_the_cpu_and_the_naive_loop_nchw():
    """The ratio compares like kernels (initstudy's), the speedup initstudy's against torch's default layout;
    both loops train the same run, to the same numbers up to float32 rounding."""
    spec = expand(load_study("smoke", ["seeds=[2]", "initializers=[kaiming_normal]", "epochs=2"]))[0]
    ours = train_run(spec, None, "cpu")
    history, raw = raw_run(spec)
    naive_history, naive = raw_run(spec, naive=True)
    conv = [m.weight for m in raw.modules() if isinstance(m, torch.nn.Conv2d)][1]  # 16 -> 32 channels
    naive_conv = [m.weight for m in naive.modules() if isinstance(m, torch.nn.Conv2d)][1]
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert naive_conv.is_contiguous()
    assert ours.history == history and ours.final_sha256 == weights_sha256(raw) != weights_sha256(naive)
    for a, b in zip(history, naive_history):
        assert a["val_acc"] == pytest.approx(b["val_acc"], abs=0.02)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-3)


def test_lightning_takes_one_step_an_epoch_and_every_minibatch_steps_the_optimizer():
    """The speed of the training path rests on Lightning's per-step loop running once an epoch: a train loader
    Lightning read as several loaders (a plain list did) would silently step per minibatch again."""
    import pytorch_lightning as pl
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from initstudy.training import InitStudyModule, TensorDataModule, quiet_lightning

    spec = expand(load_study("smoke", ["seeds=[0]", "initializers=[kaiming_normal]", "epochs=2"]))[0]
    dataset = load_dataset(spec.dataset, None, spec.split_seed)
    calls = []

    class Counting(InitStudyModule):
        def training_step(self, epoch, batch_idx):
            calls.append(len(epoch))
            return super().training_step(epoch, batch_idx)

    steps = []
    hook = register_optimizer_step_post_hook(lambda opt, args, kwargs: steps.append(opt))
    try:
        with quiet_lightning():
            trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=2, barebones=True, num_sanity_val_steps=0)
            module = Counting(build_run(spec, dataset), spec)
            trainer.fit(module, datamodule=TensorDataModule(dataset, spec.batch_size, 1))
    finally:
        hook.remove()
    minibatches = -(-len(dataset.y_train) // spec.batch_size)
    assert calls == [minibatches, minibatches]  # one Lightning step an epoch, holding every minibatch
    assert len(steps) == 2 * minibatches and len(module.history) == 3


@pytest.mark.parametrize("earlier", [1000, 256])
def test_evaluation_batch_size_changes_no_trained_weight_and_no_accuracy(monkeypatch, earlier):
    """EVAL_BATCH was cut from 1,000 to 256, then to 128, for speed: the same run trains bit for bit the same
    weights and accuracies at each size; only a mean loss, summed over other batches, moves in float32's
    last bits."""
    import initstudy.training as training

    assert training.EVAL_BATCH not in (1000, 256)
    spec = expand(load_study("smoke", ["seeds=[1]", "initializers=[kaiming_normal]", "lr=0.05",
                                       "accelerator=cpu"]))[0]
    now = train_run(spec, None, "cpu")
    monkeypatch.setattr(training, "EVAL_BATCH", earlier)  # digits: 1,437 train / 360 val images, other batches
    before = train_run(spec, None, "cpu")
    assert now.final_sha256 == before.final_sha256 != now.init_sha256
    assert [r["val_acc"] for r in now.history] == [r["val_acc"] for r in before.history]
    for a, b in zip(now.history, before.history):
        for key in ("train_loss", "val_loss"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=0)


def test_bench_times_initstudy_on_its_default_schedule_and_the_naive_loop_one_run_at_a_time(tmp_path, monkeypatch):
    """The speedup is initstudy as `train` runs it by default (2 runs at once on 2 cores, a thread each) against
    a user's loop in a process of its own; every side times every block, and initstudy's side really trains
    them into the store."""
    from initstudy.bench import NaiveProcess
    from initstudy.executors import InProcess
    from initstudy.store import RunStore

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # make_executor sees a 2-core machine
    study = load_study("smoke", ["seeds=3", "initializers=[kaiming_normal]", "epochs=1"])
    executor = bench_executor(study)
    assert isinstance(executor, InProcess) and (executor.parallel, executor.threads) == (2, 1)
    monkeypatch.undo()
    specs = expand(study)
    naive = NaiveProcess(None, "cpu")
    try:
        assert naive.process.pid != os.getpid()
        took = paired_seconds(specs, study, str(tmp_path), "cpu", sides=("initstudy", "raw", "naive"),
                              executor=executor, naive=naive)
    finally:
        naive.close()
    assert not naive.process.is_alive()
    assert {side: len(t) for side, t in took.items()} == {"initstudy": 2, "raw": 2, "naive": 2}  # blocks of 2, 1
    assert all(t > 0 for side in took.values() for t in side)
    assert all(RunStore(tmp_path, study.name).status(s.run_id) == "done" for s in specs)


def test_weights_sha256_sees_one_changed_bit():
    net = torch.nn.Linear(3, 2)
    before = weights_sha256(net)
    with torch.no_grad():
        net.bias.view(torch.int32)[0] ^= 1
    assert weights_sha256(net) != before
    assert weights_sha256(copy.deepcopy(net)) == weights_sha256(net)


def test_flops_per_image_matches_hand_count():
    # simple on 8x8 digits: conv1 1->16 at 8x8 and conv2 16->32 at 4x4 (3x3), linear 32*2*2 -> 10.
    spec = expand(load_study("smoke", ["seeds=[0]", "initializers=[kaiming_normal]"]))[0]
    macs = 8 * 8 * 16 * 1 * 9 + 4 * 4 * 32 * 16 * 9 + 128 * 10
    # Forward 2*MACs; backward computes weight and input gradients (2x forward), minus the first
    # conv's input gradient, which autograd skips because the images need no gradient.
    expected = 2 * macs * 3 - 2 * (8 * 8 * 16 * 9)
    assert flops_per_image(spec) == pytest.approx(expected, rel=0.01)


def test_synthetic_store_has_1000_runs_and_analyses(tmp_path):
    from initstudy.pipeline import analyze_study
    from initstudy.report import build_report

    study = synthetic_store(tmp_path, n_inits=3, n_seeds=4, epochs=5)
    results, tidy, _, missing = analyze_study(study, tmp_path)
    assert not missing and len(tidy) == 3 * 4 * 6
    assert results.cells[0].design == "paired"
    html = build_report(study, tmp_path).html  # runs without diagnostics render without the signal figure
    assert "Signal propagation at initialization" not in html and "Kaplan-Meier" in html
    assert "no initialization diagnostics" in html


def test_targets_are_checked_both_ways():
    good = {"device": "cpu", "ratio": 0.97, "speedup_vs_naive": 1.6, "per_run_overhead_s": 0.1, "analyze_1000_runs_s": 5,
            "report_1000_runs_s": 9, "report_pdf_1000_runs_s": 20, "report_imported_1000_runs_s": 9}
    assert all(check_targets(good).values())
    bad = {**good, "ratio": 0.9, "speedup_vs_naive": 1.4, "per_run_overhead_s": 0.2, "report_pdf_1000_runs_s": 61,
           "report_imported_1000_runs_s": 61}
    assert check_targets(bad) == {"ratio": False, "speedup_vs_naive": False, "per_run_overhead_s": False, "analyze_1000_runs_s": True,
                                  "report_1000_runs_s": True, "report_pdf_1000_runs_s": False,
                                  "report_imported_1000_runs_s": False}


def test_gpu_targets_replace_the_cpu_ones_on_cuda():
    gpu = {"device": "cuda:0", "ratio": 0.92, "per_run_overhead_s": 0.5, "packed_speedup": 5.0,
           "packed_init_identical": True, "analyze_1000_runs_s": 5, "report_1000_runs_s": 9,
           "report_pdf_1000_runs_s": 20, "report_imported_1000_runs_s": 9}
    assert all(check_targets(gpu).values())  # the CPU's per-run overhead bound does not apply
    assert "speedup_vs_naive" not in check_targets(gpu)  # a GPU trains NCHW, as the naive loop does
    ok = check_targets({**gpu, "packed_speedup": 3.0, "packed_init_identical": False})
    assert not ok["packed_speedup"] and not ok["packed_init_identical"] and ok["ratio"]


def test_peak_fp32_prefers_the_longest_matching_name():
    assert peak_fp32_tflops("NVIDIA H100 PCIe") == 51.2
    assert peak_fp32_tflops("NVIDIA H100 80GB HBM3") == 66.9
    assert peak_fp32_tflops("NVIDIA L40S") == 91.6 and peak_fp32_tflops("NVIDIA L4") == 30.3
    assert peak_fp32_tflops("NVIDIA A100-SXM4-80GB") == 19.5 and peak_fp32_tflops("NVIDIA A10G") == 31.2
    assert peak_fp32_tflops("Some Future GPU") is None


@pytest.mark.slow
def test_packed_runs_start_from_the_standalone_weights_and_train_the_same():
    """Two worker processes at once (the packed bench's path): each run's initial weights hash as the model
    built standalone with its seed, and, with one torch thread on both sides, it trains to the same weights."""
    specs = expand(load_study("smoke", ["seeds=3", "initializers=[kaiming_normal, xavier_normal]", "epochs=1",
                                        "accelerator=cpu"]))
    seconds, done = pack_runs(specs[:4], 2, "cpu", [], threads=1)
    assert seconds > 0 and sorted(s.run_id for s, _ in done) == sorted(s.run_id for s in specs[:4])
    dataset = load_dataset(specs[0].dataset, None, specs[0].split_seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for spec, outcome in done:
            assert outcome.info["init_sha256"] == weights_sha256(build_run(spec, dataset))
            assert outcome.info["final_sha256"] == train_run(spec, None, "cpu").final_sha256
    finally:
        torch.set_num_threads(threads)
    # Different seeds really are different weights, so the equalities above are not vacuous.
    assert len({o.info["init_sha256"] for _, o in done}) == 4

