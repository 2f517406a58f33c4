"""Recipes: one YAML file per experiment, naming its envs, rungs and seeds once.

    experiment: figure3                 # the experiment the runs belong to
    description: Figure 3 of the paper  # optional
    envs: [minigrid:unmodified, ...]    # required
    rungs: [dv2, no_recon, ...]         # optional, default the whole ladder (dv2 .. ar_prior)
    seeds: 5                            # N (seeds 0..N-1) or a list of seeds
    preset: paper                       # optional, default paper
    steps: 50000                        # optional, agent steps of every run
    set: {rssm.stoch: 8}                # optional, overrides applied to every run
    log: [tensorboard]                  # optional, sinks beside the database (as --log)

Loading checks everything (unknown keys, envs, rungs, presets, config keys and values) and
raises a one-line RecipeError before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from blast_core import config as C
from blast_core.errors import BlastError
from blast_core.run.sinks import check_backends
from blast_core.run.spec import RunSpec
from blast_core.scheduling.jobs import grid

KEYS = ("experiment", "description", "envs", "rungs", "seeds", "preset", "steps", "set", "log")


class RecipeError(BlastError):
    """A recipe file that cannot be read or names something unknown."""


@dataclass(frozen=True)
class Recipe:
    experiment: str
    envs: tuple[str, ...]
    seeds: tuple[int, ...]
    rungs: tuple[str, ...] = C.LADDER_IDS
    preset: str = "paper"
    steps: int | None = None
    overrides: tuple[str, ...] = ()
    """`key=value` items, as `--set` takes them."""
    log: tuple[str, ...] = ()
    """Sinks beside the database (`--log`): how the runs report, not what they are."""
    description: str = ""
    text: str = ""
    """The file's YAML, stored with the experiment."""

    @property
    def size(self) -> int:
        return len(self.envs) * len(self.rungs) * len(self.seeds)


def _seeds(value: Any) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise RecipeError(f"seeds: expected a count >= 1, got {value}")
        return tuple(range(value))
    if isinstance(value, list) and value and all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value
    ):
        if len(set(value)) != len(value):
            raise RecipeError(f"seeds: repeated seed in {value}")
        return tuple(value)
    raise RecipeError(f"seeds: expected a count or a list of seeds >= 0, got {value!r}")


def _names(data: dict, key: str, default: tuple[str, ...] | None = None) -> tuple[str, ...]:
    value = data.get(key, default)
    if value is None:
        raise RecipeError(f"missing required key {key!r}")
    if isinstance(value, str):
        value = [value]
    names_ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
    if not names_ok or not value:
        raise RecipeError(f"{key}: expected a non-empty list of names, got {value!r}")
    return tuple(value)


def parse(text: str, source: str = "recipe") -> Recipe:
    """Parse and check a recipe's YAML text; errors name the source."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise RecipeError(f"{source}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: expected a mapping of {', '.join(KEYS)}")
    try:
        unknown = sorted(set(data) - set(KEYS))
        if unknown:
            raise RecipeError(f"unknown key(s) {unknown}; valid: {', '.join(KEYS)}")
        if not isinstance(data.get("experiment"), str):
            raise RecipeError("missing required key 'experiment' (a name)")
        steps = data.get("steps")
        if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool)):
            raise RecipeError(f"steps: expected an integer, got {steps!r}")
        overrides = data.get("set") or {}
        if not isinstance(overrides, dict):
            raise RecipeError(f"set: expected a mapping of config keys, got {overrides!r}")
        recipe = Recipe(
            experiment=data["experiment"], envs=_names(data, "envs"),
            seeds=_seeds(data.get("seeds", 1)), rungs=_names(data, "rungs", C.LADDER_IDS),
            preset=str(data.get("preset", "paper")), steps=steps,
            overrides=tuple(f"{k}={_scalar(v)}" for k, v in overrides.items()),
            log=check_backends(_names(data, "log") if "log" in data else ()),
            description=str(data.get("description", "")), text=text,
        )
        specs(recipe)  # every run's config resolves, or the first error is raised here
    except BlastError as e:
        raise RecipeError(f"{source}: {e}") from None
    return recipe


def _scalar(value: Any) -> str:
    """A YAML value as `--set` text (lists as a,b,c)."""
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def load(path: str | Path) -> Recipe:
    """Read and check a recipe file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise RecipeError(f"cannot read recipe {str(path)!r}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise RecipeError(f"recipe {str(path)!r} is not a text (UTF-8 YAML) file") from None
    return parse(text, str(path))


def narrow(recipe: Recipe, envs: Sequence[str] = (), rungs: Sequence[str] = (),
           seeds: Sequence[int] = ()) -> Recipe:
    """The recipe restricted to some of its envs, rungs and seeds (`run-recipe --env --rungs
    --seed`: which cells a few cores fill first; the rest runs when the recipe runs whole). An
    empty choice keeps all; one the recipe does not name is an error that lists what it does."""
    picks: dict[str, tuple] = {}
    for key, flag, asked in (("envs", "--env", envs), ("rungs", "--rungs", rungs),
                             ("seeds", "--seed", seeds)):
        have = getattr(recipe, key)
        missing = [str(a) for a in dict.fromkeys(asked) if a not in have]
        if missing:
            raise RecipeError(f"{flag} {', '.join(missing)}: not in the recipe's {key} "
                              f"({', '.join(map(str, have))})")
        if asked:
            picks[key] = tuple(a for a in have if a in asked)  # the recipe's order
    return replace(recipe, **picks)


def specs(recipe: Recipe, experiment: str | None = None) -> list[RunSpec]:
    """The recipe's runs (env x rung x seed), validated."""
    return grid(recipe.envs, recipe.rungs, recipe.seeds, recipe.preset,
                experiment or recipe.experiment, recipe.steps, recipe.overrides)
