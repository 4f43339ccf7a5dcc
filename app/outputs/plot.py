"""--plot: what the matplotlib figure needs, collected frame by frame (the last frame's people,
or one joint's path over the run), drawn by app/plot.py when the run ends and written as every
output is: whole, or not at all (app/outputs/atomic.py)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..types import FrameResult, Person
from .atomic import write_bytes_atomically, write_error


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
        """Write the figure; its path, or None when there was nothing to draw. A file system
        error (a full disk) is a UserError, and what was at the path stays as it was."""
        from ..plot import frame_figure, trajectory_figure
        if self.joint_index is not None:
            if not any(self.history):
                return None
            figure = trajectory_figure(self.history, self.joint_index)
        elif self.last_people:
            figure = frame_figure(self.last_people)
        else:
            return None
        path = Path(self.path)
        image = io.BytesIO()
        figure.savefig(image, format=path.suffix[1:].lower())
        try:
            write_bytes_atomically(path, image.getvalue())
        except OSError as error:
            raise write_error(path, error) from None
        return self.path
