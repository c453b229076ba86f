"""Executors: where a sweep's runs train. Workers compute and return an `Outcome`; only the driver writes.

`Executor.outcomes(specs)` yields `("start", spec, None)` when a run is handed
to a worker (local backends only) and `("end", spec, outcome)` when it is over,
in completion order. Backends:

- `InProcess`: the driver trains the runs itself, one after another, or `parallel`
  at once in threads (torch releases the GIL inside its ops, so single-threaded
  runs in threads fill the cores like worker processes, with one copy of torch,
  Lightning and the dataset in memory instead of one per process).
- `LocalPool`: N long-lived worker processes ("spawn": torch and fork do not
  mix), each training many runs in one interpreter, torch threads split
  between them, one GPU each (round robin) when the study may use GPUs.
- `RayExecutor`: each run a Ray task with its own CPUs and (fractional) GPUs on
  an existing cluster or a private local instance; the dataset travels through
  Ray's object store and the outcome comes back, so nodes share no filesystem.

A run that raises is a "failed" outcome, not an error of the sweep. A worker
that dies (SIGKILL, the out-of-memory killer) loses only its current run: the
run is retried on a fresh worker up to WORKER_LOSS_RETRIES times, then recorded
as failed. Workers exit on their own when the driver dies.

A user's plugin travels by name: each worker imports it itself. Spawned workers inherit
PYTHONPATH and sys.path; a private local Ray instance gets the plugins' folders on its
workers' PYTHONPATH; on a Ray cluster every node must import the plugin on its own
(installed there, or on its PYTHONPATH), else the run fails with ModuleNotFoundError.

torch is imported inside functions only: a spawned worker must set
CUDA_VISIBLE_DEVICES before torch can look at the GPUs.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import queue
import re
import signal
import socket
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Iterator

from .errors import SweepError

if TYPE_CHECKING:
    from .config import RunSpec, Study
    from .data import Dataset

WORKER_LOSS_RETRIES = 2  # fresh workers a run gets after the one training it died
# Default cap on runs at once in threads. Each run's Python work (Lightning, the optimizer loop) holds the
# GIL: at 2 threads on 2 cores the runs reach 95% of perfect scaling; far more threads would queue on it.
MAX_THREAD_RUNS = 4
EXECUTORS = ("local", "ray")


@dataclass
class Outcome:
    """What a worker returns for one run; the driver turns it into the run's folder."""

    status: str  # "done", "diverged" or "failed"
    history: list[dict] = field(default_factory=list)  # per-epoch rows, epoch 0 first; empty when failed
    diagnostics: list[dict] = field(default_factory=list)  # per layer at init
    info: dict = field(default_factory=dict)  # run.json extras: seconds, device, threads, host, versions, ...
    error: str | None = None  # one line, "Type: message", when failed
    traceback: str | None = None  # the full traceback, when failed


def one_line(exc: BaseException, limit: int = 300) -> str:
    """ "Type: message" on one line, at most about `limit` characters, without terminal colour codes."""
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).split())
    return f"{type(exc).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def execute(spec: RunSpec, data_dir: str | None, accelerator: str, dataset: Dataset | None = None,
            stop: threading.Event | None = None) -> Outcome:
    """Train one run in this process; any exception becomes a failed Outcome (one bad run must not stop a sweep).

    `stop`, once set, ends the run at its next minibatch (a failed Outcome the caller discards).
    """
    import torch

    from .training import train_run, versions

    info = {"threads": torch.get_num_threads(), "host": socket.gethostname(), "versions": versions()}
    try:
        r = train_run(spec, data_dir, accelerator, dataset, stop)
    except Exception as exc:
        return Outcome("failed", info=info, error=one_line(exc), traceback=traceback.format_exc())
    return Outcome(r.status, r.history, r.diagnostics,
                   {**info, "diverged_epoch": r.diverged_epoch, "seconds": round(r.seconds, 3), "device": r.device,
                    "init_sha256": r.init_sha256, "final_sha256": r.final_sha256})


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8


