"""Is a paper-size update launch-bound on this GPU? Kernel count and GPU-busy share per part.

    python3 benchmarks/gpu_profile.py

For MiniGrid bn, ar_prior and ar_prior with `rssm.ar_net made`: one update and one imagination
rollout under torch.profiler after warm-up; prints wall time, CUDA kernels launched and the sum
of their durations (the GPU's busy time). Busy far below wall means launches, not arithmetic,
set the time. Torch-only imports, as benchmarks/gpu_check.py.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from blast_core.agent import Agent  # noqa: E402
from blast_core.agent.behavior import frozen  # noqa: E402
from blast_core.bench.models import FAMILY_ENVS, synthetic_batch  # noqa: E402
from blast_core.config import make_config  # noqa: E402


def measure(name: str, fn) -> None:  # noqa: ANN001
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        wall = (time.perf_counter() - start) * 1e3
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    busy = sum(e.device_time for e in kernels) / 1e3
    print(f"{name:28} wall {wall:7.1f} ms  kernels {len(kernels):6d}  GPU busy {busy:7.1f} ms "
          f"({busy / wall:.0%})  {wall / max(len(kernels), 1) * 1e3:5.1f} us/kernel", flush=True)


def profile_config(label: str, cfg, act) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    agent = Agent(cfg, act, "cuda")
    batch = {k: v.to("cuda") for k, v in synthetic_batch(cfg, act).items()}
    wm, behavior = agent.world_model, agent.behavior
    start, _ = wm.train_step(batch)
    flat = {k: v.reshape(-1, *v.shape[2:]) for k, v in start.items()}

    def imagine() -> None:
        with frozen(wm), torch.no_grad():
            wm.rssm.imagine(flat, lambda f: behavior.policy(f).sample(), cfg.imag_horizon)

    measure(f"{label} update", lambda: agent.update(batch))
    measure(f"{label} world model", lambda: wm.train_step(batch))
    measure(f"{label} imagine", imagine)


def main() -> None:
    print(torch.__version__, torch.cuda.get_device_name(), flush=True)
    env_id, act = FAMILY_ENVS["minigrid"]
    for rung, overrides in (("bn", {}), ("ar_prior", {}), ("ar_prior", {"rssm.ar_net": "made"})):
        label = rung + ("/made" if overrides else "")
        profile_config(label, make_config(env_id, rung, "paper", overrides), act)


if __name__ == "__main__":
    main()
