"""One MediaPipe graph from its text config, run through the Python SolutionBase: how the person
detector and the BlazePose fallback both run MediaPipe (mediapipe 0.10.21, models from the wheel).

Built with MediaPipe's native start-up logs silenced; calls serialized by a lock (a graph is
stateful while it processes a packet); closed once, and refused after."""
from __future__ import annotations

import threading

from app.errors import UserError
from app.native_logs import native_stderr_silenced


class MediaPipeGraph:
    def __init__(self, config_text: str, owner: str, side_inputs: dict | None = None):
        """owner: what runs the graph, for messages ("the person detector")."""
        self.owner = owner
        try:
            from google.protobuf import text_format
            from mediapipe.framework import calculator_pb2
            from mediapipe.python.solution_base import SolutionBase
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise UserError(f"{owner} needs mediapipe==0.10.21 ({exc}); "
                            "install it with: pip install mediapipe==0.10.21") from exc
        config = text_format.Parse(config_text, calculator_pb2.CalculatorGraphConfig())
        with native_stderr_silenced():
            self._solution = SolutionBase(graph_config=config, side_inputs=side_inputs)
        self._lock = threading.Lock()

    def process(self, inputs: dict):
        """The graph's outputs (a NamedTuple by output stream name) for one set of inputs."""
        with self._lock:
            if self._solution is None:
                raise RuntimeError(f"{self.owner} used after close()")
            return self._solution.process(inputs)

    def close(self) -> None:
        with self._lock:
            if self._solution is not None:
                self._solution.close()
                self._solution = None
