"""A metric row, as every part of blast sees it: the database's metrics table, `blast export`
files and the live sinks (TensorBoard, W&B) all carry (step, frames, name, value), with the
names the training loop gives (`eval_score`, `kl`, ...) and the agent step as the step."""

from __future__ import annotations

from collections.abc import Iterable

Row = tuple[int, int, str, float]
"""(agent step, env frames, metric name, value)."""


def by_step(rows: Iterable[Row]) -> dict[int, dict[str, float]]:
    """{step: {"frames": frames, name: value, ...}}, steps in the order first seen: one logging
    call per step for a backend that takes a dict per step (W&B)."""
    out: dict[int, dict[str, float]] = {}
    for step, frames, name, value in rows:
        out.setdefault(step, {"frames": frames})[name] = value
    return out
