"""Background videos for MiniGrid's random_frames and video variants.

The paper plays one fixed Kinetics "driving car" clip behind the grid. Two sources are offered:

- a file the user names (`--set env.video=PATH`): read with imageio (mp4 through imageio-ffmpeg),
  each frame resized to (size, size) once and cached as .npy under the results root, so later
  runs skip decoding;
- without one, `procedural_video`: a deterministic road scene generated in code (drifting clouds,
  a swaying horizon, lane marks, grass stripes and cars moving towards the camera), so nothing has
  to be downloaded. It has what the experiment needs: texture and motion that are temporally
  correlated and independent of the agent.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from blast_core.errors import BlastError

MAX_FRAMES = 3000
"""A user video is read up to this many frames (100 s at 30 fps; 37 MB at 64x64)."""
PROCEDURAL_FRAMES = 300
"""Length of the procedural video: 10 s at 30 fps, like a Kinetics clip."""


def video_frames(path: str, size: int, cache: Path | None = None) -> np.ndarray:
    """The background clip as (N, size, size, 3) uint8, read-only: the file at `path`, or the
    procedural video when `path` is empty. A file's decoded, resized frames are kept under
    `cache/videos/` for the next run (None: in this process only)."""
    if not path:
        return procedural_video(size)
    check_video(path)
    file = Path(path).expanduser()
    stat = file.stat()
    return _load_cached(str(file.resolve()), stat.st_size, stat.st_mtime_ns, size, cache)


def check_video(path: str) -> None:
    """A one-line BlastError unless `path` is a readable file whose first frame decodes: the
    check a run makes before anything is written (reading the whole clip waits for the env)."""
    file = Path(path).expanduser()
    if file.is_dir():
        raise BlastError(f"video {path} is a folder, not a video file")
    if not file.is_file():
        raise BlastError(f"video file not found: {path}")
    if not os.access(file, os.R_OK):
        raise BlastError(f"video {path} cannot be read (permission denied)")
    stat = file.stat()
    _first_frame(str(file.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _first_frame(path: str, nbytes: int, mtime_ns: int) -> None:
    try:
        next(_imiter(path))
    except StopIteration:
        raise BlastError(f"cannot read video {path}: it has no frames") from None
    except Exception as e:  # imageio raises many types for a file it cannot decode
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise BlastError(f"cannot read video {path}: {reason}") from None


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, nbytes: int, mtime_ns: int, size: int,
                 cache_dir: Path | None) -> np.ndarray:
    # The key names the file's size and modification time, so an edited file is read again.
    key = hashlib.sha1(f"{path}|{nbytes}|{mtime_ns}|{size}".encode()).hexdigest()[:16]
    cache = cache_dir and cache_dir / "videos" / f"{Path(path).stem}-{size}px-{key}.npy"
    frames = None
    if cache and cache.is_file():
        try:
            frames = np.load(cache)
        except (OSError, ValueError):
            frames = None  # a damaged cache file is rebuilt below
    if frames is None or frames.ndim != 4 or frames.shape[1:] != (size, size, 3):
        frames = _read_resized(path, size)
        if cache:
            _save_atomic(cache, frames)
    frames.setflags(write=False)
    return frames


def _imiter(path: str) -> Iterator[np.ndarray]:
    """The file's frames, one at a time."""
    import imageio.v3 as iio  # only a run with a video background reads one

    return iter(iio.imiter(path))


def _read_resized(path: str, size: int) -> np.ndarray:
    frames = []
    try:
        for frame in _imiter(path):
            frames.append(_resize(np.asarray(frame), size))
            if len(frames) >= MAX_FRAMES:
                break
    except Exception as e:  # imageio raises many types for a file it cannot decode
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise BlastError(f"cannot read video {path}: {reason}") from None
    if not frames:
        raise BlastError(f"cannot read video {path}: it has no frames")
    return np.stack(frames)


