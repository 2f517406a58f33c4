"""Run identity, run directories, and starting or resuming one run (`blast run`, `blast resume`).

A run is named by what it is: `<env with ':' as '.'>__<rung>__<preset>__s<seed>`, plus `__` and 8
hex digits of a sha1 over the sorted `--set` overrides and `--steps` when any is given. Its id is
`<experiment>/<name>` and its directory `<results>/<experiment>/<name>/`:

    run.json      what `blast run` was asked (RunSpec), so `blast resume RUN` needs nothing else
    config.yaml   the resolved config, fixed at the first start
    checkpoints/  ckpt-<step>.pt, the last two
    replay/       ep-<index>-<steps>.npz, one per finished training episode
    lock          held (flock) by the process running it
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import re
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from blast_core import config as C
from blast_core.agent.perf import keep_freed_memory
from blast_core.config import tree as T
from blast_core.envs import check_inputs
from blast_core.errors import BlastError, DiskFull
from blast_core.files import write_text
from blast_core.run.loop import (
    Diverged,
    Interrupted,
    NoProgress,
    Progress,
    RunContext,
    StopFlag,
    train,
)

_EXPERIMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)
"""Signals that make a run checkpoint and stop. SLURM signals every process of a job step, so
a run gets the preemption warning (USR2, `--signal`) and a requeue's or cancel's SIGTERM itself,
beside the job's scheduler that would otherwise forward them."""


class RunError(BlastError):
    """A run that cannot be started or resumed as asked."""


@dataclass(frozen=True)
class RunSpec:
    """What a run is: everything that goes into its name and its config."""

    env: str
    rung: str = "dv2"
    seed: int = 0
    preset: str = "paper"
    overrides: tuple[str, ...] = ()
    """`--set` items as normalised, sorted `key=value` strings."""
    steps: int | None = None
    """`--steps`: agent steps of the run, overriding the preset's schedule.steps."""
    experiment: str = "default"

    @classmethod
    def make(cls, env: str, rung: str, seed: int, preset: str = "paper",
             overrides: list[str] | None = None, steps: int | None = None,
             experiment: str = "default") -> RunSpec:
        """Validate user input (one-line RunError/ConfigError) and normalise the overrides."""
        if seed < 0:
            raise RunError(f"--seed must be >= 0, got {seed}")
        if steps is not None and steps <= 0:
            raise RunError(f"--steps must be positive, got {steps}")
        if not _EXPERIMENT.match(experiment):
            raise RunError(f"bad experiment name {experiment!r}: use letters, digits, . _ -")
        parsed = T.parse_overrides(overrides or [])
        spec = cls(env, rung, seed, preset, tuple(sorted(f"{k}={v}" for k, v in parsed.items())),
                   steps, experiment)
        # A bad env, rung, preset, key, value or video: fail before anything is written.
        check_inputs(spec.config().env)
        return spec

    @property
    def name(self) -> str:
        name = f"{self.env.replace(':', '.')}__{self.rung}__{self.preset}__s{self.seed}"
        if self.overrides or self.steps is not None:
            payload = json.dumps({"set": sorted(self.overrides), "steps": self.steps})
            name += "__" + hashlib.sha1(payload.encode()).hexdigest()[:8]
        return name

    @property
    def run_id(self) -> str:
        return f"{self.experiment}/{self.name}"

    def override_dict(self) -> dict[str, str]:
        return T.parse_overrides(list(self.overrides))

    def config(self) -> C.Config:
        overrides: dict[str, Any] = self.override_dict()
        if self.steps is not None:
            overrides["schedule.steps"] = self.steps
        return C.make_config(self.env, self.rung, self.preset, overrides)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["overrides"] = list(self.overrides)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        return cls(**{**data, "overrides": tuple(data.get("overrides", ()))})


@dataclass
class Options:
    """How to execute a run (none of it changes what the run computes, except `deterministic`)."""

    device: str = "cpu"
    deterministic: bool = False
    threads: int | None = None
    progress: Callable[[int, int], Progress] | None = None
    """Makes a progress display from (total steps, current step); None shows nothing."""
    say: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True)


def run_directory(root: Path, run_id: str) -> Path:
    return Path(root) / run_id


# --- starting and resuming ------------------------------------------------------------------------


def start(spec: RunSpec, root: Path, db: str, options: Options) -> str:
    """`blast run`: create the run (or find it) and train it to the end; returns the final status.

    Running the same command again resumes. A run directory whose stored config differs from the
    one resolved now (the code's defaults changed) is refused rather than silently mixed, except
    in how it executes (`C.EXECUTION_KEYS`: it goes on with its own values) and in keys its config
    lacks (they came with a newer blast, whose defaults do what it did before them)."""
    check_device(options.device)
    cfg = prepare(spec, root, options.say)
    return execute(spec, cfg, root, db, options, skip_done=True)


