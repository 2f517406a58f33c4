"""Model benchmarks: what one update and its parts cost, per rung (`blast bench`).

For each rung, after warm-up, the median over `reps` repetitions of

    world_model_ms   one world-model step (loss, backward, optimiser, EMA)
    imagine_ms       the imagination rollout of H steps from all B·T starts, forward only
    behavior_ms      one actor and critic step, imagination included
    update_ms        one whole `Agent.update`
    act_ms           one acting step as a run takes it between updates: the policy on one
                     frame (encoder, posterior step, actor, a sample), the action read back

and, from one extra update each, run eagerly even where the agent's steps are CUDA graphs,
`peak_mb` (the most tensor memory live during the update, weights and optimiser state included)
and `flops` (torch's FLOP counter: matmuls and convolutions, forward and backward).
`gflops_per_s = flops / update time` is set against the machine's matmul peak, measured in the
same run, as `utilization`. On a GPU, `reserved_mb` is the most memory CUDA's allocator held
for the rung until then (its cache and the graphs' pools included): what a run on a shared GPU
takes from the others.

Benchmarks are measurements, never tests: nothing here asserts a speed.
"""

from __future__ import annotations

import platform
import statistics
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode
from torch.utils.weak import WeakIdKeyDictionary

from blast_core.agent import ActSpace, Agent, graphs
from blast_core.agent.behavior import frozen
from blast_core.agent.perf import autocast, keep_freed_memory
from blast_core.agent.runtime import Runtime
from blast_core.config import FAMILIES, LADDER_IDS, RUNG_IDS, Config, make_config
from blast_core.errors import BlastError

# The env whose sizes stand for each family, and its action space.
FAMILY_ENVS: dict[str, tuple[str, ActSpace]] = {
    "minigrid": ("minigrid:unmodified", ActSpace(True, 3)),
    "dmc": ("dmc:walker_run", ActSpace(False, 6)),
}


def synthetic_batch(cfg: Config, act: ActSpace, seed: int = 0) -> dict[str, Tensor]:
    """A [B, T] batch in the replay's format: random frames, actions and rewards."""
    B, T, size = cfg.dataset.batch, cfg.dataset.length, cfg.env.size
    g = torch.Generator().manual_seed(seed)
    if act.discrete:
        action = F.one_hot(torch.randint(0, act.size, (B, T), generator=g), act.size).float()
    else:
        action = torch.rand(B, T, act.size, generator=g) * 2 - 1
    is_first = torch.zeros(B, T, dtype=torch.bool)
    is_first[:, 0] = True
    return {
        "image": torch.randint(0, 256, (B, T, size, size, 3), dtype=torch.uint8, generator=g),
        "action": action, "reward": torch.rand(B, T, generator=g), "is_first": is_first,
        "is_terminal": torch.zeros(B, T, dtype=torch.bool),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
"""`cpu` counts the CPU time of this process only: on a machine shared with other work, a
1-thread run timed by it measures the update's own work, which wall-clock time does not."""
_clock = time.perf_counter


def median_ms(fn: Callable[[], Any], device: torch.device, reps: int, warmup: int) -> float:
    """Median milliseconds (of the chosen clock) of `fn` over `reps` calls after `warmup`."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        _sync(device)
        start = _clock()
        fn()
        _sync(device)
        times.append((_clock() - start) * 1e3)
    return statistics.median(times)


def matmul_peak(device: torch.device, reps: int = 5) -> float:
    """GFLOP/s of a large fp32 matmul: the machine's practical peak for this work."""
    n = 8192 if device.type == "cuda" else 2048
    a, b = (torch.randn(n, n, device=device) for _ in range(2))
    ms = median_ms(lambda: a @ b, device, reps, warmup=2)
    return 2 * n**3 / (ms / 1e3) / 1e9


class _LiveTensors(TorchDispatchMode):
    """Bytes of the tensor storages alive while the mode is on, counted at every op's outputs
    and freed when a storage is collected; `peak` is the most at once."""

    def __init__(self, start: Iterable[Tensor]):
        super().__init__()
        self.sizes: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.now = self.peak = 0
        for t in start:
            self._add(t)

    def _add(self, t: Tensor) -> None:
        storage = t.untyped_storage()
        if storage in self.sizes:
            return
        size = storage.nbytes()
        self.sizes[storage] = size
        self.now += size
        self.peak = max(self.peak, self.now)
        weakref.finalize(storage, self._free, size)

    def _free(self, size: int) -> None:
        self.now -= size

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, Tensor) and not t.is_meta:
                self._add(t)
        return out


