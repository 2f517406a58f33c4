"""One run's process: start or resume it and train it to the end under its lock, keeping its
row in the store up to date, and checkpoint and stop on the signals a scheduler sends.

`blast run` calls `start`, `blast resume RUN` calls `resume`; both end in `execute`.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from blast_core import config as C
from blast_core.agent.perf import keep_freed_memory
from blast_core.config import tree as T
from blast_core.errors import DiskFull
from blast_core.run.loop import (
    Diverged,
    Interrupted,
    NoProgress,
    RunContext,
    StopFlag,
    train,
)
from blast_core.run.sinks import RunInfo, make_sinks, recorded_backends
from blast_core.run.spec import (
    Options,
    RunError,
    RunSpec,
    device_index,
    locate_run,
    prepare,
    run_directory,
)
from blast_core.store import connect

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP)
"""Signals that make a run checkpoint and stop. SLURM signals every process of a job step, so
a run gets the preemption warning (USR2, `--signal`) and a requeue's or cancel's SIGTERM itself,
beside the job's scheduler that would otherwise forward them. SIGHUP (its terminal closed) too,
unless it is ignored (`nohup`)."""


def start(spec: RunSpec, root: Path, db: str, options: Options) -> str:
    """`blast run`: create the run (or find it) and train it to the end; returns the final status.

    Running the same command again resumes. A run directory whose stored config differs from the
    one resolved now (the code's defaults changed) is refused rather than silently mixed, except
    in how it executes (`C.EXECUTION_KEYS`: it goes on with its own values) and in keys its config
    lacks (they came with a newer blast, whose defaults do what it did before them)."""
    check_device(options.device)
    cfg = prepare(spec, root, options.say)
    return execute(spec, cfg, root, db, options, skip_done=True)


def resume(run_id: str, root: Path, db: str, options: Options) -> str:
    """`blast resume RUN`: continue a run from its last checkpoint with its stored config. A run
    the store knows but whose folder is on another machine (imported) starts again here."""
    spec, cfg = locate_run(run_id, root, db, options.say)
    check_device(options.device)
    return execute(spec, cfg, root, db, options)


def execute(spec: RunSpec, cfg: C.Config, root: Path, db: str, options: Options,
            skip_done: bool = False) -> str:
    """Train one run under its lock, keeping its row in the store up to date; returns the status
    it ends in: done, interrupted or failed (a failure also raises, after the status is set).
    With `skip_done` (`blast run` again), a run the store has done is left as it is."""
    device = check_device(options.device)
    directory = run_directory(root, spec.run_id)
    # The stop handlers stay from before the run is `running` until its final status is stored:
    # a stop often comes twice (SLURM signals every process of a job step, and the job's
    # scheduler forwards its own), and a second one after the default handler is back would
    # kill the process between its checkpoint and its status, leaving it `crashed`.
    stop = StopFlag()
    with _locked(directory, spec.run_id), connect(db) as store, _stop_on_signals(stop):
        before = store.run(spec.run_id) or {}
        if (skip_done and before.get("status") == "done"
                and (before.get("step") or 0) >= cfg.schedule.steps):
            options.say(f"{spec.run_id} is already done ({before['step']} steps): nothing to do")
            return "done"
        if before.get("step") and before.get("device") not in (None, device):
            options.say(f"note: {spec.run_id} ran on {before['device']} up to step "
                        f"{before['step']} and continues on {device}: resume is exact on one "
                        "device only, so later numbers differ from an uninterrupted run's")
        store.upsert_run(spec.run_id, experiment=spec.experiment, env=spec.env, rung=spec.rung,
                         seed=spec.seed, preset=spec.preset, config=T.to_dict(cfg),
                         run_dir=str(directory.resolve()), overrides=spec.override_dict(),
                         steps=spec.steps)
        configure_torch(options.threads, options.deterministic, device,
                        options.keep_freed_memory)
        store.set_status(spec.run_id, "running", pid=os.getpid(), host=socket.gethostname(),
                         device=device)
        progress = options.progress or (lambda total, step: NoProgress())
        info = RunInfo(spec.run_id, directory, root, spec.env, spec.rung, spec.seed,
                       spec.preset, T.to_dict(cfg), T.to_yaml(cfg))
        backends = recorded_backends(directory, options.log, options.say)
        sinks = make_sinks(backends, info, options.say)
        ctx = RunContext(spec.run_id, directory, spec.seed, store, device, stop,
                         progress(cfg.schedule.steps, 0), options.say, sinks,
                         {"graph_behavior": options.graph_behavior,
                          "keep_freed_memory": options.keep_freed_memory}, root / ".cache")
        status, reason = _train(cfg, ctx)
        if reason:
            options.say(f"{spec.run_id}: {status}: {reason}")
        try:
            store.set_status(spec.run_id, status, error=reason)
        except DiskFull as e:
            # The database shares the full disk: the row stays `running` until `blast status`
            # finds the process gone and marks it crashed (resumable all the same).
            options.say(f"{spec.run_id}: its status could not be stored: {e}")
        return status


def _train(cfg: C.Config, ctx: RunContext) -> tuple[str, str | None]:
    """Train; the status the run ends in, and why if not done. A crash
    is recorded as `failed` with its exception and raised again."""
    try:
        train(cfg, ctx)
    except Interrupted as e:
        return "interrupted", f"{e}; checkpoint written"
    except Diverged as e:
        return "failed", f"diverged: {e}; the last good checkpoint is kept"
    except DiskFull as e:
        return "failed", (f"disk full: {e}; free some space, then `blast resume {ctx.run_id}` "
                          "goes on from the last good checkpoint")
    except BaseException as e:
        ctx.store.set_status(ctx.run_id, "failed", error=f"{type(e).__name__}: {e}"[:2000])
        raise
    finally:
        ctx.progress.close()
    return "done", None


# --- process set-up -------------------------------------------------------------------------------


def check_device(device: str) -> str:
    """`cpu`, `cuda[:K]` for a GPU that exists, or `auto` (cuda:0 when torch sees a GPU, else
    cpu); a one-line error otherwise."""
    if device == "auto":
        device = "cuda:0" if torch.cuda.is_available() else "cpu"
    index = device_index(device)
    if index is None:
        return device
    if not torch.cuda.is_available():
        raise RunError(f"--device {device}: no CUDA GPU is visible to torch")
    if index >= torch.cuda.device_count():
        raise RunError(f"--device {device}: only {torch.cuda.device_count()} GPU(s) visible")
    return f"cuda:{index}"


def configure_torch(threads: int | None, deterministic: bool, device: str,
                    keep_memory: bool = True) -> None:
    """Threads, and with `deterministic` one thread and torch's deterministic algorithms (the
    same seed then gives the same losses and weights, resumed or not; CPU is bit-exact). Freed
    tensor memory is kept for reuse (`perf.keep_freed_memory`)."""
    keep_freed_memory(keep_memory)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before the first cuBLAS call
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        threads = 1
    if threads:
        torch.set_num_threads(threads)
    if device.startswith("cuda"):
        torch.cuda.set_device(device)


@contextmanager
def _locked(directory: Path, run_id: str) -> Iterator[None]:
    """Hold the run's lock file; the kernel drops it when the process dies, even on SIGKILL."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise RunError(f"run {run_id} is already running (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


@contextmanager
def _stop_on_signals(flag: StopFlag) -> Iterator[None]:
    """SIGTERM, SIGINT and SIGUSR1 ask the loop to checkpoint and stop after the current step."""

    def handler(signum: int, _frame: Any) -> None:
        flag.signum = signum

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS
                if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