def prepare(spec: RunSpec, root: Path, say: Callable[[str], None] = print) -> C.Config:
    """The run's directory with its `run.json` and `config.yaml` (written once, atomically), and
    the config it trains with. Everything that makes a run resumable by id is on disk after
    this, before any process trains it: the scheduler calls it for every run it queues, so a
    worker killed in its first second still leaves a run `blast resume` can take up."""
    cfg = spec.config()
    directory = run_directory(root, spec.run_id)
    stored = directory / "config.yaml"
    if stored.exists():
        before = T.flatten(yaml.safe_load(stored.read_text()))
        now = T.flatten(T.to_dict(cfg))
        changed = sorted(k for k, v in now.items() if k in before and before[k] != v)
        if set(changed) - C.EXECUTION_KEYS:
            shown = [k for k in changed if k not in C.EXECUTION_KEYS]
            raise RunError(
                f"run {spec.run_id} was started with a different config ({', '.join(shown[:4])}"
                f"{', ...' if len(shown) > 4 else ''}); use `blast resume {spec.run_id}` "
                "to continue it as it was, or another --experiment"
            )
        if changed:
            own = {k: before[k] for k in changed}
            say(f"note: {spec.run_id} goes on with its own "
                + ", ".join(f"{k}={json.dumps(v)}" for k, v in own.items()))
            cfg = T.apply(cfg, own)
    else:
        directory.mkdir(parents=True, exist_ok=True)
        write_text(directory / "run.json", json.dumps(spec.to_dict(), indent=2) + "\n")
        write_text(stored, T.to_yaml(cfg))
    return cfg


def load_spec(root: Path, run_id: str) -> tuple[RunSpec, C.Config]:
    """The spec and the stored config of an existing run directory."""
    directory = run_directory(root, run_id)
    if not (directory / "run.json").exists():
        raise RunError(f"no run {run_id!r} under {root} (no {directory / 'run.json'})")
    spec = RunSpec.from_dict(json.loads((directory / "run.json").read_text()))
    cfg = T.from_dict(yaml.safe_load((directory / "config.yaml").read_text()), C.Config)
    return spec, cfg


def resume(run_id: str, root: Path, db: str, options: Options) -> str:
    """`blast resume RUN`: continue a run from its last checkpoint with its stored config."""
    spec, cfg = load_spec(root, run_id.strip("/"))
    check_device(options.device)
    return execute(spec, cfg, root, db, options)


def execute(spec: RunSpec, cfg: C.Config, root: Path, db: str, options: Options,
            skip_done: bool = False) -> str:
    """Train one run under its lock, keeping its row in the store up to date; returns the status
    it ends in: done, interrupted or failed (a failure also raises, after the status is set).
    With `skip_done` (`blast run` again), a run the store has done is left as it is."""
    from blast_core.store import Store

    device = check_device(options.device)
    directory = run_directory(root, spec.run_id)
    with _locked(directory, spec.run_id), Store.open(db) as store:
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
        configure_torch(options.threads, options.deterministic, device)
        store.set_status(spec.run_id, "running", pid=os.getpid(), host=socket.gethostname(),
                         device=device)
        progress = options.progress or (lambda total, step: NoProgress())
        ctx = RunContext(spec.run_id, directory, spec.seed, store, device, StopFlag(),
                         progress(cfg.schedule.steps, 0), options.say)
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
    """Train under the stop signals; the status the run ends in, and why if not done. A crash
    is recorded as `failed` with its exception and raised again."""
    try:
        with _stop_on_signals(ctx.stop):
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
    if device == "cpu":
        return device
    match = re.fullmatch(r"cuda(?::(\d+))?", device)
    if not match:
        raise RunError(f"bad --device {device!r}: use auto, cpu or cuda:K")
    if not torch.cuda.is_available():
        raise RunError(f"--device {device}: no CUDA GPU is visible to torch")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise RunError(f"--device {device}: only {torch.cuda.device_count()} GPU(s) visible")
    return f"cuda:{index}"


def configure_torch(threads: int | None, deterministic: bool, device: str) -> None:
    """Threads, and with `deterministic` one thread and torch's deterministic algorithms (the
    same seed then gives the same losses and weights, resumed or not; CPU is bit-exact). Freed
    tensor memory is kept for reuse (`perf.keep_freed_memory`)."""
    keep_freed_memory()
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

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


