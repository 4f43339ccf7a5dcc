"""One .tflite network run by LiteRT (ai-edge-litert, Google's standalone TensorFlow Lite runtime,
XNNPACK on CPU by default). A LiteRT interpreter is not safe to call from two threads at once,
so calls are serialized; a closed model refuses further calls."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np

from ..cores import usable_cores

MODEL_DIR = Path(__file__).resolve().parent


class ModelUnavailableError(RuntimeError):
    """The runtime is missing or the model file cannot be loaded; the message says which."""


def default_threads() -> int:
    """One thread per core this process may use (OMP_NUM_THREADS where set, as a batch worker sets
    its share), at most 4. LiteRT's own default is one thread: on 2 cores (Intel Xeon, AVX-512)
    the detector took 12.1 ms and the landmark model 22.0 ms per call on one, 6.5 and 11.9 ms on
    two. Beyond 4 threads these small models were not measured."""
    share = os.environ.get("OMP_NUM_THREADS", "")
    cores = int(share) if share.isdigit() and int(share) > 0 else usable_cores()
    return min(4, cores)


class TfliteModel:
    def __init__(self, path: str | Path, num_threads: int | None = None):
        """num_threads: XNNPACK's threads (None: default_threads())."""
        self.path = Path(path)
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise ModelUnavailableError(
                f"running {self.path.name} needs the LiteRT runtime ({exc}); "
                "install it with: pip install ai-edge-litert") from exc
        if not self.path.is_file():
            raise ModelUnavailableError(f"model file {self.path} is missing")
        try:
            self._interpreter = Interpreter(model_path=str(self.path),
                                            num_threads=num_threads or default_threads())
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelUnavailableError(f"cannot load {self.path}: {exc}") from exc
        self._input = self._interpreter.get_input_details()[0]
        self._outputs = self._interpreter.get_output_details()
        self._lock = threading.Lock()
        self._closed = False
        self.last_run_ms = 0.0   # the last run(): input in, network, outputs out (benchmarks)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self._input["shape"])

    @property
    def output_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(int(d) for d in o["shape"]) for o in self._outputs]

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        """The model's outputs (copies, in the model's output order) for one input tensor."""
        tensor = np.ascontiguousarray(tensor, dtype=np.float32).reshape(self.input_shape)
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.path.name} used after close()")
            start = time.perf_counter()
            self._interpreter.set_tensor(self._input["index"], tensor)
            self._interpreter.invoke()
            # get_tensor already copies (the arrays own their data; the next call leaves them)
            outputs = [self._interpreter.get_tensor(o["index"]) for o in self._outputs]
            self.last_run_ms = (time.perf_counter() - start) * 1000.0
            return outputs

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._interpreter = None
