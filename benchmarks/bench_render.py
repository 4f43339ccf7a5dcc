"""Cost of drawing: the 3D panel (1 and 3 people, 640x480), the whole composition, and one
matplotlib 3D figure for comparison.  Run: .venv/bin/python benchmarks/bench_render.py"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.render3d import Panel3D  # noqa: E402
from app.types import Frame, FrameResult  # noqa: E402
from app.view import SceneInfo, SceneRenderer  # noqa: E402
from tests.support import standing_person  # noqa: E402  (the realistic synthetic skeleton)

THREE = [((-900, 200, 3500), 1, 0.0), ((0, 150, 3000), 2, 15.0), ((1000, 250, 4200), 3, -30.0)]


def people(n: int, t: int):
    # A little sway so the framing and the people move as in a live video.
    return [standing_person((x + 30 * np.sin(t / 10 + i), y, z), tid, yaw)
            for i, ((x, y, z), tid, yaw) in enumerate(THREE[:n])]


def stats(times_ms: list[float]) -> str:
    a = np.array(times_ms)
    return f"mean {a.mean():6.3f} ms   p95 {np.percentile(a, 95):6.3f} ms   (n={len(a)})"


def bench(fn, frames: int = 300, warmup: int = 20) -> list[float]:
    for t in range(warmup):
        fn(t)
    out = []
    for t in range(frames):
        start = time.perf_counter()
        fn(t)
        out.append((time.perf_counter() - start) * 1000.0)
    return out


def main() -> None:
    for n in (1, 3):
        panel = Panel3D(640, 480)
        batches = [people(n, t) for t in range(64)]
        print(f"3D panel 640x480, {n} people, still view:      "
              + stats(bench(lambda t: panel.render(batches[t % 64]))))
        panel = Panel3D(640, 480)

        def orbiting(t):
            panel.orbit(0.7)            # every frame a new view: the grid cache never hits
            panel.render(batches[t % 64])
        print(f"3D panel 640x480, {n} people, orbiting view:   " + stats(bench(orbiting)))

    scene = SceneRenderer()
    video = np.full((480, 640, 3), 100, np.uint8)
    results = [FrameResult(Frame(t, t / 30, video), people(3, t), {"detect": 9.0, "pose": 31.0}) for t in range(64)]
    info = SceneInfo("ConvNeXtPose-S", "cpu", 25.0)
    print("composition 1280x480 (2D + HUD + 3D), 3 people: "
          + stats(bench(lambda t: scene.render(results[t % 64], info))))

    from app.plot import plot_frame
    with tempfile.TemporaryDirectory() as tmp:
        plot_frame(people(3, 0), Path(tmp) / "warm.png")
        start = time.perf_counter()
        plot_frame(people(3, 0), Path(tmp) / "frame.png")
        print(f"matplotlib 3D figure (plot_frame, 3 people, PNG): {(time.perf_counter() - start) * 1000:.0f} ms once")


if __name__ == "__main__":
    main()
