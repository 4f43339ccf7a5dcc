"""Matplotlib figures for --plot: one frame's skeletons in 3D, and a joint's path over a file.

Uses the Agg canvas directly (no pyplot), so it works headless and never touches the GUI
backend that the live window uses. Camera coordinates have y down; the plots show height = -y
on the vertical axis so people stand upright, and depth z on the axis going into the page.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from app.geometry import root_positions
from app.skeleton import BONES, JOINT_NAMES, SIDE_COLOURS_BGR, bone_side, track_colour
from app.types import Person


def _rgb(bgr: tuple[int, int, int]) -> tuple[float, float, float]:
    return (bgr[2] / 255.0, bgr[1] / 255.0, bgr[0] / 255.0)


def world_joints(people: Sequence[Person]) -> list[np.ndarray]:
    """Each person's (J, 3) joints, mm in camera coordinates: root-relative joints moved to the
    root position (geometry.root_positions, as the live 3D panel places them)."""
    return [np.asarray(p.joints_3d, dtype=np.float64) + root for p, root in zip(people, root_positions(list(people)))]


def _to_plot(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera (x right, y down, z away) -> plot axes (x, depth z, height -y)."""
    return points[..., 0], points[..., 2], -points[..., 1]


def _equal_aspect(ax, points: np.ndarray) -> None:
    """Same scale on all three axes: a cube around the data, so limbs keep their lengths."""
    pts = points[np.isfinite(points).all(axis=1)]
    if not len(pts):
        return
    xs, ys, zs = _to_plot(pts)
    centre = np.array([xs.mean(), ys.mean(), zs.mean()])
    half = max(np.ptp(xs), np.ptp(ys), np.ptp(zs), 500.0) / 2.0 * 1.1
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] - half, centre[1] + half)
    ax.set_zlim(centre[2] - half, centre[2] + half)
    ax.set_box_aspect((1, 1, 1))


def _label_axes(ax) -> None:
    ax.set_xlabel("x (mm, right)")
    ax.set_ylabel("z (mm, depth)")
    ax.set_zlabel("height (mm, -y)", labelpad=12)
    # mplot3d draws the height labels onto their tick marks, where a minus sign reads as a tick
    ax.tick_params(axis="z", pad=8)


def _new_axes(title: str):
    fig = Figure(figsize=(7, 7), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(projection="3d")
    ax.set_title(title)
    # From the camera's side (front, not mirrored), turned a little so depth reads clearly.
    ax.view_init(elev=18, azim=-70)
    return fig, ax


def plot_frame(people: Sequence[Person], path: str | Path, title: str | None = None) -> Path:
    """Save a 3D figure of one frame's skeletons (frame_figure) at `path`."""
    path = Path(path)
    frame_figure(people, title).savefig(path)
    return path


def frame_figure(people: Sequence[Person], title: str | None = None) -> Figure:
    """A 3D figure of one frame's skeletons (bones by side colour, joints and id by track)."""
    # Missing joints are NaN; a person without one known joint has nothing to draw.
    drawn = [(person, joints) for person, joints in zip(people, world_joints(people))
             if np.isfinite(joints).all(axis=1).any()]
    fig, ax = _new_axes(title or f"{len(drawn)} people")
    all_points = []
    for person, joints in drawn:
        all_points.append(joints)
        x, y, z = _to_plot(joints)
        for bone in BONES:
            a, b = bone
            ax.plot([x[a], x[b]], [y[a], y[b]], [z[a], z[b]], color=_rgb(SIDE_COLOURS_BGR[bone_side(bone)]),
                    linewidth=2.5)
        colour = _rgb(track_colour(max(person.track_id, 0)))
        ax.scatter(x, y, z, color=colour, s=12, depthshade=False)
        top = int(np.nanargmax(np.where(np.isfinite(joints).all(axis=1), z, np.nan)))
        ax.text(x[top], y[top], z[top] + 80, f"id {person.track_id}", color=colour)
    if all_points:
        _equal_aspect(ax, np.concatenate(all_points))
    _label_axes(ax)
    return fig


def plot_trajectory(frames_people: Sequence[Sequence[Person]], joint_index: int, path: str | Path,
                    title: str | None = None) -> Path:
    """Save the 3D path of one joint over a file (trajectory_figure) at `path`."""
    path = Path(path)
    trajectory_figure(frames_people, joint_index, title).savefig(path)
    return path


def trajectory_figure(frames_people: Sequence[Sequence[Person]], joint_index: int,
                      title: str | None = None) -> Figure:
    """The 3D path of one joint over a file, one line per track id, from a circle at the start
    to a triangle at the end."""
    name = JOINT_NAMES[joint_index] if 0 <= joint_index < len(JOINT_NAMES) else str(joint_index)
    fig, ax = _new_axes(title or f"{name} trajectory over {len(frames_people)} frames")
    tracks: dict[int, list[np.ndarray]] = defaultdict(list)
    times: dict[int, list[int]] = defaultdict(list)
    for t, people in enumerate(frames_people):
        for person, joints in zip(people, world_joints(people)):
            tracks[person.track_id].append(joints[joint_index])
            times[person.track_id].append(t)
    all_points = []
    dots = None
    for track_id, points in sorted(tracks.items()):
        pts = np.array(points)
        all_points.append(pts)
        x, y, z = _to_plot(pts)
        colour = _rgb(track_colour(max(track_id, 0)))
        ax.plot(x, y, z, color=colour, linewidth=1.5, label=f"id {track_id}")
        # Dots coloured by frame index show the pace along the path.
        dots = ax.scatter(x, y, z, c=times[track_id], cmap="viridis", vmin=0,
                          vmax=max(1, len(frames_people) - 1), s=8, depthshade=False)
        ax.scatter([x[0]], [y[0]], [z[0]], color=colour, marker="o", s=30, depthshade=False)
        ax.scatter([x[-1]], [y[-1]], [z[-1]], color=colour, marker="^", s=40, depthshade=False)
    if all_points:
        _equal_aspect(ax, np.concatenate(all_points))
        ax.legend(loc="upper left")
        fig.colorbar(dots, ax=ax, shrink=0.6, pad=0.1, label="frame")
    _label_axes(ax)
    return fig
