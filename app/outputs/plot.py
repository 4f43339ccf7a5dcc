"""--plot: what the matplotlib figure needs, collected frame by frame (the last frame's people,
or one joint's path over the run), drawn by app/plot.py when the run ends."""
from __future__ import annotations

import numpy as np

from ..types import FrameResult, Person


class PlotRecorder:
    """Keeps what --plot needs: the last frame's people, or one joint's path over the run."""

    def __init__(self, path: str, joint_index: int | None):
        self.path = path
        self.joint_index = joint_index
        self.last_people: list[Person] = []
        self.history: list[list[Person]] = []

    def add(self, result: FrameResult) -> None:
        # People without a single finite 3D joint have nothing to draw.
        people = [p for p in result.people if np.isfinite(p.joints_3d).all(axis=-1).any()]
        if people:
            self.last_people = people
        if self.joint_index is not None:
            self.history.append([p for p in people if np.isfinite(p.joints_3d[self.joint_index]).all()])

    def save(self) -> str | None:
        from ..plot import plot_frame, plot_trajectory
        if self.joint_index is not None:
            if not any(self.history):
                return None
            return str(plot_trajectory(self.history, self.joint_index, self.path))
        if not self.last_people:
            return None
        return str(plot_frame(self.last_people, self.path))