def _resize(frame: np.ndarray, size: int) -> np.ndarray:
    """Any decoded frame (grey, RGB or RGBA; any dtype) -> (size, size, 3) uint8, aspect squashed
    like `ffmpeg -vf scale=size:size`."""
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=-1)
    frame = frame[..., :3]
    if frame.shape[-1] == 1:
        frame = np.repeat(frame, 3, axis=-1)
    if frame.dtype != np.uint8:
        top = 1.0 if np.issubdtype(frame.dtype, np.floating) else np.iinfo(frame.dtype).max
        frame = np.clip(frame.astype(np.float64) / top * 255.0, 0, 255).astype(np.uint8)
    # Pillow's bilinear filter widens its support when shrinking, so it averages like INTER_AREA.
    image = Image.fromarray(np.ascontiguousarray(frame)).resize(
        (size, size), Image.Resampling.BILINEAR
    )
    return np.asarray(image, dtype=np.uint8)


def _save_atomic(cache: Path, frames: np.ndarray) -> None:
    """Write the cache by rename, so a concurrent reader never sees half a file; a read-only
    results root only costs the decoding next time."""
    tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            np.save(f, frames)
        os.replace(tmp, cache)
    except OSError:
        tmp.unlink(missing_ok=True)


# --- the procedural road scene -------------------------------------------------------------------


def _periodic_noise(rng: np.random.Generator, cells: int, side: int = 256) -> np.ndarray:
    """Smooth value noise in [0, 1] on a (side, side) torus: a random `cells` grid, bilinearly
    interpolated with wrap-around, so it can be sampled at any coordinate modulo `side`."""
    grid = rng.random((cells, cells))
    pos = np.arange(side) * cells / side
    i0 = pos.astype(int)
    i1 = (i0 + 1) % cells
    w = pos - i0
    rows = grid[i0] * (1 - w)[:, None] + grid[i1] * w[:, None]
    return rows[:, i0] * (1 - w)[None, :] + rows[:, i1] * w[None, :]


