"""`blast envs list|show`: the environment ids, and a grid of sample observations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from blast_cli import options
from blast_core import config as C
from blast_core import envs
from blast_core.config import tree as T

# blast_core.envs (minigrid, gymnasium) is imported inside the commands: ~0.7 s that the other
# commands of `blast` should not pay at start-up.

app = typer.Typer(help="List the environments and draw sample observations.", no_args_is_help=True)

DESCRIPTIONS = {
    "minigrid:unmodified": "Dynamic-Obstacles 6x6, random start; the agent is a red triangle",
    "minigrid:color_direction": "the agent is a circle whose colour encodes its direction",
    "minigrid:smaller_agent": "the agent's triangle covers a quarter of the pixels",
    "minigrid:random_frames": "black background replaced by a random video frame every step",
    "minigrid:video": "black background replaced by the video, in order from a random frame",
}
DMC_DESCRIPTION = "DeepMind Control from pixels, action repeat 2, 500 agent steps"


@app.command("list")
def list_(
    all_: Annotated[
        bool, typer.Option("--all", help="Also list every other dm_control suite task.")
    ] = False,
) -> None:
    """Print the paper's env ids (MiniGrid renderings, then DMC tasks)."""
    for env_id in envs.ENV_IDS:
        typer.echo(f"{env_id:26} {DESCRIPTIONS.get(env_id, DMC_DESCRIPTION)}")
    if all_:
        paper = {envs.check_env_id(i)[1] for i in envs.DMC_PAPER_IDS}
        for env_id in envs.dmc_ids():
            if env_id.split(":", 1)[1] not in paper and env_id != "dmc:ball_in_cup_catch":
                typer.echo(env_id)


@app.command()
def show(
    env_ids: Annotated[list[str], typer.Argument(help="Env ids, one column each.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The PNG file to write.")],
    frames: Annotated[int, typer.Option(help="Observations per env (rows).")] = 1,
    stride: Annotated[int, typer.Option(help="Agent steps between rows.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of every env (same layouts and actions).")] = 0,
    set_: options.Set = None,
) -> None:
    """Draw sample observations; the five MiniGrid ids give the paper's Figure 2."""
    from blast_core.envs.figure import sample_observations, save_grid  # matplotlib

    if out.suffix.lower() != ".png":  # checked before minutes of rendering, not after
        raise C.ConfigError(f"--out must name a .png file, got {str(out)!r}")
    obs = sample_observations(env_ids, frames, stride, seed, T.parse_overrides(set_ or []))
    typer.echo(f"wrote {save_grid(obs, env_ids, out, stride)}")
