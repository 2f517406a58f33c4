"""CUDA graphs: one call's kernels recorded once and replayed with a single launch.

On a GPU the paper-size update is bound by kernel launches, not arithmetic (docs/benchmarks.md:
the GPU is busy for 7–17% of an update). A replayed graph runs the same kernels on the same
memory, so it needs:
  - inputs copied into the tensors the capture read (`Graphed` keeps them) before each replay;
  - outputs read before the next replay overwrites them (`Graphed` returns copies);
  - parameters updated in place, as the optimisers and `load_state_dict` do;
  - random numbers from the default CUDA generator, which is graph-safe: each replay draws anew.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils._pytree import tree_map

Inputs = dict[str, Tensor]


class Graphed:
    """`fn(inputs)` captured as a CUDA graph on the first call for the inputs' shapes (again when
    they change) and replayed after. `fn` must run the same kernels for every input of those
    shapes: no host syncs, no data-dependent Python branches."""

    def __init__(self, fn: Callable[[Inputs], Any], warmup: int = 3):
        self.fn, self.warmup = fn, warmup
        self.key: tuple | None = None

    def __call__(self, inputs: Inputs) -> Any:
        key = tuple((k, v.shape, v.dtype, v.device) for k, v in sorted(inputs.items()))
        if key != self.key:
            self._capture(inputs)
            self.key = key
        for k, v in inputs.items():
            self.static[k].copy_(v)
        self.graph.replay()
        return tree_map(torch.clone, self.outputs)

    def _capture(self, inputs: Inputs) -> None:
        self.static = {k: v.detach().clone() for k, v in inputs.items()}
        # Warm-up on a side stream, as torch.cuda.graph asks: lazy initialisation (cuBLAS
        # handles, autotuning) must not happen inside the capture.
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(self.warmup):
                self.fn(self.static)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.outputs = self.fn(self.static)