def _sample(tex: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    side = tex.shape[0]
    return tex[v.astype(np.int64) % side, u.astype(np.int64) % side]


def _lerp(a: tuple, b: tuple, w: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return a + (b - a) * w[..., None]


@functools.lru_cache(maxsize=4)
def procedural_video(size: int = 64, frames: int = PROCEDURAL_FRAMES) -> np.ndarray:
    """A deterministic driving scene, (frames, size, size, 3) uint8, read-only."""
    rng = np.random.default_rng(2022)
    clouds, grain, hills = (_periodic_noise(rng, c) for c in (8, 32, 6))
    s = size / 64.0  # everything is laid out for 64 px and scaled
    t = np.arange(frames, dtype=np.float32)[:, None, None]  # (N, 1, 1)
    y = (np.arange(size, dtype=np.float32) + 0.5)[None, :, None]  # (1, S, 1)
    x = (np.arange(size, dtype=np.float32) + 0.5)[None, None, :]  # (1, 1, S)
    # The camera sways and bobs, which moves the whole picture.
    horizon = size * 0.42 + 0.7 * s * np.sin(2 * np.pi * t / 23.0)
    vanish = size / 2 + 7 * s * np.sin(2 * np.pi * t / 170.0)
    below = np.maximum(y - horizon, 0.5)  # rows under the horizon (N, S, 1)
    depth = 0.6 * size / below  # distance along the road of a ground pixel
    lateral = (x - vanish) / (0.9 * below)  # position across the road; |lateral| < 1 is road
    travel = depth + 0.15 * t  # the car drives forward, so ground texture moves towards us

    img = np.empty((frames, size, size, 3), np.float32)
    # Sky: a gradient with clouds drifting to the left.
    sky = _lerp((90, 140, 210), (190, 210, 235), np.broadcast_to(y / horizon, img.shape[:3]))
    cloud = _sample(clouds, (x / s + 0.4 * t) * 2, y / s * 6)
    sky += (np.clip(cloud - 0.45, 0, 1) * 300)[..., None]
    # Hills on the horizon, drifting slowly (parallax).
    ridge = horizon - (2 + 6 * _sample(hills, (x / s + 0.08 * t) * 3, np.zeros_like(x))) * s
    hill = (y > ridge) & (y <= horizon)
    # Ground: grass with stripes across the road, asphalt with grain, lane and edge marks.
    stripe = (np.floor(travel / 3.0) % 2)[..., None]
    grass = _lerp((70, 130, 60), (88, 152, 72), np.broadcast_to(stripe[..., 0], travel.shape))
    noise = _sample(grain, lateral * 40, travel * 20)
    road = np.broadcast_to(np.float32(98), travel.shape) + 24 * (noise - 0.5)
    on_road = np.abs(lateral) < 1.0
    mark = (np.abs(lateral) < 0.04) & ((travel / 2.0) % 1.0 < 0.45)
    mark |= (np.abs(lateral) > 0.9) & (np.abs(lateral) < 0.97)
    ground = np.where(on_road[..., None], road[..., None].repeat(3, -1), grass)
    ground = np.where(mark[..., None], np.float32(225), ground)
    ground += (16 * (noise - 0.5))[..., None]

    sky_mask = np.broadcast_to(y <= horizon, img.shape[:3])
    img[:] = np.where(sky_mask[..., None], sky, ground)
    img[np.broadcast_to(hill, img.shape[:3])] = (45, 95, 55)
    cars = ((0.5, (200, 45, 40), 260.0, 0.0), (-0.5, (50, 80, 190), 90.0, 0.3))
    for lane, color, period, phase in cars:
        _draw_car(img, t, horizon, vanish, lane, color, period, phase, size)
    return _frozen(np.clip(img, 0, 255).astype(np.uint8))


def _draw_car(img, t, horizon, vanish, lane, color, period, phase, size) -> None:
    """A box standing on the road at a depth that changes with time: the car ahead in our lane
    (period 260) drifts nearer and farther; the oncoming one (period 90) drives past us."""
    cycle = (t[:, 0, 0] / period + phase) % 1.0
    if lane > 0:
        depth = 3.5 + 1.5 * np.sin(2 * np.pi * cycle)
    else:
        depth = 20.0 * (1.0 - cycle) + 0.9
    h, v = horizon[:, 0, 0], vanish[:, 0, 0]
    bottom = h + 0.6 * size / depth  # the screen row of the car's wheels
    half = 0.9 * (bottom - h)  # the road's half-width at that row, in pixels
    centre = v + lane * half
    width, height = 0.3 * half, 0.42 * half
    rows = np.arange(size)[None, :, None] + 0.5
    cols = np.arange(size)[None, None, :] + 0.5
    top = (bottom - height)[:, None, None]
    body = (rows >= top) & (rows < bottom[:, None, None])
    body = body & (np.abs(cols - centre[:, None, None]) < width[:, None, None])
    window = body & (rows < (top + 0.45 * height[:, None, None]))
    img[body] = color
    img[window] = (60, 65, 80)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


class Background:
    """Chooses the background frame of every observation.

    `random` (random_frames): a uniformly random frame at every observation, drawn among the frames
    other than the current one so that the background always changes. `sequential` (video): a
    random start frame at reset, then the clip in order, one frame per observation, jumping to a
    new random frame at the clip's end (spec §4).
    """

    def __init__(self, frames: np.ndarray, mode: Literal["random", "sequential"]) -> None:
        assert frames.ndim == 4 and frames.shape[-1] == 3, frames.shape
        self.frames = frames
        self.mode = mode
        self.index = 0
        self._rng = np.random.default_rng(0)

    def reset(self, rng: np.random.Generator) -> np.ndarray:
        self._rng = rng
        self.index = int(rng.integers(len(self.frames)))
        return self.frames[self.index]

    def step(self) -> np.ndarray:
        n = len(self.frames)
        if self.mode == "random":
            other = int(self._rng.integers(max(n - 1, 1)))
            self.index = other + int(other >= self.index) if n > 1 else 0
        else:
            self.index += 1
            if self.index >= n:
                self.index = int(self._rng.integers(n))
        return self.frames[self.index]
