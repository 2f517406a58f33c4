"""What a run's loop measures of the machine: seconds per phase, steps and updates per second,
memory. Two runs with the same seed differ only in these metrics. Without torch: `blast status`
reads the phases to estimate the time an experiment has left (scheduling/eta.py)."""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable
from pathlib import Path

PHASES = ("act", "env", "replay", "update", "eval", "save")
"""Where a run's loop spends its time: the policy's acting step, the env's step, replay (writing
finished episodes, sampling batches), the agent's updates, evaluations, checkpoints and the
store's rows. Logged as `time_<phase>_s`, the seconds since the previous log row."""
SPEED_METRICS = ("steps_per_s", "updates_per_s", "peak_mem_mb", "host_mem_mb", "host_anon_mb",
                 *(f"time_{p}_s" for p in PHASES))
"""The metrics of the machine, not of the run: two runs with the same seed differ only in them."""


class Clock:
    """Wall seconds per phase of the loop since the last `pop` (`with clock("env"): ...`)."""

    def __init__(self) -> None:
        self.spent = dict.fromkeys(PHASES, 0.0)
        self.phase, self.since = "", 0.0

    def __call__(self, phase: str) -> Clock:
        self.phase = phase
        return self

    def __enter__(self) -> None:
        self.since = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.spent[self.phase] += time.perf_counter() - self.since

    def pop(self) -> dict[str, float]:
        out = {f"time_{k}_s": v for k, v in self.spent.items()}
        self.spent = dict.fromkeys(PHASES, 0.0)
        return out


def proc_status_mib(field: str, path: Path = Path("/proc/self/status")) -> float:
    """A memory field of this process's status in MiB (`RssAnon`, `VmHWM`, ...); NaN where the
    kernel has no such file or field (not Linux)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return math.nan
    for line in lines:
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    return math.nan


class Speed:
    """Agent steps and updates per second of wall time since the previous log row, and the peak
    memory of this process so far (`peak_mem_mb`: the GPU's allocator on CUDA, else resident
    memory; `host_mem_mb`: resident memory on either), what a run needs when choosing --per-gpu,
    --workers or --mem-per-run. `host_anon_mb` is the anonymous part of resident memory now:
    what the kernel cannot reclaim, without the replay pages that `replay.mmap` maps from disk
    (which `host_mem_mb` counts once read)."""

    def __init__(self, step: int, updates: int,
                 gpu_peak_mib: Callable[[], float] | None = None) -> None:
        """`gpu_peak_mib`: on a GPU, what its allocator has reserved at most so far."""
        self.mark, self.gpu_peak_mib = (time.perf_counter(), step, updates), gpu_peak_mib

    def rates(self, step: int, updates: int) -> dict[str, float]:
        then, step0, updates0 = self.mark
        self.mark = (now := time.perf_counter(), step, updates)
        seconds = max(now - then, 1e-9)
        host = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # Linux: KiB
        peak = self.gpu_peak_mib() if self.gpu_peak_mib else host
        rates = {"steps_per_s": (step - step0) / seconds,
                 "updates_per_s": (updates - updates0) / seconds, "peak_mem_mb": peak,
                 "host_mem_mb": host}
        anon = proc_status_mib("RssAnon")
        if math.isfinite(anon):  # Linux only
            rates["host_anon_mb"] = anon
        return rates
