"""How much run time an experiment has left, from the time its finished runs took.

A finished run's time is the sum of its loop's `time_<phase>_s` rows (what it spent acting,
stepping the env, on replay, updates, evaluations and checkpoints; run.speed.PHASES). Its training
steps, those after the prefill, take nearly all of it, so a rung's pace is seconds per training
step, and an unfinished run needs its training steps left at its rung's median pace: a running
run past its prefill at its own recent pace instead, which knows its machine (`steady`).
Finished runs of the experiment on other machines count alike: the figure is an estimate, in
run time (divide by the workers that share it).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from blast_core.run.speed import PHASES

TIME_METRICS = tuple(f"time_{p}_s" for p in PHASES)
SPEED = "steps_per_s"
RECENT = 5
"""How many of a running run's last speed windows (one per log interval) its pace averages: one
window alone swings with the machine's load (1.5 to 5 steps a second within an hour of one run,
while other work came and went)."""
FINISHED = ("done", "cancelled")
"""States whose runs have nothing left to do: `run-recipe` and `resume` skip them (a failed run
they start again)."""


@dataclass(frozen=True)
class Left:
    """The run time an experiment's unfinished runs need."""

    seconds: float
    """What the runs with an estimate need, in all."""
    runs: int
    """How many unfinished runs have an estimate."""
    per_run: dict[str, float] = field(default_factory=dict)
    """Per rung with a done run, the median time its done runs took."""
    unknown: dict[str, int] = field(default_factory=dict)
    """Per rung, the unfinished runs with no estimate (no finished run of the rung to time)."""


def _schedule(run: Mapping[str, Any]) -> tuple[int, int]:
    schedule = (run.get("config") or {}).get("schedule") or {}
    return int(schedule.get("steps") or 0), int(schedule.get("prefill") or 0)


def _spent(run: Mapping[str, Any], totals: Mapping[str, Mapping[str, float]]) -> float:
    return sum(totals.get(run["id"], {}).get(name, 0.0) for name in TIME_METRICS)


def steady(runs: Sequence[Mapping[str, Any]], latest: Mapping[str, Mapping[str, float | None]],
           recent: Mapping[str, Sequence[tuple[int, float]]]) -> dict[str, dict[str, float | None]]:
    """`latest` with each run's `steps_per_s` replaced by its pace over its `recent` (step, speed)
    windows past the prefill (the window that ends at the prefill holds the pretraining updates):
    their harmonic mean, the steps of the windows over the time they took."""
    out = {run_id: dict(metrics) for run_id, metrics in latest.items()}
    for run in runs:
        _, prefill = _schedule(run)
        rates = [v for step, v in recent.get(run["id"], ()) if step > prefill and v > 0]
        if rates:
            out.setdefault(run["id"], {})[SPEED] = len(rates) / sum(1 / v for v in rates)
    return out


def estimate(runs: Sequence[Mapping[str, Any]], totals: Mapping[str, Mapping[str, float]],
             latest: Mapping[str, Mapping[str, float | None]],
             timed: Sequence[Mapping[str, Any]] | None = None) -> Left:
    """The run time left to `runs`, given each run's summed time rows (`totals`) and its latest
    metrics (`latest`: a running run's `steps_per_s`, `steady` or not); the paces come from the
    done runs among `timed` (default: `runs`; the scheduler passes its experiments' runs, so
    that runs done by an earlier command count)."""
    paces: dict[str, list[float]] = {}
    whole: dict[str, list[float]] = {}
    for run in runs if timed is None else timed:
        (steps, prefill), spent = _schedule(run), _spent(run, totals)
        if run["status"] == "done" and steps > prefill and spent > 0:
            paces.setdefault(run["rung"], []).append(spent / (steps - prefill))
            whole.setdefault(run["rung"], []).append(spent)
    pace = {rung: statistics.median(v) for rung, v in paces.items()}
    seconds, counted, unknown = 0.0, 0, {}
    for run in runs:
        steps, prefill = _schedule(run)
        if run["status"] in FINISHED or not steps:
            continue
        step, speed = run.get("step") or 0, latest.get(run["id"], {}).get(SPEED)
        if run["status"] == "running" and step > prefill and speed and speed > 0:
            seconds += max(steps - step, 0) / speed
        elif run["rung"] in pace:
            seconds += (steps - max(step, prefill)) * pace[run["rung"]]
        else:
            unknown[run["rung"]] = unknown.get(run["rung"], 0) + 1
            continue
        counted += 1
    per_run = {rung: statistics.median(v) for rung, v in whole.items()}
    return Left(seconds, counted, per_run, unknown)
