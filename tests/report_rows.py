"""Metric rows made in the test, shaped like `Store.metrics_frame` output (for report tests)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from blast_core.config import LADDER_IDS

VARIANTS = [
    "minigrid:unmodified",
    "minigrid:color_direction",
    "minigrid:smaller_agent",
    "minigrid:random_frames",
    "minigrid:video",
]
COLUMNS = ["run_id", "experiment", "env", "rung", "seed", "preset", "step", "frames", "name",
           "value"]


def run_id(
    env: str, rung: str, seed: int, experiment: str = "default", preset: str = "tiny"
) -> str:
    return f"{experiment}/{env.replace(':', '.')}__{rung}__{preset}__s{seed}"


def ladder_rows(
    envs: list[str] = VARIANTS,
    rungs: tuple[str, ...] | list[str] = LADDER_IDS,
    seeds: int = 3,
    evals: int = 6,
    every: int = 500,
    skip: tuple = (),
    seed: int = 0,
    experiment: str = "default",
) -> pd.DataFrame:
    """Evaluation rows rising towards a per-(env, rung) level, like the paper's Figure 3.

    Each run evaluates `evals` (± 2, so runs have different lengths) times at its own cadence
    (`every` ± 100 steps, so x grids differ); `skip` lists (env, rung) or (env, rung, seed) to leave
    out. MiniGrid has action repeat 1, so frames = steps.
    """
    rng = np.random.default_rng(seed)
    out = []
    for i, env in enumerate(envs):
        for j, rung in enumerate(rungs):
            level = 8.0 * j / max(1, len(rungs) - 1) - (i % 3)
            for s in range(1, seeds + 1):
                if (env, rung) in skip or (env, rung, s) in skip:
                    continue
                n = evals + int(rng.integers(-2, 3))
                gap = every + int(rng.integers(-100, 101))
                for k in range(1, n + 1):
                    value = level * (1 - np.exp(-2 * k / n)) + rng.normal(0, 1)
                    for name, v in (("eval_score", value), ("eval_return", value + 0.5)):
                        out.append((run_id(env, rung, s, experiment), experiment, env, rung, s,
                                    "tiny", k * gap, k * gap, name, float(v)))
    return pd.DataFrame(out, columns=COLUMNS)


def write_rows(store, rows: pd.DataFrame, status: str = "done", steps: int | None = None,
               overrides: dict | None = None) -> None:
    """Register every run of `rows` in a real Store (made with these `--steps`/`--set`
    settings) and append its metric rows."""
    for rid, g in rows.groupby("run_id", sort=True):
        first = g.iloc[0]
        store.upsert_run(rid, experiment=first["experiment"], env=first["env"],
                         rung=first["rung"], seed=int(first["seed"]), preset=first["preset"],
                         config=None, run_dir=f"/nonexistent/{rid}", steps=steps,
                         overrides=overrides or {})
        store.set_status(rid, status)
        store.append_metrics(rid, list(zip(g["step"], g["frames"], g["name"], g["value"],
                                           strict=True)))
    # Every run is registered, so a report test never reads rows of a run the store lacks.
    for experiment in set(rows["experiment"]):
        stored = {r["id"] for r in store.runs(experiment)}
        assert set(rows[rows["experiment"] == experiment]["run_id"]) <= stored