def peak_mb(fn: Callable[[], Any], device: torch.device, tensors: Iterable[Tensor]) -> float:
    """Most tensor memory live at once while `fn` runs, `tensors` (weights, optimiser state,
    batch) included, in MiB: CUDA's allocator statistics, or on CPU a count of tensor storages."""
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        _sync(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    with _LiveTensors(tensors) as live:
        fn()
    return live.peak / 2**20


def _resident(agent: Agent, batch: dict[str, Tensor]) -> list[Tensor]:
    """Tensors alive across updates: weights, buffers, gradients, optimiser state, the batch."""
    out = [*agent.state_dict().values(), *batch.values()]
    out += [p.grad for p in agent.parameters() if p.grad is not None]
    for opt in agent.optimizers().values():
        out += [v for state in opt.opt.state.values() for v in state.values()
                if isinstance(v, Tensor)]
    return out


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of the matmuls and convolutions `fn` runs, forward and backward."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def bench_rung(cfg: Config, act: ActSpace, device: torch.device, reps: int,
               warmup: int, switches: Mapping[str, bool] | None = None) -> dict[str, Any]:
    """The metrics of one config (see the module docstring); `switches` are the `Runtime`'s
    command-line ones."""
    switches = dict(switches or {})
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the previous cell's blocks and graph pools
        torch.cuda.reset_peak_memory_stats(device)
    agent = Agent(cfg, act, runtime=Runtime.of(cfg, device, **switches))
    batch = {k: v.to(device) for k, v in synthetic_batch(cfg, act).items()}
    world_model, behavior = agent.world_model, agent.behavior
    if agent.runtime.graphs(batch["image"]):
        # Captured before any timing, so that every timed call replays whatever
        # `--warmup` is: each graph runs `graphs.WARMUP` calls eagerly, then captures.
        for _ in range(graphs.WARMUP + 1):
            agent.update(batch)
    start, _ = world_model.train_step(batch)
    flat = {k: v.reshape(-1, *v.shape[2:]) for k, v in start.items()}

    def imagine() -> None:
        with frozen(world_model), torch.set_grad_enabled(behavior.grad != "reinforce"), \
                autocast(cfg.precision, device):
            world_model.rssm.imagine(flat, lambda f: behavior.policy(f).sample(), cfg.imag_horizon)

    row: dict[str, Any] = {
        "world_model_ms": median_ms(lambda: world_model.train_step(batch), device, reps, warmup),
        "imagine_ms": median_ms(imagine, device, reps, warmup),
        "behavior_ms": median_ms(
            lambda: behavior.train_step(world_model, start, batch["is_terminal"]), device, reps,
            warmup),
        "update_ms": median_ms(lambda: agent.update(batch), device, reps, warmup),
    }
    if device.type == "cuda":
        row["reserved_mb"] = torch.cuda.max_memory_reserved(device) / 2**20
    # A graph's replay is invisible to both counters: they count an eager update, the same
    # arithmetic and the tensors it needs, which graphs keep in pools of their own.
    graphed = agent.runtime
    agent.set_runtime(graphed.replace(eager=True))
    row["peak_mb"] = peak_mb(lambda: agent.update(batch), device, _resident(agent, batch))
    row["flops"] = count_flops(lambda: agent.update(batch))
    agent.set_runtime(graphed)
    row["gflops_per_s"] = row["flops"] / 1e9 / (row["update_ms"] / 1e3)
    row["act_ms"] = _act_ms(agent, batch, device, reps, warmup)
    return row