def one_heap() -> bool:
    """Make threads started from now on allocate from glibc's main heap, which keeps what is freed.

    By default each new thread gets an arena that grows and shrinks in 64 MiB heaps, and a default-study
    training step allocates and frees tens of MB. In 3 of 7 tries of a threaded sweep (24 one-epoch default
    runs, 2 threads) the process then took 2.9-5.7 million page faults and 9-19 s of system time instead of
    0.18-0.22 million and 1.6-3.8 s; with one heap, in none of 7. Threads that allocated before keep their arenas.
    False where the C library has no mallopt (not glibc).

    The setting is process-wide and stays (glibc can neither scope nor undo it), so only the threaded executor
    calls it, when a sweep starts its threads; nothing does at import.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    # Up to 512 MiB freed at the heap's top stays mapped; tensors up to 32 MiB come from the heap, not mmap.
    return all(mallopt(param, value) == 1 for param, value in
               ((_M_ARENA_MAX, 1), (_M_TRIM_THRESHOLD, 512 << 20), (_M_MMAP_THRESHOLD, 32 << 20)))


class InProcess:
    """The driver itself: one run at a time, or `parallel` runs at once in threads.

    Ctrl-C stops the runs in progress within a minibatch; they are redone next time.
    """

    def __init__(self, data_dir: str | None, accelerator: str, threads: int | None, parallel: int = 1):
        self.data_dir, self.accelerator, self.threads, self.parallel = data_dir, accelerator, threads, parallel
        each = f" ({threads} torch thread{'s' if threads != 1 else ''} each)" if threads else ""
        self.where = "in this process" + (f", {parallel} runs at once in threads{each}" if parallel > 1 else "")

    def outcomes(self, specs: list[RunSpec]) -> Iterator[tuple[str, RunSpec, Outcome | None]]:
        import torch

        before = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            if self.parallel == 1:
                for spec in specs:
                    yield "start", spec, None
                    yield "end", spec, execute(spec, self.data_dir, self.accelerator)
            else:
                yield from self._threaded(specs)
        finally:
            torch.set_num_threads(before)  # the caller (a test, a notebook) keeps its own setting

    def _threaded(self, specs: list[RunSpec]) -> Iterator[tuple[str, RunSpec, Outcome | None]]:
        """Up to `parallel` runs at once, each in its own thread; events come back through a queue."""
        todo, events, stop = deque(specs), queue.SimpleQueue(), threading.Event()
        one_heap()

        def train(spec: RunSpec) -> None:
            events.put((spec, execute(spec, self.data_dir, self.accelerator, stop=stop)))

        running: dict[str, threading.Thread] = {}
        try:
            while todo or running:
                while todo and len(running) < self.parallel:
                    spec = todo.popleft()
                    running[spec.run_id] = threading.Thread(target=train, args=(spec,), daemon=True,
                                                            name=f"initstudy-run-{spec.run_id}")
                    running[spec.run_id].start()
                    yield "start", spec, None
                try:
                    spec, outcome = events.get(timeout=1.0)  # wakes up for Ctrl-C at least once a second
                except queue.Empty:
                    continue
                running.pop(spec.run_id).join()
                yield "end", spec, outcome
        finally:
            # Ctrl-C or an error in the caller: the runs in progress stop at their next minibatch and write nothing.
            stop.set()
            for t in running.values():
                t.join()

    def close(self) -> None:
        pass


def _exit_with_parent(parent: int) -> None:
    """Exit as soon as the driver is gone: nobody would record this worker's run, so stop computing it."""

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="initstudy-parent-watch").start()


