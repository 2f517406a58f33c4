"""How an agent executes, never what it computes: one `Runtime`, built once per process and
handed to the agent, which its world model and actor-critic read.

Its switches come from the config (`precision`, `cuda_graphs`: keys a run stores, so a resumed
run executes as it did) and from the command line (the CLI reads `BLAST_GRAPH_BEHAVIOR` and
`BLAST_KEEP_FREED_MEMORY` into it); nothing below the CLI reads environment variables.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from blast_core.config import Config


@dataclass(frozen=True)
class Runtime:
    device: str = "cpu"
    """Where the agent's tensors live: cpu or cuda:K."""
    precision: str = "fp32"
    """fp32, or bf16 autocast of the forward passes (`Config.precision`)."""
    cuda_graphs: bool = True
    """The world-model step and REINFORCE's rollout as CUDA graphs, on a GPU in fp32
    (`Config.cuda_graphs`)."""
    graph_behavior: bool = False
    """The whole behaviour step as one graph too (`BLAST_GRAPH_BEHAVIOR=1`; opt-in until checked
    on a GPU by `benchmarks/gpu_graphs_check.py`)."""
    keep_freed_memory: bool = True
    """Keep the memory freed tensors release for reuse (`perf.keep_freed_memory`;
    `BLAST_KEEP_FREED_MEMORY=0` turns it off)."""
    eager: bool = False
    """Graphs off while set (`blast bench` counts the ops and tensors of an eager update: a
    replay runs nothing its counters see)."""

    @classmethod
    def of(cls, cfg: Config, device: Any = "cpu", **switches: bool) -> Runtime:
        """The runtime of `cfg` on `device`, with the command line's `switches`."""
        return cls(str(device), cfg.precision, cfg.cuda_graphs, **switches)

    def graphs(self, like: Any) -> bool:
        """Whether the agent's steps run as graphs for a batch like `like`: `cuda_graphs` on,
        on a GPU, in fp32 (autocast caches its casts, which a capture would freeze), and not
        `eager`."""
        return (self.cuda_graphs and like.is_cuda and self.precision == "fp32"
                and not self.eager)

    def replace(self, **changes: Any) -> Runtime:
        return dataclasses.replace(self, **changes)
