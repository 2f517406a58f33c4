"""The update timings of two commits side by side, in one call: `blast bench --models` of each,
alternated round by round so that both see the same machine load.

    python benchmarks/commits.py --baseline 75a3fb4 --preset cpu --rung dv2 --rung bn \
        --rung ar_prior --rounds 4 --out docs/results/bench/cpu-update.json

The baseline is checked out into a temporary `git worktree` (removed afterwards); the other
side is this working tree as it is. Each round runs `blast bench --models --threads 1 --clock
cpu` once per tree and rung, in a fresh process; the figure per tree is the median over the
rounds of each round's median. `ratio` = baseline / current (above 1: the current tree is
faster). With `--clock cpu` a 1-thread run counts its own CPU time, so a second job on the
other core changes the figures less than it changes wall time (memory bandwidth and caches
are still shared).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMINGS = ("world_model_ms", "imagine_ms", "behavior_ms", "update_ms", "act_ms")


def bench(tree: Path, preset: str, rung: str, reps: int, sets: list[str]) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [sys.executable, "-m", "blast_cli", "bench", "--models", "--preset", preset,
               "--rung", rung, "--threads", "1", "--clock", "cpu", "--reps", str(reps),
               "--json", out.name]
        for s in sets:
            cmd += ["--set", s]
        env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
        subprocess.run(cmd, cwd=tree, env=env, check=True, capture_output=True, text=True)
        return json.loads(Path(out.name).read_text())["results"][0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", required=True, help="the commit to compare against")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--rung", action="append", help="repeatable; default dv2, bn, ar_prior")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions per bench call")
    ap.add_argument("--set", action="append", default=[], help="a config override for both")
    ap.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args()
    rungs = args.rung or ["dv2", "bn", "ar_prior"]
    commit = subprocess.run(["git", "rev-parse", "--short", args.baseline], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout.strip()
    head = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout.strip()
    base = Path(tempfile.mkdtemp(prefix="blast-baseline-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(base), commit], cwd=ROOT,
                   check=True, capture_output=True)
    trees = {"baseline": base, "current": ROOT}
    runs: dict[str, dict[str, list[dict]]] = {t: {r: [] for r in rungs} for t in trees}
    try:
        for i in range(args.rounds):
            for rung in rungs:
                for name, tree in trees.items():
                    row = bench(tree, args.preset, rung, args.reps, args.set)
                    runs[name][rung].append(row)
                    print(f"round {i + 1}/{args.rounds} {rung:9} {name:8} "
                          f"update {row['update_ms']:7.1f} ms", file=sys.stderr)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT,
                       capture_output=True)
        shutil.rmtree(base.parent, ignore_errors=True)
    doc = {"baseline": commit, "current": head, "preset": args.preset, "threads": 1,
           "clock": "cpu", "rounds": args.rounds, "reps": args.reps, "overrides": args.set,
           "results": []}
    print(f"{'rung':9} {'metric':15} {'baseline ' + commit:>18} {'current ' + head:>22} "
          f"{'ratio':>6}")
    for rung in rungs:
        row = {"rung": rung}
        for metric in TIMINGS:
            old = statistics.median(r[metric] for r in runs["baseline"][rung])
            new = statistics.median(r[metric] for r in runs["current"][rung])
            row[metric] = {"baseline": old, "current": new, "ratio": old / new}
            print(f"{rung:9} {metric:15} {old:18.1f} {new:22.1f} {old / new:6.2f}")
        doc["results"].append(row)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