def _worker_main(conn, parent: int, threads: int, gpu: str | None, data_dir: str | None, accelerator: str) -> None:
    """A local worker: receive a RunSpec, send back its Outcome, until told to stop (None) or orphaned.

    It owns its process, so it sets that process's signal handling, visible GPUs and torch thread count for good.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the driver decides
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu  # before torch sees the GPUs: this worker gets one
    _exit_with_parent(parent)
    import torch

    torch.set_num_threads(threads)
    while True:
        try:
            spec = conn.recv()
        except (EOFError, OSError):
            return
        if spec is None:
            return
        conn.send(execute(spec, data_dir, accelerator))


@dataclass
class _Worker:
    proc: multiprocessing.process.BaseProcess
    conn: object  # the driver's end of the pipe
    spec: RunSpec | None = None  # the run it is training, None when idle


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        why = " (the out-of-memory killer sends it)" if name == "SIGKILL" else ""
        return f"killed by {name}{why}"
    return f"exited with code {exitcode}"


class LocalPool:
    """`workers` long-lived processes on this machine, each training one run at a time."""

    def __init__(self, workers: int, threads: int, data_dir: str | None, accelerator: str, gpus: list[str]):
        self.parallel, self.threads, self.gpus = workers, threads, gpus
        self.data_dir, self.accelerator = data_dir, accelerator
        self.ctx = multiprocessing.get_context("spawn")
        self.where = f"on {workers} worker processes ({threads} torch thread{'s' if threads > 1 else ''} each" + \
            (f", GPUs {','.join(gpus)})" if gpus else ")")

    def _spawn(self, slot: int) -> _Worker:
        ours, theirs = self.ctx.Pipe()
        gpu = self.gpus[slot % len(self.gpus)] if self.gpus else None
        proc = self.ctx.Process(target=_worker_main, name=f"initstudy-worker-{slot}", daemon=True,
                                args=(theirs, os.getpid(), self.threads, gpu, self.data_dir, self.accelerator))
        proc.start()
        theirs.close()
        return _Worker(proc, ours)

    def outcomes(self, specs: list[RunSpec]) -> Iterator[tuple[str, RunSpec, Outcome | None]]:
        queue, losses = deque(specs), {}
        slots: list[_Worker | None] = [None] * self.parallel
        try:
            while queue or any(w and w.spec for w in slots):
                for i, w in enumerate(slots):
                    if queue and (w is None or w.spec is None):
                        w = slots[i] = w or self._spawn(i)
                        w.spec = queue.popleft()
                        try:
                            w.conn.send(w.spec)
                        except OSError:  # died while idle: the loop below replaces it
                            pass
                        yield "start", w.spec, None
                busy = [w for w in slots if w and w.spec]
                wait([w.conn for w in busy] + [w.proc.sentinel for w in busy])
                for i, w in enumerate(slots):
                    if not (w and w.spec):
                        continue
                    outcome = self._receive(w)
                    if isinstance(outcome, Outcome):
                        spec, w.spec = w.spec, None
                        yield "end", spec, outcome
                    elif outcome == "lost" or not w.proc.is_alive():
                        spec, slots[i] = w.spec, None
                        self._end(w)
                        losses[spec.run_id] = losses.get(spec.run_id, 0) + 1
                        if losses[spec.run_id] > WORKER_LOSS_RETRIES:
                            yield "end", spec, Outcome("failed", error=(
                                f"WorkerLost: the worker process training this run was {_death(w.proc.exitcode)}, "
                                f"{losses[spec.run_id]} times"))
                        else:
                            queue.appendleft(spec)
        finally:
            self._stop(slots)

    @staticmethod
    def _receive(w: _Worker) -> Outcome | str | None:
        """The worker's Outcome, "lost" when its pipe broke (it died), or None when it is still training."""
        try:
            return w.conn.recv() if w.conn.poll() else None
        except (EOFError, OSError):
            return "lost"

    def _stop(self, slots: list[_Worker | None]) -> None:
        """Idle workers are told to stop; busy ones (Ctrl-C, an error) are killed: they write nothing."""
        for w in filter(None, slots):
            if w.spec is None:
                try:
                    w.conn.send(None)
                except OSError:
                    pass
            else:
                w.proc.kill()
        for w in filter(None, slots):
            self._end(w)

    @staticmethod
    def _end(w: _Worker) -> None:
        w.proc.join(timeout=10)
        if w.proc.is_alive():
            w.proc.kill()
            w.proc.join()
        w.conn.close()

    def close(self) -> None:
        pass


