"""`cuda_graphs=true` on a GPU: the graphed imagination computes the eager one, and what it saves.

    python3 benchmarks/gpu_graphs_check.py OUT_DIR

1. Exactness, with sampling replaced by the mode (so both rollouts are deterministic): the
   replayed graph gives the eager rollout's states and actions for one batch's starts, again
   after an update has changed the weights in place, and for another batch's starts.
2. Sampling: two replays from the same starts draw different trajectories.
3. Cost: `blast_core.bench` cells (paper MiniGrid: bn, ar_prior, ar_prior made) with and
   without `cuda_graphs`, in one process; OUT_DIR/gpu_graphs.json.
CI has no GPU, so this script is the check of the CUDA-only path. Torch-only imports.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from blast_core import dists  # noqa: E402
from blast_core.agent import Agent  # noqa: E402
from blast_core.behavior import frozen  # noqa: E402
from blast_core.bench import FAMILY_ENVS, bench_models, synthetic_batch  # noqa: E402
from blast_core.config import make_config  # noqa: E402


def check_exact(rung: str, overrides: dict) -> None:
    env_id, act = FAMILY_ENVS["minigrid"]
    cfg = make_config(env_id, rung, "paper", {"cuda_graphs": True, **overrides})
    torch.manual_seed(0)
    agent = Agent(cfg, act, "cuda")
    wm, behavior = agent.wm, agent.behavior
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
    one = behavior._imagine_graphed(wm, flat)[1]
    two = behavior._imagine_graphed(wm, flat)[1]
    assert not torch.equal(one, two), "replays drew the same actions"
    print(f"{rung}{'/made' if overrides else ''}: replays draw new samples", flush=True)


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    print(torch.__version__, torch.cuda.get_device_name(), flush=True)
    variants = [("bn", {}), ("ar_prior", {}), ("ar_prior", {"rssm.ar_net": "made"})]
    for rung, overrides in variants:
        check_exact(rung, overrides)
    docs = {}
    for rung, overrides in variants:
        for graphs in (False, True):
            name = f"{rung}{'_made' if overrides else ''}{'_graphs' if graphs else ''}"
            docs[name] = bench_models("paper", "minigrid", [rung], "cuda", reps=5, warmup=2,
                                      overrides={**overrides, "cuda_graphs": graphs},
                                      echo=lambda line: print(line, flush=True))
            (out / "gpu_graphs.json").write_text(json.dumps(docs, indent=1))


if __name__ == "__main__":
    main()
