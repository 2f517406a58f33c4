"""`blast bench`: throughput measurements. Without `--envs` it times one update of the agent and
its parts per rung (blast_core.bench.models); `--envs` times the environments (rendering included).
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Annotated, Any

import typer

from blast_cli.options import Set, runtime_switches
from blast_core.bench.compare import METRICS, compare
from blast_core.bench.run import bench_run
from blast_core.config import tree as T
from blast_core.config.ids import ENV_IDS
from blast_core.envs.bench import bench_envs
from blast_core.errors import BlastError


def _bench_envs(ids: list[str] | None, steps: int) -> list[dict[str, Any]]:
    """Steps/s of each env id (default: every paper id), printed as a table and returned."""
    rows = bench_envs(ids or list(ENV_IDS), steps)
    typer.echo(f"{'env':26} {'steps/s':>9} {'frames/s':>9}")
    for row in rows:
        typer.echo(f"{row['env']:26} {row['steps_per_s']:9.0f} {row['frames_per_s']:9.0f}")
    typer.echo(f"(MUJOCO_GL={os.environ.get('MUJOCO_GL', 'unset')}, {steps} random steps each)")
    return rows


def _bench_models(preset: str, family: str, rungs: list[str] | None, reps: int, warmup: int,
                  device: str | None, threads: int | None, precision: str,
                  clock: str, set_: list[str]) -> dict[str, Any]:
    from blast_core.bench.models import bench_models  # torch: only when models are timed

    if threads is not None and threads < 1:
        raise BlastError(f"--threads {threads} must be >= 1")
    doc = bench_models(preset, family, rungs, device, reps, warmup, echo=typer.echo,
                       precision=precision, clock=clock, overrides=T.parse_overrides(set_),
                       switches=runtime_switches(), threads=threads)
    typer.echo(f"({doc['device']}, torch {doc['torch']}, {precision}, fp32 matmul peak "
               f"{doc['matmul_peak_gflops']:.0f} GFLOP/s, {clock} clock, median of {reps} after "
               f"{warmup} warm-up)")
    return doc


def _print_baseline(doc: dict[str, Any], path: Path) -> None:
    try:
        baseline = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise BlastError(f"cannot read baseline {path}: {e}") from None
    rows = compare(doc, baseline)
    if not rows:
        raise BlastError(f"baseline {path} shares no rung with this run")
    typer.echo(f"ratios against {path} (times: baseline / now, above 1 is faster now; "
               "others: now / baseline)")
    typer.echo(f"{'rung':10} " + " ".join(f"{m:>14}" for m in METRICS))
    for row in rows:
        cells = " ".join(f"{row[m]:14.2f}" if m in row else f"{'-':>14}" for m in METRICS)
        typer.echo(f"{row['rung']:10} {cells}")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def bench(
    envs: Annotated[
        bool, typer.Option("--envs", help="Agent steps/s of every env id, rendering included.")
    ] = False,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", "-e", help="With --envs: only this env id (repeatable)."),
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help="With --envs: random agent steps timed per env (default "
                                 "1000); with --run: the run's agent steps (default 12500).")
    ] = None,
    run: Annotated[
        bool, typer.Option("--run", help="Time one whole `blast run` (default: --preset cpu, "
                           "minigrid:unmodified, dv2, 1 thread) and where its time goes.")
    ] = False,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Also write the results to this JSON file.")
    ] = None,
    models: Annotated[
        bool, typer.Option("--models", help="Time the agent's update and its parts per rung, "
                           "with FLOPs and the share of the machine's matmul peak (implied by "
                           "--preset, --env-family, --rung and --set).")
    ] = False,
    preset: Annotated[
        str | None, typer.Option("--preset", "-p", help="paper (default), cpu or tiny.")
    ] = None,
    env_family: Annotated[
        str | None,
        typer.Option("--env-family", help="Sizes of this family: minigrid (default) or dmc."),
    ] = None,
    rung: Annotated[
        list[str] | None,
        typer.Option("--rung", "-r", help="Rung to time (repeatable; default: the ladder)."),
    ] = None,
    baseline: Annotated[
        Path | None, typer.Option(help="An earlier --json file: print the ratios against it.")
    ] = None,
    reps: Annotated[int, typer.Option(help="Timed repetitions (the median is reported).")] = 3,
    warmup: Annotated[int, typer.Option(help="Untimed repetitions before them.")] = 2,
    device: Annotated[
        str | None, typer.Option(help="cpu or cuda (default: cuda when there is one).")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="torch CPU threads (default: torch's own choice).")
    ] = None,
    precision: Annotated[
        str, typer.Option(help="fp32, or bf16: the agent's bf16 autocast mode.")
    ] = "fp32",
    clock: Annotated[
        str, typer.Option(help="wall, or cpu: this process's CPU time (for a shared machine).")
    ] = "wall",
    set_: Set = None,
) -> None:
    """Measure one update per rung (--models), environment steps/s (--envs), or one whole run
    and where its time goes (--run).

    Benchmarks are never unit tests: docs/benchmarks.md holds the measured numbers."""
    if run:
        if envs or models:
            raise BlastError("--run times one whole run: not with --envs or --models")
        if len(env or []) > 1 or len(rung or []) > 1:
            raise BlastError("--run times one run: give at most one --env and one --rung")
        result = {"host": platform.node(), "run": bench_run(
            (env or ["minigrid:unmodified"])[0], (rung or ["dv2"])[0], preset or "cpu",
            steps or 12_500, set_ or [], threads or 1, echo=typer.echo)}
        if json_file is not None:
            _write_json(json_file, result)
            typer.echo(f"wrote {json_file}")
        return
    models = models or preset is not None or env_family is not None or bool(rung) or bool(set_)
    if envs == models:
        # A paper-size model benchmark takes long on a small machine: never start it by default.
        raise BlastError("pass either --envs, or --models (or --preset/--env-family/--rung/--set)")
    result: dict[str, Any] = {"host": platform.node()}
    if envs:
        result["envs"] = _bench_envs(env, steps or 1000)
        result["mujoco_gl"] = os.environ.get("MUJOCO_GL")
    else:
        result.update(_bench_models(preset or "paper", env_family or "minigrid", rung, reps,
                                    warmup, device, threads, precision, clock, set_ or []))
        if baseline is not None:
            _print_baseline(result, baseline)
    if json_file is not None:
        _write_json(json_file, result)
        typer.echo(f"wrote {json_file}")
