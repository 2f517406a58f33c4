"""The on-disk episode replay and its B x T window sampler (DreamerV2, spec §2.1).

Each finished episode is one `.npz` file in the run's `replay/` folder, written to a temporary
name and renamed, so a crash never leaves half an episode behind. Files are compressed, and
their arrays held in memory; with `replay.mmap` they are stored uncompressed and their frames
are memory-mapped from the file instead (`memmap_member`). The replay's *index*
(the ordered list of stored file names) is what a checkpoint records: on resume every file not in
the checkpoint's index was written after the weights and is deleted, so the replay never holds data
newer than the weights.

One entry per observation (an episode of N agent steps has N + 1 entries):

    entry t:  image_t   action_t (led to image_t; zeros at reset)   reward_t (received on arrival)
              is_first_t (t == 0)   is_last_t   is_terminal_t
"""

from __future__ import annotations

import struct
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from blast_core.config import ReplayConfig
from blast_core.errors import BlastError
from blast_core.files import atomic_write

KEYS = ("image", "action", "reward", "is_first", "is_last", "is_terminal")
DTYPES = {
    "image": np.uint8,
    "action": np.float32,
    "reward": np.float32,
    "is_first": bool,
    "is_last": bool,
    "is_terminal": bool,
}
# What the agent trains on (the `agent.update` contract); `is_last` stays in the files.
BATCH_KEYS = ("image", "action", "reward", "is_first", "is_terminal")

Episode = dict[str, np.ndarray]


class EpisodeBuffer:
    """The entries of the episode in progress; `arrays()` stacks them into one Episode."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def add(self, entry: Mapping[str, Any]) -> None:
        missing = set(KEYS) - set(entry)
        if missing:
            raise ValueError(f"replay entry lacks {sorted(missing)}")
        self.entries.append({k: np.asarray(entry[k], DTYPES[k]) for k in KEYS})

    def __len__(self) -> int:
        return len(self.entries)

    def arrays(self) -> Episode:
        if not self.entries:
            return {}
        return {k: np.stack([e[k] for e in self.entries]) for k in KEYS}

    def load(self, episode: Mapping[str, np.ndarray]) -> None:
        """Replace the buffer by the entries of a stacked episode (used on resume)."""
        n = len(episode["image"]) if episode else 0
        self.entries = [{k: np.asarray(episode[k][t], DTYPES[k]) for k in KEYS} for t in range(n)]

    def clear(self) -> None:
        self.entries = []


def steps_of(episode: Episode) -> int:
    """Agent steps of an episode: entries minus the reset entry."""
    return len(episode["image"]) - 1


def max_map_count(path: Path = Path("/proc/sys/vm/max_map_count")) -> int:
    """The kernel's limit on one process's memory maps (Linux; 65530 by default)."""
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return 65530


def window_start(rng: np.random.Generator, entries: int, length: int, prioritize_ends: bool) -> int:
    """DreamerV2's start index: uniform over the valid starts; with `prioritize_ends`, `length`
    extra slots all collapse onto the last valid start, oversampling windows that end episodes."""
    available = entries - length
    upper = available + 1 + (length if prioritize_ends else 0)
    return min(int(rng.integers(0, upper)), available)


def memmap_member(path: Path, key: str) -> np.ndarray | None:
    """Array `key` of an .npz file as a read-only memory map, or None where the member is
    compressed. An .npz is a zip archive of .npy files; a member stored uncompressed is the .npy
    file's bytes as they are, after the zip's local header."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{key}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if local[:4] != b"PK\x03\x04":
            raise BlastError(f"{path}: damaged zip header of {key}.npy")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read(f)
        offset = f.tell()
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                     order="F" if fortran else "C")