def _ray_task(spec: RunSpec, dataset: Dataset, accelerator: str, threads: int) -> Outcome:
    """One run as a Ray task: the dataset comes from the driver, the outcome goes back to it.

    Sets torch's thread count of the Ray worker process to the task's CPUs (each task sets it again)."""
    import torch

    torch.set_num_threads(threads)
    return execute(spec, None, accelerator, dataset)


class RayExecutor:
    """Each run a Ray task with `cpus` CPUs (and torch threads) and `gpus` GPUs, retried when its worker dies."""

    def __init__(self, address: str | None, cpus: int, gpus: float | None, accelerator: str, dataset: Dataset,
                 pythonpath: tuple[str, ...] | list[str] = ()):
        try:
            import ray
        except ImportError:
            raise SweepError("--executor ray needs Ray installed: pip install 'ray>=2.9'") from None
        self.ray, self.cpus, self.dataset = ray, cpus, dataset
        try:
            # "local" starts a private instance even when this machine runs a cluster; "auto" finds that cluster.
            # A private instance's workers get the folders plugins were imported from on their PYTHONPATH; a
            # cluster's nodes must be able to import the plugins themselves (installed, or on their PYTHONPATH).
            env = [*pythonpath, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
            runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(env))}} if env and not address \
                else None
            ray.init(address=address or "local", include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR, runtime_env=runtime_env)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"at {address}" if address else "locally"
            raise SweepError(f"cannot start or reach a Ray cluster {where} ({one_line(exc, 160)}); start one "
                             "with `ray start --head` and pass --ray-address HEAD_IP:6379 (or auto on the head); "
                             "a cluster with token authentication also needs RAY_AUTH_MODE=token") from None
        try:
            self.gpus, self.accelerator, self.parallel = self._fit(gpus, accelerator)
        except SweepError:
            ray.shutdown()
            raise
        self.where = f"as Ray tasks, {self.parallel} at a time ({cpus} CPU{'s' if cpus > 1 else ''}" + \
            (f", {self.gpus:g} GPU each)" if self.gpus else " each)")

    def _fit(self, gpus: float | None, accelerator: str) -> tuple[float, str, int]:
        """(GPUs per run, the runs' accelerator, runs at once) checked against the cluster's nodes."""
        nodes = [n["Resources"] for n in self.ray.nodes() if n.get("Alive")]
        node_cpus = max((n.get("CPU", 0) for n in nodes), default=0)
        node_gpus = max((n.get("GPU", 0) for n in nodes), default=0)
        total = self.ray.cluster_resources()
        if gpus is None:
            gpus = 1.0 if node_gpus and accelerator != "cpu" else 0.0
        if self.cpus > node_cpus:
            raise SweepError(f"no node of the Ray cluster has {self.cpus} CPUs (the largest has {node_cpus:g}); "
                             "lower --cpus-per-run")
        if gpus > node_gpus:
            raise SweepError(f"no node of the Ray cluster has {gpus:g} GPUs (the largest has {node_gpus:g}); "
                             "lower --gpus-per-run (0 trains on CPUs)")
        if accelerator in ("gpu", "cuda") and not gpus:
            raise SweepError(f"the study asks for accelerator {accelerator!r} but runs get no GPU; "
                             "pass --gpus-per-run (e.g. 0.25) or --set accelerator=auto")
        parallel = int(total.get("CPU", 0) // self.cpus)
        if gpus:
            parallel = min(parallel, int(total.get("GPU", 0) // gpus))
        if accelerator in ("auto", "gpu", "cuda"):
            # A task without a GPU of its own must not go looking for one (Ray hides them from it anyway).
            accelerator = "gpu" if gpus else "cpu"
        return gpus, accelerator, max(1, parallel)

    def outcomes(self, specs: list[RunSpec]) -> Iterator[tuple[str, RunSpec, Outcome | None]]:
        ray = self.ray
        data = ray.put(self.dataset)  # once, not once per task
        task = ray.remote(_ray_task).options(num_cpus=self.cpus, num_gpus=self.gpus,
                                             max_retries=WORKER_LOSS_RETRIES)
        pending = {task.remote(spec, data, self.accelerator, self.cpus): spec for spec in specs}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    spec = pending.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except ray.exceptions.RayError as exc:  # retries used up, a node lost, or no initstudy there
                        cause = getattr(exc, "cause", None)  # a task that raised: name what it raised
                        outcome = Outcome("failed", error=one_line(cause if isinstance(cause, Exception) else exc),
                                          traceback=str(exc))
                    yield "end", spec, outcome
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        self.ray.shutdown()


def visible_gpus(accelerator: str) -> list[str]:
    """CUDA device ids a local sweep may use ([] for a CPU or MPS study, or without CUDA)."""
    if accelerator in ("cpu", "mps"):
        return []
    import torch

    if not torch.cuda.is_available():
        return []
    count = torch.cuda.device_count()
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [x.strip() for x in env.split(",") if x.strip()] if env else [str(i) for i in range(count)]
    return ids[:count]


def make_executor(study: Study, executor: str = "local", workers: int | None = None,
                  cpus_per_run: int | None = None, gpus_per_run: float | None = None,
                  ray_address: str | None = None, parallel: int | None = None):
    """The executor the `train` options ask for; SweepError names a bad combination and its fix.

    Locally and without GPUs, runs train `parallel` at once in threads of this process (default: one per
    core, at most MAX_THREAD_RUNS, one torch thread each); `workers` asks for worker processes instead.
    """
    if executor not in EXECUTORS:
        raise SweepError(f"unknown executor {executor!r}; choose one of: {', '.join(EXECUTORS)}")
    for name, value, low in (("--workers", workers, 1), ("--cpus-per-run", cpus_per_run, 1),
                             ("--parallel", parallel, 1)):
        if value is not None and value < low:
            raise SweepError(f"{name} must be >= {low}, got {value}")
    if gpus_per_run is not None and not 0 <= gpus_per_run <= 1:
        raise SweepError(f"--gpus-per-run must be in [0, 1] (a run uses at most one GPU), got {gpus_per_run:g}")
    if executor == "local":
        if ray_address is not None or gpus_per_run is not None:
            raise SweepError("--ray-address and --gpus-per-run are for --executor ray; locally, --workers "
                             "sets how many runs train at once (one GPU per worker, round robin)")
        if workers is not None and parallel is not None:
            raise SweepError("--parallel (threads of this process) and --workers (worker processes) both set how "
                             "many runs train at once; give one of them")
        import torch

        gpus = visible_gpus(study.accelerator)
        cores = torch.get_num_threads()
        if workers is None and not gpus:
            # Threads by default only where runs train on the CPU: runs sharing an Apple GPU are untested.
            mps = study.accelerator == "mps" or (study.accelerator == "auto" and torch.backends.mps.is_available())
            parallel = parallel or (1 if mps else min(MAX_THREAD_RUNS, cores))
            if parallel == 1:
                return InProcess(study.data_dir, study.accelerator, cpus_per_run)
            return InProcess(study.data_dir, study.accelerator, cpus_per_run or max(1, cores // parallel), parallel)
        if parallel is not None:
            raise SweepError(f"--parallel trains CPU runs in threads, but this study may use GPU(s) "
                             f"{','.join(gpus)}; use --workers N (one process per GPU, round robin), or "
                             "--set accelerator=cpu")
        workers = workers or len(gpus)
        threads = cpus_per_run or max(1, cores // workers)
        if workers == 1:
            return InProcess(study.data_dir, study.accelerator, cpus_per_run)
        return LocalPool(workers, threads, study.data_dir, study.accelerator, gpus)
    if workers is not None or parallel is not None:
        raise SweepError("--workers and --parallel are for the local executor; with --executor ray the cluster's "
                         "CPUs divided by --cpus-per-run set how many runs train at once")
    from .data import load_dataset
    from .plugins import import_roots

    dataset = load_dataset(study.dataset, study.data_dir, study.split_seed)
    return RayExecutor(ray_address, cpus_per_run or 1, gpus_per_run, study.accelerator, dataset,
                       import_roots(name for (_kind, name), _identity in study.plugins))
