"""What a run is and where it lives: its identity (`RunSpec`), its directory, and the files that
make it resumable by id before any process trains it. Plain data: no torch, so the scheduler
and the CLI read and write specs without loading a model (`process` trains one).

A run is named by what it is: `<env with ':' as '.'>__<rung>__<preset>__s<seed>`, plus `__` and 8
hex digits of a sha1 over the sorted `--set` overrides and `--steps` when any is given. Its id is
`<experiment>/<name>` and its directory `<results>/<experiment>/<name>/`:

    run.json      what `blast run` was asked (RunSpec), so `blast resume RUN` needs nothing else
    config.yaml   the resolved config, fixed at the first start
    checkpoints/  ckpt-<step>.pt, the last two
    replay/       ep-<index>-<steps>.npz, one per finished training episode
    lock          held (flock) by the process running it
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from blast_core import config as C
from blast_core.config import tree as T
from blast_core.envs import check_inputs
from blast_core.errors import BlastError
from blast_core.files import write_text
from blast_core.store import connect

if TYPE_CHECKING:
    from blast_core.run.loop import Progress

_EXPERIMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class RunError(BlastError):
    """A run that cannot be started or resumed as asked."""


def device_index(device: str) -> int | None:
    """The GPU a `--device` value names (`cuda` is `cuda:0`), None for `cpu` and `auto`; a
    one-line RunError for anything else. Only the spelling: whether that GPU exists is
    `process.check_device`'s question, which needs torch."""
    if device in ("auto", "cpu"):
        return None
    match = re.fullmatch(r"cuda(?::(\d+))?", device)
    if not match:
        raise RunError(f"bad --device {device!r}: use auto, cpu or cuda:K")
    return int(match.group(1) or 0)


def say_stderr(message: str) -> None:
    """Where a run's notes go unless told otherwise: stderr, at once."""
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class RunSpec:
    """What a run is: everything that goes into its name and its config."""

    env: str
    rung: str = "dv2"
    seed: int = 0
    preset: str = "paper"
    overrides: tuple[str, ...] = ()
    """`--set` items as normalised, sorted `key=value` strings."""
    steps: int | None = None
    """`--steps`: agent steps of the run, overriding the preset's schedule.steps."""
    experiment: str = "default"

    @classmethod
    def make(cls, env: str, rung: str, seed: int, preset: str = "paper",
             overrides: list[str] | None = None, steps: int | None = None,
             experiment: str = "default") -> RunSpec:
        """Validate user input (one-line RunError/ConfigError) and normalise the overrides."""
        if seed < 0:
            raise RunError(f"--seed must be >= 0, got {seed}")
        if steps is not None and steps <= 0:
            raise RunError(f"--steps must be positive, got {steps}")
        if not _EXPERIMENT.match(experiment):
            raise RunError(f"bad experiment name {experiment!r}: use letters, digits, . _ -")
        parsed = T.parse_overrides(overrides or [])
        spec = cls(env, rung, seed, preset, tuple(sorted(f"{k}={v}" for k, v in parsed.items())),
                   steps, experiment)
        # A bad env, rung, preset, key, value or video: fail before anything is written.
        check_inputs(spec.config().env)
        return spec

    @property
    def name(self) -> str:
        name = f"{self.env.replace(':', '.')}__{self.rung}__{self.preset}__s{self.seed}"
        if self.overrides or self.steps is not None:
            payload = json.dumps({"set": sorted(self.overrides), "steps": self.steps})
            name += "__" + hashlib.sha1(payload.encode()).hexdigest()[:8]
        return name

    @property
    def run_id(self) -> str:
        return f"{self.experiment}/{self.name}"

    def override_dict(self) -> dict[str, str]:
        return T.parse_overrides(list(self.overrides))

    def config(self) -> C.Config:
        overrides: dict[str, Any] = self.override_dict()
        if self.steps is not None:
            overrides["schedule.steps"] = self.steps
        return C.make_config(self.env, self.rung, self.preset, overrides)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["overrides"] = list(self.overrides)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        return cls(**{**data, "overrides": tuple(data.get("overrides", ()))})


@dataclass
class Options:
    """How to execute a run (none of it changes what the run computes, except `deterministic`)."""

    device: str = "cpu"
    deterministic: bool = False
    threads: int | None = None
    progress: Callable[[int, int], Progress] | None = None
    """Makes a progress display from (total steps, current step); None shows nothing."""
    say: Callable[[str], None] = say_stderr
    """Where notes and the end of the run are said (stderr)."""
    graph_behavior: bool = False
    """`Runtime.graph_behavior` (the CLI reads `BLAST_GRAPH_BEHAVIOR`)."""
    keep_freed_memory: bool = True
    """`Runtime.keep_freed_memory` (the CLI reads `BLAST_KEEP_FREED_MEMORY`)."""
    log: tuple[str, ...] = ()
    """Sinks beside the store (`--log tensorboard`, `--log wandb`); a resumed run keeps those
    it was started with."""


