"""`blast bench`: throughput measurements. `--envs` times the environments (rendering included).

Model benchmarks join this command later; the environment part stays in `_bench_envs`.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Annotated, Any

import typer

from blast_core.errors import BlastError


def _bench_envs(ids: list[str] | None, steps: int) -> list[dict[str, Any]]:
    """Steps/s of each env id (default: every paper id), printed as a table and returned."""
    from blast_core.envs import ENV_IDS
    from blast_core.envs.bench import bench_envs

    rows = bench_envs(ids or list(ENV_IDS), steps)
    typer.echo(f"{'env':26} {'steps/s':>9} {'frames/s':>9}")
    for row in rows:
        typer.echo(f"{row['env']:26} {row['steps_per_s']:9.0f} {row['frames_per_s']:9.0f}")
    typer.echo(f"(MUJOCO_GL={os.environ.get('MUJOCO_GL', 'unset')}, {steps} random steps each)")
    return rows


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
        int, typer.Option(help="With --envs: random agent steps timed per env.")
    ] = 1000,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Also write the results to this JSON file.")
    ] = None,
) -> None:
    """Measure throughput (benchmarks are never unit tests)."""
    if not envs:
        raise BlastError("nothing to benchmark: pass --envs")
    result: dict[str, Any] = {"host": platform.node()}
    result["envs"] = _bench_envs(env, steps)
    result["mujoco_gl"] = os.environ.get("MUJOCO_GL")
    if json_file is not None:
        _write_json(json_file, result)
        typer.echo(f"wrote {json_file}")