def _act_ms(agent: Agent, batch: dict[str, Tensor], device: torch.device, reps: int,
            warmup: int) -> float:
    """An env step's share of the agent's work, which a run pays `train_every` times per update
    (`Session.act`); short, so timed over ten times the repetitions."""
    obs = {"image": batch["image"][0, :1], "is_first": torch.ones(1, dtype=torch.bool,
                                                                   device=device)}
    state = None

    def act() -> None:
        nonlocal state
        action, state = agent.policy(obs, state, "train")
        action[0].cpu().numpy()
        obs["is_first"] = torch.zeros(1, dtype=torch.bool, device=device)

    return median_ms(act, device, 10 * reps, warmup + 1)


def bench_models(preset: str = "paper", family: str = "minigrid",
                 rungs: Sequence[str] | None = None, device: str | None = None,
                 reps: int = 3, warmup: int = 2,
                 echo: Callable[[str], None] = print, precision: str = "fp32",
                 clock: str = "wall",
                 overrides: Mapping[str, Any] | None = None,
                 switches: Mapping[str, bool] | None = None,
                 threads: int | None = None) -> dict[str, Any]:
    """Benchmark each rung and return the JSON document of `blast bench --json`. `precision`
    is the agent's `Config.precision`; `overrides` are config keys set as `blast run --set`
    sets them (a variant's cost); `switches` the `Runtime`'s command-line ones; `threads` torch's
    CPU threads (default: as torch starts)."""
    if threads is not None:
        torch.set_num_threads(threads)
    switches = dict(switches or {})
    overrides = dict(overrides or {})
    if family not in FAMILIES:
        raise BlastError(f"unknown env family {family!r}; valid: {', '.join(FAMILIES)}")
    if clock not in CLOCKS:
        raise BlastError(f"unknown clock {clock!r}; valid: {', '.join(CLOCKS)}")
    if reps < 1 or warmup < 0:
        raise BlastError(f"reps={reps} must be >= 1 and warmup={warmup} >= 0")
    rungs = list(rungs or LADDER_IDS)
    for rung in rungs:
        if rung not in RUNG_IDS:
            raise BlastError(f"unknown rung {rung!r}; valid: {', '.join(RUNG_IDS)}")
    env_id, act = FAMILY_ENVS[family]
    # A bad preset or precision is an error now, before any timing.
    configs = {rung: make_config(env_id, rung, preset, {"precision": precision, **overrides})
               for rung in rungs}
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if clock == "cpu" and dev.type != "cpu":
        raise BlastError("--clock cpu times CPU work; use it with --device cpu")
    global _clock
    _clock = CLOCKS[clock]
    keep_freed_memory(switches.get("keep_freed_memory", True))  # as training runs do
    peak = matmul_peak(dev)
    echo(format_header())
    doc: dict[str, Any] = {
        "preset": preset, "env_family": family, "device": _device_name(dev),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "matmul_peak_gflops": peak, "precision": precision, "clock": clock,
        "overrides": overrides, "results": [],
    }
    for rung in rungs:
        row = {"rung": rung, **bench_rung(configs[rung], act, dev, reps, warmup, switches)}
        row["utilization"] = row["gflops_per_s"] / peak
        doc["results"].append(row)
        echo(format_row(row))
    return doc


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    # The vector unit oneDNN uses (AVX2, AVX512...): machines of one name differ by 2x on it.
    return (f"cpu: {platform.processor() or platform.machine()}, "
            f"{torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads")


def format_header() -> str:
    return (f"{'rung':11} {'wm ms':>8} {'imag ms':>8} {'behav ms':>9} "
            f"{'update ms':>10} {'act ms':>7} {'peak MB':>8} {'GFLOP':>7} {'GFLOP/s':>8} "
            f"{'util':>5}")


def format_row(row: dict[str, Any]) -> str:
    return (f"{row['rung']:11} {row['world_model_ms']:8.1f} "
            f"{row['imagine_ms']:8.1f} {row['behavior_ms']:9.1f} {row['update_ms']:10.1f} "
            f"{row['act_ms']:7.2f} {row['peak_mb']:8.1f} {row['flops'] / 1e9:7.1f} "
            f"{row['gflops_per_s']:8.1f} {row.get('utilization', 0):5.0%}")