class Replay:
    """Finished episodes on disk (FIFO up to `capacity` steps) and a seeded window sampler."""

    def __init__(
        self, directory: Path, cfg: ReplayConfig, batch: int, length: int, seed: int
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.cfg, self.batch, self.length = cfg, batch, length
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E71]))
        self.episodes: dict[str, Episode] = {}  # name -> arrays, oldest first
        # Dropped from the index; their files stay while a kept checkpoint may still name them.
        self.evicted: list[str] = []  # since the last checkpoint
        self.retired: list[str] = []  # between the last two checkpoints
        self.steps = 0
        self.maps, self.max_maps, self.warned = 0, max_map_count() // 2, False

    # --- adding ----------------------------------------------------------------------------------

    def add(self, episode: Episode, index: int) -> str | None:
        """Store a finished episode as `ep-<index>-<steps>.npz`; None if shorter than minlen."""
        steps = steps_of(episode)
        if steps < self.cfg.minlen:
            return None
        name = f"ep-{index:07d}-{steps}.npz"
        with atomic_write(self.directory / name, durable=True) as f:
            (np.savez if self.cfg.mmap else np.savez_compressed)(f, **episode)
        self._insert(name, self._open(name, episode) if self.cfg.mmap else episode)
        return name

    def _open(self, name: str, episode: Episode | None = None) -> Episode:
        """A stored episode's arrays (`episode`: the ones just written, not read again); with
        `mmap`, its frames mapped from the file where the file is uncompressed (one written with
        `mmap` off is read into memory)."""
        path = self.directory / name
        mapped = self.cfg.mmap and self.maps < self.max_maps
        image = memmap_member(path, "image") if mapped else None
        if episode is None:
            with np.load(path, allow_pickle=False) as data:
                episode = {k: data[k] for k in KEYS if k != "image" or image is None}
        if image is not None:
            episode = {**episode, "image": image}
            self.maps += 1
        if self.cfg.mmap and self.maps == self.max_maps and not self.warned:
            self.warned = True
            warnings.warn(f"replay: {self.maps} episodes memory-mapped, half the kernel's "
                          "vm.max_map_count; later episodes are held in memory", stacklevel=2)
        return episode

    def _insert(self, name: str, episode: Episode) -> None:
        self.episodes[name] = episode
        self.steps += steps_of(episode)
        # FIFO over whole episodes; the newest always stays, however small the capacity.
        while self.steps > self.cfg.capacity and len(self.episodes) > 1:
            oldest = next(iter(self.episodes))
            dropped = self.episodes.pop(oldest)
            self.steps -= steps_of(dropped)
            self.maps -= isinstance(dropped["image"], np.memmap)
            self.evicted.append(oldest)

    # --- sampling --------------------------------------------------------------------------------

    def _candidates(self) -> list[str]:
        return [n for n, ep in self.episodes.items() if len(ep["image"]) >= self.length]

    @property
    def ready(self) -> bool:
        """Whether one episode is long enough to cut a window of `length` entries from."""
        return any(len(ep["image"]) >= self.length for ep in self.episodes.values())

    def sample(self) -> Episode:
        """A batch of `batch` windows of `length` entries: {key: [B, T, ...]} (spec §2.1)."""
        names = self._candidates()
        if not names:
            raise BlastError(
                f"replay holds no episode of {self.length} entries yet; lower dataset.length"
            )
        windows = []
        for _ in range(self.batch):
            episode = self.episodes[names[int(self.rng.integers(0, len(names)))]]
            start = window_start(
                self.rng, len(episode["image"]), self.length, self.cfg.prioritize_ends
            )
            window = {k: episode[k][start : start + self.length] for k in BATCH_KEYS}
            # Every window starts a fresh RSSM state (no burn-in), as in DreamerV2.
            window["is_first"] = window["is_first"].copy()
            window["is_first"][0] = True
            windows.append(window)
        return {k: np.stack([w[k] for w in windows]) for k in BATCH_KEYS}

    # --- checkpointing ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The index and the sampler's generator: plain containers for `torch.save`."""
        return {"episodes": list(self.episodes), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the index of a checkpoint: load its files and delete every other episode file
        (newer than the checkpoint, evicted earlier, or a half-written temporary)."""
        keep = list(state["episodes"])
        missing = [n for n in keep if not (self.directory / n).exists()]
        if missing:
            raise BlastError(
                f"replay file {self.directory / missing[0]} named by the checkpoint is missing"
            )
        for path in self.directory.iterdir():
            if path.name not in keep:
                path.unlink()
        self.episodes, self.evicted, self.retired, self.steps, self.maps = {}, [], [], 0, 0
        for name in keep:
            self._insert(name, self._open(name))
        self.rng.bit_generator.state = state["rng"]

    def on_checkpoint(self) -> None:
        """Call after each checkpoint is complete. With the last two checkpoints kept, an episode
        evicted before the previous checkpoint is named by neither of them, so its file goes."""
        for name in self.retired:
            (self.directory / name).unlink(missing_ok=True)
        self.retired, self.evicted = self.evicted, []
