"""The local scheduler: one process per run, at most one run per slot, retries, clean stops.

Who writes what: each run process writes its own state (running, done, failed, interrupted),
heartbeats and metrics. The scheduler only counts launches and, when a process ends without
having written a final state (SIGKILL, out of memory), marks its run `crashed`.

Stopping (Ctrl-C, SIGTERM, a closed terminal's SIGHUP, or a SLURM preemption through `stop`):
every run gets SIGTERM, checkpoints and marks itself `interrupted`; runs not yet launched stay
`queued`. A scheduler killed outright (SIGKILL) takes its runs with it the same way: each gets
SIGTERM from the kernel (the parent-death signal) and stops at a checkpoint.
"""

from __future__ import annotations

import collections
import ctypes
import datetime as dt
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from blast_core.scheduling.jobs import Job
from blast_core.scheduling.slots import Slot, slot_env
from blast_core.scheduling.view import LogView, View
from blast_core.scheduling.watch import Watch

if TYPE_CHECKING:
    from blast_core.store import Store

Command = Callable[[Job, Slot], list[str]]
PINNING = ("CUDA_VISIBLE_DEVICES", "MUJOCO_EGL_DEVICE_ID", "OMP_NUM_THREADS")
"""Environment variables set per slot, written to each run's worker.log."""
RETRIED = ("crashed", "failed")
"""States that `max_retries` relaunches (interrupted and cancelled were asked for)."""


def blast_command(results: Path, db: str) -> Command:
    """The real command: `python -m blast_cli <job args> --device ... --threads ...`."""

    def command(job: Job, slot: Slot) -> list[str]:
        return [sys.executable, "-m", "blast_cli", *job.args, "--device", slot.device,
                "--threads", str(slot.threads), "--results", str(Path(results).resolve()),
                "--db", db]  # plain progress lines go to worker.log every minute

    return command


def describe_exit(rc: int) -> str:
    if rc < 0:
        try:
            return f"signal {signal.Signals(-rc).name}"
        except ValueError:
            return f"signal {-rc}"
    return f"exit code {rc}"


@dataclass
class Active:
    job: Job
    slot: Slot
    proc: subprocess.Popen
    log: IO[str]
    log_path: Path