def run_directory(root: Path, run_id: str) -> Path:
    return Path(root) / run_id



def prepare(spec: RunSpec, root: Path, say: Callable[[str], None] = print) -> C.Config:
    """The run's directory with its `run.json` and `config.yaml` (written once, atomically), and
    the config it trains with. Everything that makes a run resumable by id is on disk after
    this, before any process trains it: the scheduler calls it for every run it queues, so a
    worker killed in its first second still leaves a run `blast resume` can take up."""
    cfg = spec.config()
    directory = run_directory(root, spec.run_id)
    stored = directory / "config.yaml"
    if stored.exists():
        before = T.flatten(yaml.safe_load(stored.read_text()))
        now = T.flatten(T.to_dict(cfg))
        changed = sorted(k for k, v in now.items() if k in before and before[k] != v)
        if set(changed) - C.EXECUTION_KEYS:
            shown = [k for k in changed if k not in C.EXECUTION_KEYS]
            raise RunError(
                f"run {spec.run_id} was started with a different config ({', '.join(shown[:4])}"
                f"{', ...' if len(shown) > 4 else ''}); use `blast resume {spec.run_id}` "
                "to continue it as it was, or another --experiment"
            )
        if changed:
            own = {k: before[k] for k in changed}
            say(f"note: {spec.run_id} goes on with its own "
                + ", ".join(f"{k}={json.dumps(v)}" for k, v in own.items()))
            cfg = T.apply(cfg, own)
    else:
        directory.mkdir(parents=True, exist_ok=True)
        write_text(directory / "run.json", json.dumps(spec.to_dict(), indent=2) + "\n")
        write_text(stored, T.to_yaml(cfg))
    return cfg


def locate_run(run_id: str, root: Path, db: str,
               say: Callable[[str], None] = print) -> tuple[RunSpec, C.Config]:
    """The spec and stored config of a run to resume (`blast resume RUN`): its folder under
    `root`, or for a run the store knows whose folder is on another machine (`blast import`),
    one made here now. Without torch, so that a run id that names nothing is answered at once."""
    run_id = run_id.strip("/")
    if not (run_directory(root, run_id) / "run.json").exists():
        _adopt(run_id, root, db, say)
    return load_spec(root, run_id)


def _adopt(run_id: str, root: Path, db: str, say: Callable[[str], None]) -> None:
    """The folder of a run the store describes but that ran elsewhere (`blast import`), made
    from its row as the scheduler makes a queued run's (`prepare`): with no checkpoint here it
    starts from its first step, and its imported rows are replaced as it goes. Nothing happens
    for a run the store does not know (`load_spec` then says there is none)."""
    try:
        with connect(db, existing=True) as store:
            row = store.run(run_id)
    except BlastError:  # StoreError, no database here either: `load_spec` says there is no run
        return
    if row is None:
        return
    there = Path(row["run_dir"] or "")
    if row["run_dir"] and (there / "run.json").exists():  # here after all, under another root
        root_there = there.parents[len(Path(run_id).parts) - 1]
        raise RunError(f"{run_id} lives under {root_there}, not {root}: resume it with "
                       f"--results {root_there}")
    if row["status"] == "done":
        raise RunError(f"{run_id} is done (on {row['host'] or 'another machine'}, whose "
                       f"{row['run_dir']} holds its folder): nothing to resume")
    spec = RunSpec.make(row["env"], row["rung"], row["seed"], row["preset"],
                        [f"{k}={v}" for k, v in (row["overrides"] or {}).items()],
                        row["steps"], row["experiment"])
    if spec.run_id != run_id:
        raise RunError(f"the store's description of {run_id} names another run ({spec.run_id})")
    prepare(spec, root, say)
    host = row["host"] or "another machine"
    say(f"note: {run_id} has no folder under {root} (it ran on {host} up to step "
        f"{row['step']}): it starts again here from its first step")


def load_spec(root: Path, run_id: str) -> tuple[RunSpec, C.Config]:
    """The spec and the stored config of an existing run directory."""
    directory = run_directory(root, run_id)
    if not (directory / "run.json").exists():
        raise RunError(f"no run {run_id!r} under {root} (no {directory / 'run.json'})")
    spec = RunSpec.from_dict(json.loads((directory / "run.json").read_text()))
    cfg = T.from_dict(yaml.safe_load((directory / "config.yaml").read_text()), C.Config)
    return spec, cfg
