"""Sweeps that scale and survive: threads, worker processes, Ray, SIGKILL and resume, failed runs, status.

Every sweep here trains with one torch thread per run (--cpus-per-run 1): the
thread count changes the last bits of CPU float sums, so only sweeps with the
same threads per run can be compared number for number.
"""

import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from initstudy.cli import main
from initstudy.config import expand, load_study
from initstudy.data import load_dataset
from initstudy.store import RunStore

from .conftest import write_study

pytestmark = pytest.mark.slow

ONE_THREAD = ["--cpus-per-run", "1"]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "initstudy.cli", *args]


def _histories(runs: Path, study) -> dict:
    store = RunStore(runs, study.name)
    return {s.run_id: store.load(s.run_id).history for s in expand(study)}


def _finished(runs: Path, study) -> list[str]:
    store = RunStore(runs, study.name)
    return [s.run_id for s in expand(study) if store.is_finished(s.run_id)]


def _status(runs: Path, study_file: Path, capsys) -> dict:
    capsys.readouterr()
    assert main(["status", "--study", str(study_file), "--runs-dir", str(runs), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(study file, runs dir): the tiny study trained in this process, one run after another, uninterrupted,
    one thread per run."""
    root = tmp_path_factory.mktemp("reference")
    study_file = write_study(root / "tiny.yaml")
    runs = root / "runs"
    assert main(["train", "--study", str(study_file), "--runs-dir", str(runs), "--parallel", "1", *ONE_THREAD]) == 0
    return study_file, runs


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has exited; only its parent's wait is missing


def _workers(pid: int) -> list[int]:
    """The driver's spawned worker processes (not multiprocessing's resource tracker)."""
    def cmdline(c):
        try:
            return Path(f"/proc/{c}/cmdline").read_bytes()
        except OSError:  # exited since the listing
            return b""

    return [c for c in _children(pid) if b"spawn_main" in cmdline(c)]


def _wait_until(condition, what: str, limit: float = 240, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + limit
    while not condition():
        assert time.time() < deadline, f"gave up waiting until {what}"
        assert proc is None or proc.poll() is None, f"train exited ({proc.returncode}) before {what}"
        time.sleep(0.02)


def test_runs_in_threads_give_the_one_by_one_numbers(reference, tmp_path, capsys):
    """Two runs at once in threads of one process train exactly what one run after another trains: no run
    draws from torch's global generator, which the threads share."""
    ref_file, ref_runs = reference
    study_file = write_study(tmp_path / "tiny.yaml")
    runs = tmp_path / "runs"
    load_dataset("digits").evaluations.clear()  # the threads evaluate epoch 0 themselves, not reuse the reference's
    assert main(["train", "--study", str(study_file), "--runs-dir", str(runs), "--parallel", "2", *ONE_THREAD]) == 0
    assert "in this process, 2 runs at once in threads (1 torch thread each)" in capsys.readouterr().out
    study = load_study(str(study_file))
    assert _histories(runs, study) == _histories(ref_runs, load_study(str(ref_file)))
    store, ref_store = RunStore(runs, study.name), RunStore(ref_runs, study.name)
    for spec in expand(study):
        info, ref_info = store.info(spec.run_id), ref_store.info(spec.run_id)
        assert info["threads"] == 1 and info["parallel"] == 2 and ref_info["parallel"] == 1
        assert (info["init_sha256"], info["final_sha256"]) == (ref_info["init_sha256"], ref_info["final_sha256"])
    assert len({store.info(s.run_id)["final_sha256"] for s in expand(study)}) == len(expand(study))


def test_a_run_ignores_torch_global_generator():
    """What lets runs share a process's global generator: every initializer draws from the run's own generator
    (same weights whatever the global seed), and so does training (same trained weights when it is moved)."""
    from dataclasses import replace

    import torch

    from initstudy.data import load_dataset
    from initstudy.initializers import INITIALIZERS, check_applicable, make_spec
    from initstudy.models import build_model
    from initstudy.training import build_run, train_run, weights_sha256

    spec = expand(load_study("smoke", ["seeds=1", "epochs=1", "dataset=digits", "accelerator=cpu"]))[2]
    dataset = load_dataset(spec.dataset, None, spec.split_seed)
    checked = 0
    for model in ("simple", "plain", "resnet"):
        for name in INITIALIZERS:
            run = replace(spec, model=model, init=make_spec(name))
            if check_applicable(run.init, build_model(model, 1, 8, 10, "relu"), model):
                continue  # e.g. fixup needs residual blocks
            hashes = set()
            for global_seed in (1, 2):
                torch.manual_seed(global_seed)
                hashes.add(weights_sha256(build_run(run, dataset)))
            assert len(hashes) == 1, (model, name)
            checked += 1
    assert checked >= 2 * len(INITIALIZERS)
    a = train_run(spec, dataset=dataset)
    original = torch.manual_seed
    try:
        torch.manual_seed = lambda seed: original(seed + 1)  # train_run's own seeding of it, moved
        b = train_run(spec, dataset=dataset)
    finally:
        torch.manual_seed = original
    assert a.init_sha256 == b.init_sha256 and a.final_sha256 == b.final_sha256 and a.history == b.history


def test_equal_initial_weights_share_one_epoch_0_evaluation(monkeypatch):
    """Zero init gives every seed the same weights, so the second seed reuses the first seed's epoch-0 row and
    still trains what it trains evaluating epoch 0 itself. Its twin: kaiming seeds differ, and each evaluates."""
    from initstudy.training import InitStudyModule, train_run

    specs = expand(load_study("smoke", ["models=[simple]", "activations=[relu]", "initializers=[zeros, kaiming_normal]",
                                        "seeds=2", "epochs=1", "dataset=digits", "accelerator=cpu"]))
    dataset = load_dataset("digits", None, specs[0].split_seed)
    dataset.evaluations.clear()
    passes = []  # the epoch-0 pass over the training images, by (init, seed)
    evaluate = InitStudyModule._evaluate

    def counted(self, batches, stage):
        if stage == "train":
            passes.append((self.spec.init.name, self.spec.seed))
        return evaluate(self, batches, stage)

    monkeypatch.setattr(InitStudyModule, "_evaluate", counted)
    results = {(s.init.name, s.seed): train_run(s, dataset=dataset) for s in specs}
    (z0, z1), (k0, k1) = [[r for (name, _), r in results.items() if name == init] for init in ("zeros", "kaiming_normal")]
    seeds = sorted({s.seed for s in specs})
    assert sorted(passes) == [("kaiming_normal", seeds[0]), ("kaiming_normal", seeds[1]), ("zeros", seeds[0])]
    assert z0.init_sha256 == z1.init_sha256 and z0.history[0] == z1.history[0]
    assert k0.init_sha256 != k1.init_sha256 and k0.history[0] != k1.history[0]
    assert z0.final_sha256 != z1.final_sha256  # the seeds' data orders differ after epoch 0
    dataset.evaluations.clear()
    alone = train_run(next(s for s in specs if s.init.name == "zeros" and s.seed == seeds[1]), dataset=dataset)
    assert passes[-1] == ("zeros", seeds[1])
    assert alone.history == z1.history and alone.final_sha256 == z1.final_sha256


_ARENAS = """
import ctypes, os, re, sys, tempfile
import initstudy.executors as ex
from initstudy.config import expand, load_study
if sys.argv[1] == "off":
    ex.one_heap = lambda: False
specs = expand(load_study("smoke", ["models=[simple]", "seeds=2", "epochs=1", "dataset=digits", "accelerator=cpu"]))
outcomes = [o for kind, _, o in ex.InProcess(None, "cpu", 1, parallel=2).outcomes(specs) if kind == "end"]
assert len(outcomes) == len(specs) >= 4 and all(o.error is None for o in outcomes), outcomes
libc = ctypes.CDLL(None)
libc.fdopen.restype = ctypes.c_void_p
with tempfile.TemporaryFile() as f:
    out = ctypes.c_void_p(libc.fdopen(os.dup(f.fileno()), b"w"))
    libc.malloc_info(0, out)
    libc.fclose(out)
    f.seek(0)
    print(len(re.findall(rb"<heap nr=", f.read())))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc arenas")
def test_runs_in_threads_allocate_from_one_heap():
    """The runs' threads share glibc's main heap (`one_heap`); without it each thread gets an arena of its own."""
    def arenas(mode):
        done = subprocess.run([sys.executable, "-c", _ARENAS, mode], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return int(done.stdout.split()[-1])

    assert arenas("on") == 1
    assert arenas("off") >= 2


def test_closing_a_threaded_sweep_stops_its_runs_within_a_minibatch(tmp_path):
    """Ctrl-C in the driver closes the executor's generator: runs in progress end at their next minibatch,
    their threads are joined, nothing more is yielded, and the caller's torch thread count comes back."""
    import threading

    import torch

    from initstudy.executors import InProcess

    study = load_study(str(write_study(tmp_path / "long.yaml", name="long", epochs=1000, seeds=2)))
    threads_before, alive_before = torch.get_num_threads(), threading.active_count()
    events = InProcess(None, "cpu", 1, parallel=2).outcomes(expand(study))
    assert [next(events)[0], next(events)[0]] == ["start", "start"]
    assert threading.active_count() == alive_before + 2
    time.sleep(1.0)  # both are training: 1,000 epochs of digits take minutes
    began = time.perf_counter()
    events.close()
    assert time.perf_counter() - began < 30
    assert threading.active_count() == alive_before
    assert torch.get_num_threads() == threads_before


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds worker processes through Linux /proc")
def test_sigkill_worker_then_driver_and_resume_gives_the_uninterrupted_runs(reference, tmp_path, capsys):
    ref_file, ref_runs = reference
    study_file = write_study(tmp_path / "tiny.yaml")
    study = load_study(str(study_file))
    runs, total = tmp_path / "runs", len(expand(study))
    cmd = _cli("train", "--study", str(study_file), "--runs-dir", str(runs), "--workers", "2", *ONE_THREAD)
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_until(lambda: len(_finished(runs, study)) >= 1, "a run finished", proc=proc)
            workers = _workers(proc.pid)
            assert len(workers) == 2
            os.kill(workers[0], signal.SIGKILL)  # a worker dies mid-sweep: its run is retried, the rest go on
            _wait_until(lambda: len(_finished(runs, study)) >= 3, "three runs finished", proc=proc)
            workers = _workers(proc.pid)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert workers, (tmp_path / "first.log").read_text()
    _wait_until(lambda: not any(_alive(w) for w in workers), "orphaned workers exited", limit=60)

    finished = _finished(runs, study)
    assert 3 <= len(finished) < total, (tmp_path / "first.log").read_text()
    store = RunStore(runs, study.name)
    snapshot = {r: {f: (store.run_dir(r) / f).read_bytes() for f in ("run.json", "metrics.json", "config.json")}
                for r in finished}
    st = _status(runs, study_file, capsys)
    assert st["total"] == total and st["counts"]["done"] == len(finished)
    assert st["counts"]["pending"] == total - len(finished) and st["eta_seconds"] > 0

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"{total - len(finished)} of {total} runs to train" in again.stdout
    assert sorted(p.name for p in (runs / study.name).iterdir() if p.is_dir()) == sorted(s.run_id for s in
                                                                                           expand(study))
    assert {r: {f: (store.run_dir(r) / f).read_bytes() for f in files} for r, files in snapshot.items()} == snapshot
    assert _histories(runs, study) == _histories(ref_runs, load_study(str(ref_file)))


def test_ray_local_instance_gives_the_local_executor_numbers(reference, tmp_path, capsys):
    ref_file, ref_runs = reference
    study_file = write_study(tmp_path / "tiny.yaml")
    runs = tmp_path / "runs"
    proc = subprocess.run(_cli("train", "--study", str(study_file), "--runs-dir", str(runs), "--executor", "ray",
                               *ONE_THREAD), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "as Ray tasks" in proc.stdout
    study = load_study(str(study_file))
    assert _histories(runs, study) == _histories(ref_runs, load_study(str(ref_file)))
    store = RunStore(runs, study.name)
    assert all(store.info(s.run_id)["threads"] == 1 and store.info(s.run_id)["device"] == "cpu"
               for s in expand(study))
    assert all(store.load_diagnostics(s.run_id) for s in expand(study))
    assert _status(runs, study_file, capsys)["counts"] == {"done": 9, "diverged": 0, "failed": 0, "invalid": 0,
                                                                 "pending": 0}


def test_a_failing_run_is_recorded_the_rest_finish_and_retry_failed_retries_it(reference, tmp_path, monkeypatch,
                                                                                   capsys):
    from initstudy import training

    ref_file, ref_runs = reference
    study_file = write_study(tmp_path / "tiny.yaml", seeds=[0])
    study = load_study(str(study_file))
    runs = tmp_path / "runs"
    victim = expand(study)[1]
    build_run = training.build_run

    def out_of_memory(spec, dataset):
        if spec.run_id == victim.run_id:
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB\n(GPU 0; 8 GiB total capacity)")
        return build_run(spec, dataset)

    monkeypatch.setattr(training, "build_run", out_of_memory)
    args = ["train", "--study", str(study_file), "--runs-dir", str(runs), *ONE_THREAD]
    assert main(args) == 1
    out = capsys.readouterr()
    assert "1 failed" in out.out and "--retry-failed" in out.out
    assert f"run {victim.run_id} (xavier_normal, seed 0) failed: RuntimeError: CUDA out of memory" in out.out
    store = RunStore(runs, study.name)
    info = store.info(victim.run_id)
    assert info["status"] == "failed"
    assert info["error"] == ("RuntimeError: CUDA out of memory. Tried to allocate 20.00 GiB "
                             "(GPU 0; 8 GiB total capacity)")
    assert "Traceback" in info["traceback"] and "out_of_memory" in info["traceback"]
    assert [store.status(s.run_id) for s in expand(study)] == ["done", "failed", "done"]
    st = _status(runs, study_file, capsys)
    assert st["counts"] == {"done": 2, "diverged": 0, "failed": 1, "invalid": 0, "pending": 0}
    assert st["failures"] == [{"run_id": victim.run_id, "initializer": victim.init.label, "seed": 0,
                               "error": info["error"]}]

    # Without --retry-failed a failed run is left alone, and the exit code still says the study is incomplete.
    before = (store.run_dir(victim.run_id) / "run.json").read_bytes()
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "2 of 3 runs finished in" in out and "nothing to train; 1 failed run" in out
    assert (store.run_dir(victim.run_id) / "run.json").read_bytes() == before

    monkeypatch.setattr(training, "build_run", build_run)
    assert main([*args, "--retry-failed"]) == 0
    assert "1 of 3 runs to train" in capsys.readouterr().out
    assert "error" not in store.info(victim.run_id) and store.status(victim.run_id) == "done"
    reference_runs = _histories(ref_runs, load_study(str(ref_file)))
    assert _histories(runs, study) == {r: reference_runs[r] for r in _histories(runs, study)}


def test_status_before_any_run_has_no_estimate(tmp_path, capsys):
    study_file = write_study(tmp_path / "tiny.yaml")
    st = _status(tmp_path / "runs", study_file, capsys)
    assert st == {"total": 9, "counts": {"done": 0, "diverged": 0, "failed": 0, "invalid": 0, "pending": 9},
                  "running": 0, "failures": [], "eta_seconds": None, "invalid": [], "versions": {}}
    assert main(["status", "--study", str(study_file), "--runs-dir", str(tmp_path / "runs")]) == 0
    assert "9 pending" in capsys.readouterr().out
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("options, message", [
    (["--workers", "0"], "--workers must be >= 1"),
    (["--cpus-per-run", "0"], "--cpus-per-run must be >= 1"),
    (["--ray-address", "10.0.0.1:6379"], "--ray-address and --gpus-per-run are for --executor ray"),
    (["--executor", "ray", "--workers", "2"], "--workers and --parallel are for the local executor"),
    (["--executor", "ray", "--parallel", "2"], "--workers and --parallel are for the local executor"),
    (["--parallel", "0"], "--parallel must be >= 1"),
    (["--parallel", "2", "--workers", "2"], "both set how many runs train at once; give one of them"),
    (["--executor", "ray", "--gpus-per-run", "2"], "--gpus-per-run must be in [0, 1]"),
])
def test_bad_executor_options_exit_2_nothing_written(tmp_path, capsys, options, message):
    study_file = write_study(tmp_path / "tiny.yaml")
    runs = tmp_path / "runs"
    assert main(["train", "--study", str(study_file), "--runs-dir", str(runs), *options]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("initstudy train: error:") and message in err[0]
    assert not runs.exists()


def test_a_second_train_of_the_same_store_is_refused(tmp_path, capsys):
    study_file = write_study(tmp_path / "tiny.yaml")
    runs = tmp_path / "runs"
    with RunStore(runs, "tiny").lock():
        assert main(["train", "--study", str(study_file), "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err
    assert "being written by another `initstudy train` (pid" in err
    assert [p.name for p in (runs / "tiny").iterdir()] == [".lock"]


def test_local_default_is_one_thread_run_per_core_on_a_cpu(tmp_path, monkeypatch):
    import torch

    from initstudy.executors import MAX_THREAD_RUNS, InProcess, LocalPool, make_executor

    monkeypatch.setattr(torch, "get_num_threads", lambda: 6)
    study = load_study(str(write_study(tmp_path / "tiny.yaml", accelerator="auto")))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    ex = make_executor(study)
    assert isinstance(ex, InProcess) and (ex.parallel, ex.threads) == (min(MAX_THREAD_RUNS, 6), 1)
    assert (make_executor(study, parallel=3).parallel, make_executor(study, parallel=3).threads) == (3, 2)
    one = make_executor(study, parallel=1)
    assert (one.parallel, one.threads) == (1, None)  # one run at a time with torch's own thread count
    assert isinstance(make_executor(study, workers=2), LocalPool)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert make_executor(study).parallel == 1  # runs sharing an Apple GPU: not by default
