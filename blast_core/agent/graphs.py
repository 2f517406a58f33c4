"""CUDA graphs: one call's kernels recorded once and replayed with a single launch.

On a GPU the paper-size update is bound by kernel launches, not arithmetic (docs/benchmarks.md:
the GPU is busy for 7–17% of an update). A replayed graph runs the same kernels on the same
memory, so it needs:
  - inputs copied into the tensors the capture read (`Graphed` keeps them) before each replay;
  - outputs read before the next replay overwrites them (`Graphed` returns copies);
  - parameters and optimiser state updated in place, as the optimisers and `load_state_dict`
    of modules do (an optimiser's `load_state_dict` replaces its state: drop the graph then);
  - optimisers whose `step` may be captured (`Optimizer.capturable`);
  - random numbers from the default CUDA generator, which is graph-safe: each replay draws anew.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils._pytree import tree_map

Inputs = dict[str, Tensor]
WARMUP = 3  # eager calls before the capture (`Graphed`)


class Graphed:
    """`fn(inputs)`, captured as a CUDA graph and replayed. `fn` must run the same kernels for
    every input of the same shapes: no host syncs, no data-dependent Python branches.

    For each set of input shapes the first `warmup` calls run `fn` eagerly (they are real calls:
    a training step updates the weights) and the next one captures it, then replays. The eager
    calls run on the stream the capture uses, so what they initialise lazily (cuBLAS handles and
    workspaces, autotuning, optimiser state) exists before the capture and is not recorded in it.
    """

    def __init__(self, fn: Callable[[Inputs], Any], warmup: int = WARMUP):
        self.fn, self.warmup = fn, warmup
        self.key: tuple | None = None
        self.graph: torch.cuda.CUDAGraph | None = None
        self.calls = 0
        self.stream: torch.cuda.Stream | None = None

    def __call__(self, inputs: Inputs) -> Any:
        key = tuple((k, v.shape, v.dtype, v.device) for k, v in sorted(inputs.items()))
        if key != self.key:
            self.key, self.graph, self.calls = key, None, 0
        if self.stream is None:
            self.stream = torch.cuda.Stream()
        if self.graph is None and self.calls < self.warmup:
            self.calls += 1
            return self._eager(inputs)
        if self.graph is None:
            self._capture(inputs)
        for k, v in inputs.items():
            self.static[k].copy_(v)
        self.graph.replay()
        return tree_map(torch.clone, self.outputs)

    def _eager(self, inputs: Inputs) -> Any:
        caller = torch.cuda.current_stream()
        self.stream.wait_stream(caller)
        with torch.cuda.stream(self.stream):
            out = self.fn(inputs)
        caller.wait_stream(self.stream)
        # The outputs were allocated on our stream and are used on the caller's: their memory
        # must not be reused by our stream before the caller's work on them is done.
        tree_map(lambda t: t.record_stream(caller) if isinstance(t, Tensor) else t, out)
        return out

    def _capture(self, inputs: Inputs) -> None:
        self.static = {k: v.detach().clone() for k, v in inputs.items()}
        self.stream.wait_stream(torch.cuda.current_stream())
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, stream=self.stream):
            self.outputs = self.fn(self.static)
        torch.cuda.current_stream().wait_stream(self.stream)
