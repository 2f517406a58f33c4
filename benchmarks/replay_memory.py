"""What a run's replay costs in memory, disk and time, held in memory or mapped from its files.

    python3 benchmarks/replay_memory.py OUT.json [STEPS]

Fills a replay with STEPS steps of DMC episodes (500 steps of 64x64x3 frames: one episode of
walker_run with random actions, rendered once and stored again shifted in time, so the files
compress as real DMC frames do, to ~24 %) in a fresh process per mode, then samples paper-size
batches (16 x 50). Per mode: the process's anonymous resident memory (what the kernel cannot
reclaim), its file-backed resident memory (page cache it can), the replay folder's size on
disk, and the median ms to add an episode and to sample a batch. A measurement, not a test.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from blast_core.run.speed import proc_status_mib  # noqa: E402


def rendered_episode(steps: int = 500) -> dict[str, np.ndarray]:
    from blast_core import envs

    env = envs.make("dmc:walker_run", seed=0)
    rng = np.random.default_rng(0)
    frames = [env.reset(seed=0)[0]]
    for _ in range(steps):
        frames.append(env.step(rng.uniform(-1, 1, env.action_space.shape))[0])
    n = len(frames)
    return {"image": np.stack(frames), "action": rng.uniform(-1, 1, (n, 6)).astype(np.float32),
            "reward": rng.uniform(0, 1, n).astype(np.float32), "is_first": np.arange(n) == 0,
            "is_last": np.arange(n) == n - 1, "is_terminal": np.zeros(n, bool)}


def measure(mmap: bool, steps: int) -> dict:
    from blast_core.config import ReplayConfig
    from blast_core.run.replay import Replay

    base = rendered_episode()
    with tempfile.TemporaryDirectory() as folder:
        replay = Replay(Path(folder), ReplayConfig(capacity=steps, mmap=mmap), 16, 50, seed=0)
        before = proc_status_mib("RssAnon")
        adds = []
        for index in range(steps // 500):
            data = {k: np.roll(v, index, 0) if k == "image" else v for k, v in base.items()}
            start = time.perf_counter()
            replay.add(data, index)
            adds.append((time.perf_counter() - start) * 1e3)
            del data
        samples = []
        for _ in range(200):
            start = time.perf_counter()
            replay.sample()
            samples.append((time.perf_counter() - start) * 1e3)
        disk = sum(f.stat().st_size for f in Path(folder).iterdir())
        anon = proc_status_mib("RssAnon") - before
        return {"mmap": mmap, "steps": replay.steps, "rss_anon_mib": anon,
                "rss_file_mib": proc_status_mib("RssFile"), "disk_mib": disk / 2**20,
                "add_ms": statistics.median(adds), "sample_ms": statistics.median(samples)}


def main() -> None:
    if sys.argv[1] == "--one":
        print(json.dumps(measure(sys.argv[2] == "1", int(sys.argv[3]))))
        return
    out, steps = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    rows = []
    for mmap in (False, True):
        done = subprocess.run([sys.executable, __file__, "--one", str(int(mmap)), str(steps)],
                              capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout))
        print(rows[-1], flush=True)
    out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
