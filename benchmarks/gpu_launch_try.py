"""Two ways to launch fewer kernels on a GPU, tried on the paper-size MiniGrid update (not in the
agent yet: this measures whether they pay, for the next step of docs/benchmarks.md).

    python3 benchmarks/gpu_launch_try.py

1. `torch.compile` (inductor, default mode) of the LayerNorm-GRU cell from its dense layer's
   output on: LayerNorm, gates and update fused into a few kernels, in the posterior chains (with
   backward) and in imagination.
2. A CUDA graph of the no-gradient imagination rollout (MiniGrid's REINFORCE case): captured
   once with static starts, replayed; sampling (torch.multinomial) inside the capture.
Torch-only imports, as benchmarks/gpu_check.py. Prints median milliseconds of 5 after warm-up.
"""

from __future__ import annotations

import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from blast_core.agent import Agent  # noqa: E402
from blast_core.agent.behavior import frozen  # noqa: E402
from blast_core.bench.models import FAMILY_ENVS, synthetic_batch  # noqa: E402
from blast_core.config import make_config  # noqa: E402


def median_ms(fn, reps: int = 5, warmup: int = 3) -> float:  # noqa: ANN001
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def setup(rung: str, overrides: dict) -> tuple:
    env_id, act = FAMILY_ENVS["minigrid"]
    cfg = make_config(env_id, rung, "paper", overrides)
    torch.manual_seed(0)
    agent = Agent(cfg, act, "cuda")
    batch = {k: v.to("cuda") for k, v in synthetic_batch(cfg, act).items()}
    start, _ = agent.world_model.train_step(batch)
    flat = {k: v.reshape(-1, *v.shape[2:]).detach().clone() for k, v in start.items()}
    return cfg, agent, batch, flat


def imagine_fn(cfg, agent, flat):  # noqa: ANN001, ANN201
    wm, behavior = agent.world_model, agent.behavior

    def imagine():  # noqa: ANN202
        with frozen(wm), torch.no_grad():
            return wm.rssm.imagine(flat, lambda f: behavior.policy(f).sample(), cfg.imag_horizon)
    return imagine


def try_compile(label: str, rung: str, overrides: dict) -> None:
    cfg, agent, batch, flat = setup(rung, overrides)
    imagine = imagine_fn(cfg, agent, flat)
    base = (median_ms(lambda: agent.world_model.train_step(batch)), median_ms(imagine))
    rssm = agent.world_model.rssm
    for gru in [m for m in (rssm.gru, getattr(rssm.prior, "gru", None)) if m is not None]:
        gru.cell = torch.compile(gru.cell, dynamic=False)
    start = time.perf_counter()
    agent.world_model.train_step(batch)
    imagine()
    compile_s = time.perf_counter() - start
    new = (median_ms(lambda: agent.world_model.train_step(batch)), median_ms(imagine))
    print(f"{label:16} compiled GRU cell: world model {base[0]:6.1f} -> {new[0]:6.1f} ms, "
          f"imagine {base[1]:6.1f} -> {new[1]:6.1f} ms (compiling {compile_s:.0f} s)", flush=True)


def try_graph(label: str, rung: str, overrides: dict) -> None:
    cfg, agent, batch, flat = setup(rung, overrides)
    imagine = imagine_fn(cfg, agent, flat)
    base = median_ms(imagine)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            imagine()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out, _ = imagine()
    first = out["deter"].clone()
    graph.replay()
    torch.cuda.synchronize()
    differs = not torch.equal(first, out["deter"])  # fresh samples on every replay
    replay = median_ms(graph.replay)
    print(f"{label:16} CUDA graph of imagination: {base:6.1f} -> {replay:6.1f} ms "
          f"(replays draw new samples: {differs})", flush=True)


def main() -> None:
    print(torch.__version__, torch.cuda.get_device_name(), flush=True)
    variants = [("bn", "bn", {}), ("ar_prior", "ar_prior", {}),
                ("ar_prior/made", "ar_prior", {"rssm.ar_net": "made"})]
    for label, rung, overrides in variants:
        try:
            try_graph(label, rung, overrides)
        except Exception:
            traceback.print_exc()
    for label, rung, overrides in variants:
        try:
            try_compile(label, rung, overrides)
        except Exception:
            traceback.print_exc()


if __name__ == "__main__":
    main()
