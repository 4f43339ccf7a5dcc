"""One CUDA graph per input shape: a network's ~100 small kernels launched as one.

At batch 1 on a fast GPU, ConvNeXtPose's kernels are short enough that launching them from
Python costs more than running them. A captured graph replays the whole launch sequence in one
call. What it needs: fixed input and output buffers per shape (a replay reads the input buffer
and overwrites the output buffers), and capture after a warm-up on a side stream (cuDNN's
autotuning and the caching allocator must settle before capture).

`CudaGraphs(function)` captures `function(images)` (which returns a tuple of tensors) for the
shapes it is shown, keeps each graph only where replaying it is faster than calling the
function (`capture` measures both), and replays it for inputs of that shape. Every shape shares
one memory pool. Call it on the thread that infers; the outputs are copies, so a caller may
keep them across calls.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Callable

import torch

from .optimize import timed_ms

Outputs = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class GraphTrial:
    """One shape: the median ms of calling the function and of replaying its graph."""
    batch: int
    eager_ms: float
    graph_ms: float

    @property
    def kept(self) -> bool:
        return self.graph_ms < self.eager_ms


class _Captured:
    def __init__(self, graph: torch.cuda.CUDAGraph, inputs: torch.Tensor, outputs: Outputs):
        self.graph, self.inputs, self.outputs = graph, inputs, outputs


class CudaGraphs:
    """`function(images) -> tuple of tensors`, replayed from a CUDA graph for captured shapes."""

    def __init__(self, function: Callable[[torch.Tensor], Outputs]):
        self.function = function
        self._captured: dict[tuple, _Captured] = {}
        self._pool = None
        self.trials: list[GraphTrial] = []

    def capture(self, example: torch.Tensor, repeats: int = 7, always: bool = False) -> GraphTrial:
        """Capture the graph for example's shape (and layout), time it against a plain call, and
        keep it only if it is faster (or `always`). Returns what was measured."""
        device = example.device
        inputs = example.clone()   # keeps example's strides (channels_last stays channels_last)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(3):   # autotuning and allocations happen here, not in the capture
                self.function(inputs)
        torch.cuda.current_stream(device).wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph, pool=self._pool):
            outputs = tuple(self.function(inputs))
        captured = _Captured(graph, inputs, outputs)
        with torch.inference_mode():
            eager_ms = statistics.median(timed_ms(lambda: self.function(example), device, repeats, warmup=0))
            graph_ms = statistics.median(timed_ms(lambda: self._replay(captured, example), device, repeats,
                                                  warmup=0))
        trial = GraphTrial(int(example.shape[0]), eager_ms, graph_ms)
        self.trials.append(trial)
        if trial.kept or always:
            self._captured[self._key(example)] = captured
        return trial

    @staticmethod
    def _key(images: torch.Tensor) -> tuple:
        return tuple(images.shape), images.stride(), images.dtype, images.device

    @staticmethod
    def _replay(captured: _Captured, images: torch.Tensor) -> Outputs:
        captured.inputs.copy_(images)
        captured.graph.replay()
        return tuple(out.clone() for out in captured.outputs)

    def __call__(self, images: torch.Tensor) -> Outputs:
        captured = self._captured.get(self._key(images))
        if captured is None:
            return tuple(self.function(images))
        with torch.inference_mode():
            return self._replay(captured, images)

    @property
    def batch_sizes(self) -> list[int]:
        """The batch sizes that replay a graph."""
        return sorted(key[0][0] for key in self._captured)