class Scheduler:
    """Run `jobs` on `slots` until each has ended (or retries are spent, or it is stopped)."""

    def __init__(
        self,
        store: Store,
        jobs: Sequence[Job],
        slots: Sequence[Slot],
        results: Path,
        command: Command,
        max_retries: int = 0,
        view: View | None = None,
        poll_s: float = 0.25,
        grace_s: float = 600.0,
    ) -> None:
        self.store, self.slots, self.results = store, list(slots), Path(results)
        self.command, self.max_retries = command, max_retries
        self.view = view or LogView()
        self.poll_s, self.grace_s = poll_s, grace_s
        self.pending = collections.deque(jobs)
        self.run_ids = [j.run_id for j in jobs]
        self.watch = Watch(store, self.run_ids)
        self.active: dict[int, Active] = {}  # slot index -> run
        self.launches: collections.Counter[str] = collections.Counter()
        self.stop_signal = 0
        self.stopped = False

    # --- the loop --------------------------------------------------------------------------------

    def run(self) -> dict[str, str]:
        """Returns each job's run state at the end."""
        restore = self._catch_signals()
        try:
            last_view = 0.0
            while (self.pending or self.active) and not self.stop_signal:
                self._fill_slots()
                self._reap_finished()
                if time.monotonic() - last_view > 1.0:
                    self._refresh()
                    last_view = time.monotonic()
                time.sleep(self.poll_s)
        finally:
            if self.active:  # stopped, or an exception: never leave a run without its supervisor
                self.stop()
            restore()
            self._refresh(last=True)
            self.view.close()
        return self.states()

    def states(self) -> dict[str, str]:
        rows = {r["id"]: r["status"] for r in self.store.runs()}
        return {run_id: rows.get(run_id, "missing") for run_id in self.run_ids}

    def _fill_slots(self) -> None:
        for slot in self.slots:
            if slot.index not in self.active and self.pending and not self.stop_signal:
                job = self.pending.popleft()
                self._launch(job, slot)

    def _launch(self, job: Job, slot: Slot) -> None:
        row = self.store.run(job.run_id)
        # A run can change state while it waits: cancelled, or finished by another coordinator.
        if row and row["status"] in ("done", "cancelled", "running"):
            self.view.event(f"{job.run_id}: {row['status']}, not launched")
            return
        self.launches[job.run_id] += 1
        self.store.count_launch(job.run_id)
        total = (self.store.run(job.run_id) or {}).get("launches")  # over all commands
        log_path = self.results / job.run_id / "worker.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = log_path.open("a")
        argv, env = self.command(job, slot), slot_env(slot)
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        pinned = " ".join(f"{k}={env[k]}" for k in PINNING if k in env)
        log.write(f"=== {stamp} launch {total} on {slot.label} ({pinned}): {' '.join(argv)}\n")
        log.flush()
        # Its own session: a terminal's Ctrl-C reaches only the scheduler, which stops each run.
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=_parent_death(signal.SIGTERM))
        self.active[slot.index] = Active(job, slot, proc, log, log_path)
        self.view.event(f"{job.run_id}: started on {slot.label} (pid {proc.pid})")

    def _reap_finished(self) -> None:
        for index, act in list(self.active.items()):
            rc = act.proc.poll()
            # pop, not del: `stop` may run in a signal handler between these lines and reap it.
            if rc is not None and self.active.pop(index, None) is not None:
                self._ended(act, rc)

    def _ended(self, act: Active, rc: int) -> None:
        act.log.close()
        run_id = act.job.run_id
        row = self.store.run(run_id) or {}
        ours = row.get("pid") == act.proc.pid
        if ours and row.get("status") == "running":
            # The process died without writing its final state.
            self.store.set_status(run_id, "crashed", expect=["running"],
                                  error=f"crashed: process exited with {describe_exit(rc)}")
        elif rc != 0 and not ours and row.get("status") not in (None, "running"):
            if self.stop_signal:
                # Ctrl-C reached it before it started the run: nothing of it ran, and its
                # run.json is on disk (jobs.plan), so `blast resume` takes it up.
                self.store.set_status(run_id, "interrupted", expect=[row["status"]],
                                      error="stopped before it started")
            else:
                # It failed before starting the run (bad input, no GPU): keep its message.
                self.store.set_status(run_id, "failed", error=_last_line(act.log_path),
                                      expect=[row["status"]])
        state = (self.store.run(run_id) or {}).get("status", "missing")
        self.view.event(f"{run_id}: {state} ({describe_exit(rc)})")
        retry = (state in RETRIED and not self.stop_signal
                 and self.launches[run_id] <= self.max_retries)
        if retry:
            self.view.event(f"{run_id}: retry {self.launches[run_id]} of {self.max_retries}")
            self.pending.append(act.job)

    # --- stopping --------------------------------------------------------------------------------

    def _catch_signals(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def handler(signum: int, _frame: Any) -> None:
            # A second Ctrl-C: stop waiting for checkpoints. A second SIGTERM is no such
            # request: two supervisors may each send one (a cluster and a process manager), and
            # whoever sends SIGTERM escalates by itself (SLURM: SIGKILL after KillWait).
            if self.stop_signal and signum == signal.SIGINT:
                for act in self.active.values():
                    act.proc.kill()
            self.stop_signal = self.stop_signal or signum

        # A closed terminal (SIGHUP) stops the runs like Ctrl-C, unless it is ignored (nohup).
        previous = {s: signal.signal(s, handler)
                    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
                    if signal.getsignal(s) is not signal.SIG_IGN}

        def restore() -> None:
            for s, h in previous.items():
                signal.signal(s, h)

        return restore

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Ask every run to checkpoint and stop, wait for them (SIGKILL after `grace_s`)."""
        if self.stopped:
            return
        self.stopped = True
        self.stop_signal = self.stop_signal or signum
        self.pending.clear()
        if self.active:
            self.view.event(f"stopping {len(self.active)} run(s): each checkpoints first")
        for act in self.active.values():
            _signal(act.proc, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        while self.active and time.monotonic() < deadline:
            self._reap_finished()
            time.sleep(self.poll_s)
        for act in self.active.values():
            _signal(act.proc, signal.SIGKILL)
            act.proc.wait()
        self._reap_finished()

    def _refresh(self, last: bool = False) -> None:
        where = {a.job.run_id: a.slot.label for a in self.active.values()}
        self.watch.refresh(self.view, where, last)


def _parent_death(signum: int) -> Callable[[], None] | None:
    """A preexec_fn that asks the kernel to send `signum` to the child when its parent dies: no
    run outlives its scheduler (a ladder or a SLURM job killed outright); it checkpoints and
    stops, resumable."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def set_signal() -> None:
        prctl(pr_set_pdeathsig, signum, 0, 0, 0)

    return set_signal


def _signal(proc: subprocess.Popen, signum: int) -> None:
    try:
        proc.send_signal(signum)
    except ProcessLookupError:
        pass


def _last_line(path: Path) -> str:
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return (lines[-1] if lines else "no output")[:2000]
