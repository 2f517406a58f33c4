"""Helpers of the experiment-management tests: the real `blast` CLI in subprocesses, tiny runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from blast_core.store import Store

T = TypeVar("T")

# The tiny preset cut to the least that still trains, evaluates and checkpoints mid-run:
# prefill one 100-step MiniGrid episode, train to step 150, checkpoints at 50, 100 and 150.
def tiny(steps: int = 150) -> list[str]:
    """The tiny preset's options, trained to `steps` (an option given twice is an error)."""
    return ["--preset", "tiny", "--steps", str(steps), "--set", "schedule.prefill=100",
            "--set", "schedule.eval_every=150", "--set", "schedule.checkpoint_every=50"]


TINY = tiny()
ENVS = ["minigrid:unmodified", "minigrid:smaller_agent"]


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BLAST_DB", "BLAST_RESULTS")}
    return env | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def blast(*args: Any, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `blast ARGS` to its end."""
    return subprocess.run([sys.executable, "-m", "blast_cli", *map(str, args)], text=True,
                          capture_output=True, timeout=timeout, env=cli_env())


def start_blast(*args: Any) -> subprocess.Popen:
    """Start `blast ARGS` in the background, with SIGHUP's default action even where the suite
    itself runs under `nohup` (which blast respects: an ignored SIGHUP stays ignored)."""
    return subprocess.Popen([sys.executable, "-m", "blast_cli", *map(str, args)], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env(),
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))


def wait_for(find: Callable[[], T | None], timeout: float = 300, what: str = "it",
             seen: Callable[[], object] | None = None) -> T:
    """Poll `find` until it returns something; on a timeout the message holds what `seen` says
    (the state that did not come), so a failure on another machine can be read from its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = find()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}" + (f"; saw {seen()}" if seen else ""))


def parent(pid: int) -> int:
    """The parent of a process (a run's: the scheduler that launched it), from /proc."""
    return int(Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[1])


def running_with_checkpoint(store: Store, experiment: str, count: int = 1) -> list[dict] | None:
    """`count` runs that are running and have written a checkpoint, or None."""
    ready = [r for r in store.runs(experiment)
             if r["status"] == "running" and store.checkpoints(r["id"])]
    return ready[:count] if len(ready) >= count else None


def dump(url: str) -> list[tuple]:
    """Everything the commands write, for before/after comparisons."""
    store = Store.open(url)
    rows = [tuple(sorted((k, str(v)) for k, v in r.items())) for r in store.runs()]
    exps = [(e["name"], e["recipe"], str(e["counts"])) for e in store.experiments()]
    return [*exps, *rows, ("metrics", len(store.metrics_frame()))]


def blast_here(capsys: Any, *args: Any) -> tuple[int, str, str]:
    """Run `blast ARGS` in this process through the console entry point: for commands that
    must fail before launching anything (no interpreter start-up per case)."""
    from blast_cli.main import main

    argv, sys.argv = sys.argv, ["blast", *map(str, args)]
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = argv
    captured = capsys.readouterr()
    return code, captured.out, captured.err


LADDER = ("dv2", "no_recon", "stop_grad", "target", "bn", "ar_prior")


def ladder_end_to_end(results: Path, url: str, rungs: tuple[str, ...] = LADDER) -> None:
    """The issue's end-to-end check, on any database: a tiny ladder (every rung unless `rungs`
    says) x 2 seeds on 2 CPU workers, one run's process SIGKILLed mid-run (-> crashed),
    `blast resume --all` (-> all done, no metric row twice), then the same command again
    (-> nothing changes). One env: a second doubled the time and exercised nothing more (two
    envs are planned and queued in
    test_every_run_the_scheduler_queues_is_resumable_by_id_before_any_worker_starts)."""
    loc = ["--results", results, "--db", url]
    n = 2 * len(rungs)
    ladder = ["run-ladder", "--env", ENVS[0], "--rungs", ",".join(rungs), "--seeds", 2, *TINY,
              "--workers", 2, "--max-retries", 0, "--experiment", "e2e", "--no-progress", *loc]
    proc = start_blast(*ladder)
    store = wait_for(lambda: _open_when_created(url), what="the database")
    (victim,) = wait_for(lambda: running_with_checkpoint(store, "e2e"), what="a checkpoint")
    os.kill(victim["pid"], signal.SIGKILL)  # a worker's run process dies mid-run
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 1, err

    states = {r["id"]: r["status"] for r in store.runs("e2e")}
    assert len(states) == n
    assert states.pop(victim["id"]) == "crashed"
    assert set(states.values()) == {"done"}
    assert "SIGKILL" in store.run(victim["id"])["error"]

    resumed = blast("resume", "--all", "--workers", 2, "--no-progress", *loc)
    assert resumed.returncode == 0, resumed.stderr
    runs = store.runs("e2e")
    assert {r["status"] for r in runs} == {"done"} and len(runs) == n
    assert store.run(victim["id"])["launches"] == 2

    # No metric row twice, and the resumed run has exactly the rows of its uninterrupted twin
    # (the same env and rung, the other seed).
    frame = store.metrics_frame("e2e")
    assert not frame.duplicated(["run_id", "name", "step"]).any()
    twin = next(r["id"] for r in runs if r["env"] == victim["env"]
                and r["rung"] == victim["rung"] and r["id"] != victim["id"])
    keys = {rid: set(map(tuple, frame[frame.run_id == rid][["name", "step"]].values))
            for rid in (victim["id"], twin)}
    assert keys[victim["id"]] == keys[twin] and len(keys[twin]) > 20

    before = dump(url)
    again = blast(*ladder)
    assert again.returncode == 0, again.stderr
    assert f"{n} runs, {n} done, 0 to run" in again.stderr
    assert dump(url) == before

    shown = blast("status", "--experiment", "e2e", *loc)
    assert shown.returncode == 0, shown.stderr
    for rung in rungs:
        assert rung in shown.stdout
    assert shown.stdout.count("done") == n + 1  # the cells and the counts line
    listed = blast("ls", *loc)
    assert "e2e" in listed.stdout and f"{n} done" in listed.stdout


def _open_when_created(url: str) -> Store | None:
    """The store once the command under test has created it (never creating it here)."""
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None
    store = Store.open(url)
    return store if store.experiments() else None
