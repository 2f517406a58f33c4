"""`blast bench --run`: one whole training run, timed end to end, and where its time went.

The run is a real `blast run` in a fresh process and a throwaway results root, so the figure
includes what a ladder's worker pays: Python's imports, building the env and the agent, the
prefill, acting, the env, replay, updates, evaluations, checkpoints and the database's rows. The
loop's phases come from the run's own `time_<phase>_s` rows (`run.speed.PHASES`); what the process
spent outside them is start-up (imports measured apart, in a process of their own) and the rest.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from blast_core.errors import BlastError
from blast_core.store import connect


def _import_seconds() -> float:
    """Wall time of a fresh interpreter importing what a run process imports."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import blast_cli.run_cmd, blast_core.run.process"],
                   check=True, capture_output=True)
    return time.perf_counter() - t0


def bench_run(env: str, rung: str, preset: str, steps: int, sets: list[str], threads: int,
              echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run it, print the breakdown, return it (seconds per phase and agent steps/s)."""
    root = Path(tempfile.mkdtemp(prefix="blast-bench-run-"))
    cmd = [sys.executable, "-m", "blast_cli", "run", "--env", env, "--rung", rung, "--seed", "0",
           "--preset", preset, "--steps", str(steps), "--threads", str(threads),
           "--results", str(root), "--no-progress", *(a for s in sets for a in ("--set", s))]
    try:
        imports = _import_seconds()
        echo(f"timing `blast run --env {env} --rung {rung} --preset {preset} --steps {steps}` "
             f"with {threads} thread(s) in {root} ...")
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise BlastError(f"the benchmark run failed (exit code {proc.returncode}): {tail}")
        with connect(f"sqlite:///{root / 'blast.db'}") as store:
            frame = store.metrics_frame()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    sums = frame.groupby("name")["value"].sum()
    # The run's own time_<phase>_s rows name its phases (run.speed.PHASES, in the order logged).
    phases = {n[len("time_"):-len("_s")]: float(v) for n, v in sums.items()
              if n.startswith("time_") and n.endswith("_s")}
    order = list(dict.fromkeys(frame["name"]))
    phases = dict(sorted(phases.items(), key=lambda kv: order.index(f"time_{kv[0]}_s")))
    loop = sum(phases.values())
    doc = {"env": env, "rung": rung, "preset": preset, "steps": steps, "sets": sets,
           "threads": threads, "root": str(root), "wall_s": wall, "import_s": imports,
           "phases_s": phases,
           "other_s": max(wall - imports - loop, 0.0), "steps_per_s": steps / wall}
    echo(f"{'part':28} {'seconds':>9} {'share':>6}")
    parts = {"import (a fresh interpreter)": imports, **{f"loop: {k}": v for k, v in
                                                         phases.items()},
             "other (start-up, exit)": doc["other_s"]}
    for name, seconds in parts.items():
        echo(f"{name:28} {seconds:9.1f} {100 * seconds / wall:5.1f}%")
    echo(f"{'whole run':28} {wall:9.1f} 100.0%   {doc['steps_per_s']:.1f} agent steps/s")
    return doc

