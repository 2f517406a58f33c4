"""Live curves where researchers already look: every metric row a run stores, also sent to
TensorBoard and/or Weights & Biases (`blast run --log tensorboard --log wandb`).

The database stays the source of truth. A sink receives the rows the store has just taken, with
the same names and steps (`Tracker.flush`), and its failures never reach the run: the first one
is one warning line, and the sink is off for the rest of the process.

Resuming: a run restarts from its last checkpoint at step S and drops the store's rows after S.
- TensorBoard: the new writer starts with `purge_step = S + 1`, TensorBoard's own marker that
  hides every event of a later step written before it (what the crashed process logged past S),
  so each step is read once. A run that starts afresh removes its old event files.
- W&B: the same run id (derived from blast's run id) is resumed; steps that an earlier process
  already logged there are not logged again (offline: read from its `.wandb` files; online: W&B
  keeps the run's last step and ignores older ones), so each step is logged once.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import struct
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from blast_core.errors import BlastError
from blast_core.files import write_text
from blast_core.store.rows import Row, by_step

if TYPE_CHECKING:
    import numpy as np

BACKENDS = ("tensorboard", "wandb")
"""The sinks `--log` can name."""


def check_backends(names: Iterable[str]) -> tuple[str, ...]:
    """`--log` values, validated (a one-line error names the bad one) and deduplicated."""
    out = tuple(dict.fromkeys(names))
    for name in out:
        if name not in BACKENDS:
            raise BlastError(f"--log {name}: unknown backend; valid: {', '.join(BACKENDS)}")
    return out


class Sinks:
    """The run's sinks. Each call goes to every sink still on; a sink that raises is warned
    about once and switched off."""

    def __init__(self, sinks: dict[str, Any], say: Callable[[str], None]) -> None:
        self.sinks, self.say, self.images_off = sinks, say, False

    @property
    def wants_images(self) -> bool:
        return "tensorboard" in self.sinks and not self.images_off

    def _each(self, method: str, *args: Any) -> None:
        for name, sink in list(self.sinks.items()):
            try:
                getattr(sink, method)(*args)
            except Exception as e:  # a logging backend must never stop a run
                self.say(f"warning: {name} logging stopped: {type(e).__name__}: {e}")
                del self.sinks[name]
                try:
                    sink.close()
                except Exception:
                    pass

    def open(self, resume_step: int | None, rows: list[Row]) -> None:
        """Start (None: afresh) or continue after the checkpoint of `resume_step`, whose rows
        the store holds (`rows`: a sink fills in what an earlier process did not get to it)."""
        self._each("open", resume_step, rows)

    def rows(self, rows: list[Row]) -> None:
        if rows:
            self._each("rows", rows)

    def image(self, step: int, name: str, make: Callable[[], np.ndarray | None]) -> None:
        """The image `make()` draws, to the sinks that show images; drawing it is guarded as
        they are (a failure is one warning, then no more images)."""
        if not self.wants_images:
            return
        try:
            image = make()
        except Exception as e:
            self.say(f"warning: no more {name} images: {type(e).__name__}: {e}")
            self.images_off = True
            return
        if image is not None:
            self._each("image", step, name, image)

    def close(self) -> None:
        self._each("close")


def recorded_backends(directory: Path, asked: Iterable[str],
                      say: Callable[[str], None] = lambda _: None) -> tuple[str, ...]:
    """The backends a run logs to: those it was ever started with (`<run>/log.json`, so that
    `blast resume` goes on logging where it did) and those asked now, recorded for next time.
    A damaged record is a warning and is written again from `asked`: logging never stops a run."""
    path = directory / "log.json"
    asked = check_backends(asked)
    try:
        before = check_backends(json.loads(path.read_text())) if path.exists() else ()
    except (ValueError, TypeError, BlastError) as e:  # not JSON, not a list, a backend unknown
        say(f"warning: {path} is damaged ({e}); the run logs to --log's backends only")
        before = ()
    backends = check_backends([*before, *asked])
    if backends != before:
        write_text(path, json.dumps(list(backends)) + "\n")
    return backends


def make_sinks(backends: Iterable[str], run: RunInfo, say: Callable[[str], None]) -> Sinks:
    """Sinks for `backends`; one that cannot even be made (a package missing) is a warning."""
    made: dict[str, Any] = {}
    for name in backends:
        try:
            made[name] = {"tensorboard": TensorBoard, "wandb": WandB}[name](run)
        except Exception as e:
            say(f"warning: no {name} logging: {type(e).__name__}: {e}")
    return Sinks(made, say)


class RunInfo:
    """What a sink shows of a run: its ids, tags and config."""

    def __init__(self, run_id: str, directory: Path, results: Path, env: str, rung: str,
                 seed: int, preset: str, config: dict[str, Any], config_text: str) -> None:
        self.run_id, self.directory, self.results = run_id, directory, results
        self.env, self.rung, self.seed, self.preset = env, rung, seed, preset
        self.config, self.config_text = config, config_text

    @property
    def experiment(self) -> str:
        return self.run_id.split("/", 1)[0]

    @property
    def label(self) -> str:
        """`env/rung/seed` (and the preset, and the settings' hash when the name has one)."""
        extra = self.run_id.split("__")[4:]  # the name's settings hash, if any
        return "/".join([self.env.replace(":", "."), self.rung,
                         f"s{self.seed}-{self.preset}" + "".join(f"-{e}" for e in extra)])


# --- TensorBoard ---------------------------------------------------------------------------------


class TensorBoard:
    """Event files under `<results>/<experiment>/tensorboard/<env>/<rung>/s<seed>-<preset>`, so
    `tensorboard --logdir <results>/<experiment>` lists every run by env, rung and seed."""

    def __init__(self, run: RunInfo) -> None:
        from torch.utils.tensorboard import SummaryWriter  # fails here when it is not installed

        self.run, self.writer_class, self.writer = run, SummaryWriter, None
        self.folder = run.results / run.experiment / "tensorboard" / run.label

    def open(self, resume_step: int | None, rows: list[Row]) -> None:
        # Events up to a checkpoint are flushed before it is written (`Tracker.flush`): only
        # those after it need hiding.
        if resume_step is None:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        purge = None if resume_step is None else resume_step + 1
        self.writer = self.writer_class(str(self.folder), purge_step=purge, flush_secs=30)
        if resume_step is None:
            self.writer.add_text("config", f"```yaml\n{self.run.config_text}```", 0)

    def rows(self, rows: list[Row]) -> None:
        for step, _, name, value in rows:
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def image(self, step: int, name: str, image: np.ndarray) -> None:
        self.writer.add_image(name, image, step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# --- Weights & Biases ----------------------------------------------------------------------------


def wandb_id(run_id: str) -> str:
    """The W&B run id of a blast run: stable, unique, and in W&B's alphabet."""
    return "blast-" + hashlib.sha1(run_id.encode()).hexdigest()[:16]


def _wandb() -> ModuleType:
    import wandb.proto.wandb_internal_pb2  # the optional `log` extra: fails here without it

    return wandb


class WandB:
    """One W&B run per blast run, grouped by experiment, tagged with env, rung, seed and preset,
    the resolved config as its config. Without an API key (no WANDB_API_KEY, no `wandb login`)
    it runs offline under `<run>/wandb/`, for `wandb sync` later; it never prompts."""

    def __init__(self, run: RunInfo) -> None:
        self.wandb, self.run, self.handle, self.logged = _wandb(), run, None, -1

    def _mode(self) -> str:
        if os.environ.get("WANDB_MODE"):
            return os.environ["WANDB_MODE"]
        netrc = Path.home() / ".netrc"
        online = os.environ.get("WANDB_API_KEY") or (
            netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="replace"))
        return "online" if online else "offline"

    def open(self, resume_step: int | None, rows: list[Row]) -> None:
        run, mode = self.run, self._mode()
        folder = run.directory / "wandb"
        if resume_step is None:
            shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("WANDB_SILENT", "true")
        self.handle = self.wandb.init(
            id=wandb_id(run.run_id), name=run.run_id.split("/", 1)[1],
            project=os.environ.get("WANDB_PROJECT", "blast"), group=run.experiment,
            tags=[run.env, run.rung, f"seed{run.seed}", run.preset], config=run.config,
            dir=str(run.directory), mode=mode, resume="allow",
            settings=self.wandb.Settings(console="off", silent=True))
        # Offline, what an earlier process logged is in its .wandb files: a killed process's
        # last records may never have reached them, so the store's rows fill the gaps. Online,
        # W&B itself ignores steps at or below the run's last one.
        logged = set(offline_steps(run.directory, wandb_id(run.run_id)))
        self.logged = -1
        self.rows([r for r in rows if r[0] not in logged])
        self.logged = max([self.logged, *logged])

    def rows(self, rows: list[Row]) -> None:
        steps = by_step(rows)
        for step in sorted(steps):
            if step > self.logged:
                self.handle.log(steps[step], step=step)
                self.logged = step

    def image(self, step: int, name: str, image: np.ndarray) -> None:
        pass  # the reconstructions go to TensorBoard only

    def close(self) -> None:
        if self.handle is not None:
            self.handle.finish()


_BLOCK, _HEADER = 32768, 7
"""W&B's transaction log: LevelDB's log format (32 KiB blocks of records, each with a 7-byte
header: crc32c, length, type) after a 7-byte file header, holding `Record` protobufs."""


def read_wandb_records(path: Path) -> list[Any]:
    """The `Record`s of one `.wandb` file (a torn last record, from a killed process, is left
    out)."""
    pb = _wandb().proto.wandb_internal_pb2
    data, records, pos, chunks = Path(path).read_bytes(), [], _HEADER, b""
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + _HEADER])
        if kind == 0 or pos + _HEADER + length > len(data):
            break
        chunk, pos = data[pos + _HEADER:pos + _HEADER + length], pos + _HEADER + length
        chunks = chunk if kind in (1, 2) else chunks + chunk  # full or first / middle or last
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(chunks)
            records.append(record)
    return records


def offline_steps(directory: Path, run_id: str) -> list[int]:
    """Every history step in the offline runs of W&B run `run_id` under `directory/wandb`."""
    steps = []
    pattern = directory / "wandb" / "offline-run-*" / f"run-{run_id}.wandb"
    for path in sorted(glob.glob(str(pattern))):
        try:
            records = read_wandb_records(Path(path))
        except Exception as e:  # an unreadable file: say so, resume logging all the same
            print(f"warning: cannot read {path}: {e}", file=sys.stderr)
            continue
        steps += [record.history.step.num for record in records
                  if record.WhichOneof("record_type") == "history"]
    return steps
