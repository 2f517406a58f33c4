"""`cuda_graphs=true` on a GPU: the graphed steps compute the eager ones, and what they save.

    python3 benchmarks/gpu_graphs_check.py OUT_DIR [STAGE ...]
        (default, in this order: behavior imagine bench wm; also wm-control)

1. Imagination, with sampling replaced by the mode (so both rollouts are deterministic): the
   replayed graph gives the eager rollout's states and actions for one batch's starts, again
   after an update has changed the weights in place, and for another batch's starts.
2. Sampling: two replays from the same starts draw different trajectories.
3. The world-model step, sampling replaced by the mode and under torch's deterministic kernels
   (without them two eager agents differ too: stage `wm-control`): two agents from the same
   seed, one graphed, take the same steps on different batches (eager warm-ups, the capture,
   replays); starts, metrics and every weight, BatchNorm statistic and Adam moment agree at
   each step, and again after a checkpoint is loaded into the graphed one (which captures anew).
4. Stage `behavior`: whole updates with the behaviour step graphed as well
   (`BLAST_GRAPH_BEHAVIOR=1`) against eager updates, checked as in 3, for REINFORCE (MiniGrid)
   and dynamics gradients (DMC).
5. Cost: `blast_core.bench.models` cells (paper MiniGrid and DMC), eager, graphs, and graphs with
   the whole behaviour step, in one process; OUT_DIR/gpu_graphs.json.
CI has no GPU, so this script is the check of the CUDA-only path. Torch-only imports.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import traceback
from pathlib import Path

# cuBLAS reads this when its first handle is made: deterministic matmuls for stage `wm`.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from blast_core.agent import (
    Agent,  # noqa: E402
    dists,  # noqa: E402
)
from blast_core.agent.behavior import frozen  # noqa: E402
from blast_core.agent.runtime import Runtime  # noqa: E402
from blast_core.bench.models import FAMILY_ENVS, bench_models, synthetic_batch  # noqa: E402
from blast_core.config import make_config  # noqa: E402

# CHECK_DEVICE=cpu runs the stages' code on a CPU, where nothing is graphed: a dry run of this
# script before a GPU's short lease is spent on it.
DEVICE = os.environ.get("CHECK_DEVICE", "cuda")


def captured(behavior, wm, flat) -> None:  # noqa: ANN001
    """Call the graphed rollout until its eager warm-up calls are over and it is captured, so
    that what the checks compare next are replays."""
    while behavior.graphed_imagine is None or behavior.graphed_imagine.graph is None:
        behavior._imagine_graphed(wm, flat)


def check_exact(rung: str, overrides: dict) -> None:
    env_id, act = FAMILY_ENVS["minigrid"]
    cfg = make_config(env_id, rung, "paper", {"cuda_graphs": True, **overrides})
    torch.manual_seed(0)
    agent = Agent(cfg, act, "cuda")
    wm, behavior = agent.world_model, agent.behavior
    sample = dists.OneHot.sample
    dists.OneHot.sample = dists.OneHot.mode  # deterministic rollouts for an exact comparison
    try:
        for step, seed in (("first batch", 0), ("after an update", 0), ("another batch", 1)):
            batch = {k: v.to("cuda") for k, v in synthetic_batch(cfg, act, seed).items()}
            if step == "after an update":
                dists.OneHot.sample = sample
                agent.update(batch)
                dists.OneHot.sample = dists.OneHot.mode
            start, _ = wm.train_step(batch)
            flat = {k: v.reshape(-1, *v.shape[2:]).detach() for k, v in start.items()}
            captured(behavior, wm, flat)
            graphed = behavior._imagine_graphed(wm, flat)
            with frozen(wm), torch.no_grad():
                eager = wm.rssm.imagine(flat, lambda f: behavior.policy(f).sample(),
                                        cfg.imag_horizon)
            for key in ("deter", "stoch", "logits"):
                torch.testing.assert_close(graphed[0][key], eager[0][key], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(graphed[1], eager[1], rtol=0, atol=0)
            print(f"{rung}{'/made' if overrides else ''}: graphed == eager ({step})", flush=True)
    finally:
        dists.OneHot.sample = sample
    behavior.graphed_imagine = None  # captured with the mode above: capture with sampling
    captured(behavior, wm, flat)
    one = behavior._imagine_graphed(wm, flat)[1]
    two = behavior._imagine_graphed(wm, flat)[1]
    assert not torch.equal(one, two), "replays drew the same actions"
    print(f"{rung}{'/made' if overrides else ''}: replays draw new samples", flush=True)


def check_world_model(family: str, rung: str, overrides: dict,
                      graphs: tuple[bool, bool] = (False, True)) -> None:
    env_id, act = FAMILY_ENVS[family]
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    agents = []
    for graphed in graphs:
        cfg = make_config(env_id, rung, "paper", {"cuda_graphs": graphed, **overrides})
        torch.manual_seed(0)
        agents.append(Agent(cfg, act, "cuda"))
    name = f"{family}/{rung}{'/made' if overrides else ''} {graphs}"
    sample = dists.OneHot.sample
    dists.OneHot.sample = dists.OneHot.mode
    try:
        for phase, steps in (("first capture", 6), ("after loading a checkpoint", 5)):
            if phase != "first capture":
                # A copy, as through a checkpoint file: loaded optimiser state is not cloned.
                agents[1].load_checkpoint_state(copy.deepcopy(agents[0].checkpoint_state()))
            for i in range(steps):
                batch = {k: v.to("cuda") for k, v in synthetic_batch(cfg, act, i).items()}
                (s0, m0), (s1, m1) = (a.world_model.train_step(batch) for a in agents)
                for key in s0:
                    close(s1[key], s0[key], f"step {i}: start {key}")
                for key in m0:
                    close(m1[key], m0[key], f"step {i}: {key}")
            graphed = agents[1].world_model.graphed_step
            assert not graphs[1] or graphed.graph is not None, "no capture"
            same_state(*agents)
            print(f"world model {name}: graphed == eager ({phase})", flush=True)
    finally:
        dists.OneHot.sample = sample


def same_state(a0: Agent, a1: Agent) -> None:
    """Every weight, buffer (BatchNorm statistics, the update count) and Adam moment agrees."""
    w0, w1 = a0.state_dict(), a1.state_dict()
    for key in w0:
        close(w1[key], w0[key], key)
    o0, o1 = a0.optimizers(), a1.optimizers()
    for name in o0:
        for p0, p1 in zip(o0[name].params, o1[name].params, strict=True):
            for key in ("exp_avg", "exp_avg_sq", "step"):
                close(o1[name].opt.state[p1][key], o0[name].opt.state[p0][key],
                      f"{name} Adam {key}", atol=1e-6)


def check_update(family: str, rung: str, overrides: dict) -> None:
    """Stage `behavior`: whole updates (both graphs, `Runtime.graph_behavior`) against eager
    ones, as stage `wm` compares world-model steps: sampling replaced by the mode (OneHot and
    the continuous actor's TruncNormal, whose mode keeps the dynamics gradient), deterministic
    kernels, the metrics of every update and every state after the capture and after a
    checkpoint is loaded into the graphed agent."""
    env_id, act = FAMILY_ENVS[family]
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    agents = []
    for graphed in (False, True):
        cfg = make_config(env_id, rung, "paper", {"cuda_graphs": graphed, **overrides})
        torch.manual_seed(0)
        agents.append(Agent(cfg, act, runtime=Runtime.of(cfg, DEVICE, graph_behavior=True)))
    name = f"{family}/{rung}{'/made' if overrides else ''}"
    saved = dists.OneHot.sample, dists.TruncNormal.sample
    dists.OneHot.sample = dists.OneHot.mode
    dists.TruncNormal.sample = lambda self, generator=None: self.mode()
    try:
        for phase, steps in (("first capture", 6), ("after loading a checkpoint", 5)):
            if phase != "first capture":
                agents[1].load_checkpoint_state(copy.deepcopy(agents[0].checkpoint_state()))
            for i in range(steps):
                batch = synthetic_batch(cfg, act, i)
                m0, m1 = (a.update(batch) for a in agents)
                for key in m0:
                    close(torch.tensor(m1[key]), torch.tensor(m0[key]), f"step {i}: {key}")
            assert DEVICE != "cuda" or agents[1].behavior.graphed_step.graph is not None, \
                "no capture"
            same_state(*agents)
            print(f"update {name}: graphed == eager ({phase})", flush=True)
    finally:
        dists.OneHot.sample, dists.TruncNormal.sample = saved


def close(actual: torch.Tensor, expected: torch.Tensor, what: str, atol: float = 1e-5) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=atol,
                               msg=lambda message: f"{what}: {message}")


def attempt(what: str, fn, *args) -> bool:  # noqa: ANN001
    try:
        fn(*args)
        return True
    except Exception:  # noqa: BLE001  (report every failure, then go on)
        print(f"FAILED: {what}", flush=True)
        traceback.print_exc()
        sys.stdout.flush()
        return False


MADE = {"rssm.ar_net": "made"}


def stage_imagine(out: Path) -> None:
    for rung, overrides in [("bn", {}), ("ar_prior", {}), ("ar_prior", MADE)]:
        attempt(f"imagination {rung} {overrides}", check_exact, rung, overrides)


def stage_wm(out: Path) -> None:
    # warn_only: an op with no deterministic kernel is named, not fatal.
    torch.use_deterministic_algorithms(True, warn_only=True)
    for family, rung, overrides in [
            ("minigrid", "dv2", {}), ("minigrid", "bn", {}), ("minigrid", "ar_prior", {}),
            ("minigrid", "ar_prior", MADE), ("dmc", "ar_prior", {})]:
        attempt(f"world model {family} {rung} {overrides}", check_world_model, family,
                rung, overrides)
    torch.use_deterministic_algorithms(False)


def stage_behavior(out: Path) -> None:
    torch.use_deterministic_algorithms(True, warn_only=True)
    for family, rung, overrides in [
            ("minigrid", "bn", {}), ("dmc", "bn", {}), ("dmc", "ar_prior", {}),
            ("minigrid", "ar_prior", MADE)]:
        attempt(f"update {family} {rung} {overrides}", check_update, family, rung, overrides)
    torch.use_deterministic_algorithms(False)


def stage_wm_control(out: Path) -> None:
    # Two eager agents, torch's default kernels: they differ with no graph involved.
    attempt("control", check_world_model, "minigrid", "ar_prior", {}, (False, False))


def stage_bench(out: Path) -> None:
    """eager (one same-machine baseline), `graphs` (the default), `whole` (graphs with the
    whole behaviour step graphed too)."""
    torch.backends.cudnn.deterministic = False
    docs = {}
    cells = [("minigrid", "bn", {}, "eager")] + [
        (family, rung, overrides, mode)
        for family, rung, overrides in [("dmc", "bn", {}), ("dmc", "ar_prior", {}),
                                        ("minigrid", "bn", {}), ("minigrid", "ar_prior", MADE),
                                        ("minigrid", "ar_prior", {})]
        for mode in ("graphs", "whole")]
    for family, rung, overrides, mode in cells:
        name = f"{family}_{rung}{'_made' if overrides else ''}_{mode}"

        def cell(family=family, rung=rung, overrides=overrides, mode=mode,  # noqa: ANN001
                 name=name) -> None:
            docs[name] = bench_models(
                "paper", family, [rung], DEVICE, reps=5, warmup=3,
                overrides={**overrides, "cuda_graphs": mode != "eager"},
                switches={"graph_behavior": mode == "whole"},
                echo=lambda line: print(f"{name}: {line}", flush=True))
        attempt(name, cell)
        (out / "gpu_graphs.json").write_text(json.dumps(docs, indent=1))


STAGES = {"behavior": stage_behavior, "imagine": stage_imagine, "bench": stage_bench,
          "wm": stage_wm, "wm-control": stage_wm_control}


def main() -> None:
    out = Path(sys.argv[1])
    stages = sys.argv[2:] or ["behavior", "imagine", "bench", "wm"]
    unknown = set(stages) - set(STAGES)
    if unknown:
        sys.exit(f"unknown stage(s) {sorted(unknown)}: choose from {list(STAGES)}")
    out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name() if DEVICE == "cuda" else DEVICE
    print(torch.__version__, name, flush=True)
    for stage in stages:  # in the order given: the first ones are worth the most
        STAGES[stage](out)


if __name__ == "__main__":
    main()
