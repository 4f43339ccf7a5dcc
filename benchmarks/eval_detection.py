"""How many of the people a user sees does the app report, and how many of the people it reports
are real? Runs the live path (FrameLoop.process: the detection plan says what to search, the detector
searches it, the pose backend estimates, the tracker updates) frame by frame
over each annotated file of tests/data/people_boxes.json, and scores the annotated frames.

    python benchmarks/eval_detection.py [--files pedestrians.mp4 group.jpg ...] [--json]

Per file: recall for people taller than 100 px and for 40-100 px (the share of annotated people
matched by a reported person, per annotated frame, summed over frames), precision (the share of
reported people that match an annotated person), and the cost: detector and landmark-model calls
per frame, ms per frame (detection and pose), and the sweep's tiles searched per frame (of those
visited: the rest were covered by followed people or unchanged since their last search).

Matching: a reported person's extent is the bounding box of its confident 2D joints (the box it
was estimated in when fewer than 4 are confident), widened a little because joints are centres;
it matches an annotated box at IoU >= 0.3, greedily, best IoU first, one to one. Reported people
lying mostly inside a file's "ignore" regions (the blurred crowd behind messi5.jpg) count neither
way. Files whose media are absent (vtest.avi comes from Debian's opencv-doc) are skipped.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.settings import Settings  # noqa: E402
from models.cores import cpu_name  # noqa: E402
from app.types import Box, Person  # noqa: E402

DATA = ROOT / "tests" / "data"
GROUND_TRUTH = DATA / "people_boxes.json"
MATCH_IOU = 0.3
TALL_PX = 100.0      # "people taller than 100 px"
SMALL_PX = 40.0      # "people 40-100 px tall"; smaller ones are counted in neither recall
JOINT_CONFIDENCE = 0.3


# ---- scoring ----------------------------------------------------------------------------------

def person_extent(person: Person) -> Box:
    """Where a reported person is: its confident joints' bounds, padded (joints are centres: the
    head-top joint is near the top, but wrists, feet and shoulders lie inside the outline)."""
    joints = np.asarray(person.joints_2d, dtype=np.float64)
    good = (np.asarray(person.confidence) >= JOINT_CONFIDENCE) & np.all(np.isfinite(joints), axis=1)
    if good.sum() < 4:
        return person.box
    (x0, y0), (x1, y1) = joints[good].min(axis=0), joints[good].max(axis=0)
    height = y1 - y0
    pad_x, pad_y = max(0.1 * height, 0.05 * (x1 - x0)), 0.05 * height
    return Box(x0 - pad_x, y0 - pad_y, x1 - x0 + 2 * pad_x, y1 - y0 + 2 * pad_y, person.box.score)


def _inside_fraction(box: Box, region: list[float]) -> float:
    rx, ry, rw, rh = region
    w = min(box.x + box.w, rx + rw) - max(box.x, rx)
    h = min(box.y + box.h, ry + rh) - max(box.y, ry)
    return max(0.0, w) * max(0.0, h) / box.area if box.area > 0 else 0.0


@dataclass
class Score:
    """Counts over the annotated frames of one file."""
    tall: int = 0            # annotated people > 100 px tall
    tall_found: int = 0
    small: int = 0           # annotated people 40-100 px tall
    small_found: int = 0
    tiny: int = 0            # annotated people < 40 px (reported people matching them are real)
    tiny_found: int = 0
    reported: int = 0        # reported people, outside ignore regions
    reported_real: int = 0

    def add(self, other: "Score") -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @staticmethod
    def ratio(num: int, den: int) -> float | None:
        return num / den if den else None

    @property
    def recall_tall(self) -> float | None:
        return self.ratio(self.tall_found, self.tall)

    @property
    def recall_small(self) -> float | None:
        return self.ratio(self.small_found, self.small)

    @property
    def precision(self) -> float | None:
        return self.ratio(self.reported_real, self.reported)


def score_frame(reported: list[Box], truth: list[list[float]], ignore: list[list[float]] = ()) -> Score:
    """Match reported extents to annotated [x, y, w, h] boxes (IoU >= MATCH_IOU, greedy)."""
    truth_boxes = [Box(*t) for t in truth]
    pairs = sorted(((r.iou(t), ri, ti) for ri, r in enumerate(reported)
                    for ti, t in enumerate(truth_boxes)), reverse=True)
    matched_r: set[int] = set()
    matched_t: set[int] = set()
    for iou, ri, ti in pairs:
        if iou < MATCH_IOU:
            break
        if ri in matched_r or ti in matched_t:
            continue
        matched_r.add(ri)
        matched_t.add(ti)
    score = Score()
    for ti, t in enumerate(truth_boxes):
        found = ti in matched_t
        if t.h > TALL_PX:
            score.tall += 1
            score.tall_found += found
        elif t.h >= SMALL_PX:
            score.small += 1
            score.small_found += found
        else:
            score.tiny += 1
            score.tiny_found += found
    for ri, r in enumerate(reported):
        if ri not in matched_r and any(_inside_fraction(r, region) > 0.5 for region in ignore):
            continue
        score.reported += 1
        score.reported_real += ri in matched_r
    return score


# ---- the live path, counted -------------------------------------------------------------------

@dataclass
class Cost:
    frames: int = 0
    detect_ms: float = 0.0
    pose_ms: float = 0.0
    detector_calls: int = 0           # detector model invocations
    landmark_calls: int = 0           # landmark model invocations: verifying candidates, and
                                      # estimating poses (one per box, BlazePose fallback)
    tiles_visited: int = 0            # sweep tiles the plan visited ...
    tiles_searched: int = 0           # ... and those it had searched
    max_detect_ms: float = 0.0        # the slowest frame's detection


class _CountingDetector:
    """The app's detector, its calls timed and its model invocations counted."""

    def __init__(self, detector, cost: Cost):
        self._detector, self._cost = detector, cost

    def tiles(self, width, height):
        return self._detector.tiles(width, height)

    def search(self, image, whole_frame, tiles=(), known=(), seen=(), settled=()):
        det_before, lmk_before = self._detector.detector_calls, self._detector.landmark_calls
        boxes = self._detector.search(image, whole_frame, tiles, known, seen=seen, settled=settled)
        self._cost.detector_calls += self._detector.detector_calls - det_before
        self._cost.landmark_calls += self._detector.landmark_calls - lmk_before   # verification
        return boxes

    def close(self):
        self._detector.close()


class _CountingBackend:
    def __init__(self, backend, cost: Cost):
        self._backend, self._cost = backend, cost
        self.name, self.device = backend.name, backend.device
        # detects in line (no detects_beside): the counting detector counts calls made there, and
        # the answers are those of detecting beside (tests/test_inference_path.py)

    def estimate(self, image, boxes, camera):
        self._cost.landmark_calls += len(boxes)
        return self._backend.estimate(image, boxes, camera)

    def close(self):
        self._backend.close()


def evaluate_file(name: str, spec: dict, backend, max_frames: int | None = None) -> tuple[Score, Cost, dict]:
    """Run the live path over one annotated file. Returns the score, the cost and what was
    reported on each annotated frame (for drawing)."""
    from app.detection_plan import DetectionPlan, PlanConfig
    from app.detector import PersonDetector
    from app.frame_loop import FrameLoop
    from app.run import _warm_up
    from app.sources import open_source
    from app.tracker import Tracker

    path = spec.get("path") or str(DATA / name)
    truth: dict[str, list] = spec["frames"]
    ignore = spec.get("ignore", [])
    settings = Settings()   # the command line's defaults
    cost = Cost()
    total, reported_on = Score(), {}
    source = open_source(path)
    detector = _CountingDetector(PersonDetector(), cost)
    try:
        tracker = Tracker(smoothing=not source.is_still)
        width, height = source.size
        _warm_up(detector._detector, backend, width, height, settings.camera.camera(width, height), "blazepose")
        plan = DetectionPlan(detector.tiles, PlanConfig(redetect_every=settings.tracking.detect_every,
                                                        stills=source.is_still))
        loop = FrameLoop(settings.camera, source, detector, _CountingBackend(backend, cost), tracker,
                         scene=None, viewer=None, sinks=None, plan=plan)
        last = max(int(k) for k in truth) if truth else 0
        for frame in source:
            if frame.index > last or (max_frames is not None and frame.index >= max_frames):
                break
            result = loop.process(frame)
            cost.frames += 1
            cost.detect_ms += result.stages_ms["detect"]
            cost.max_detect_ms = max(cost.max_detect_ms, result.stages_ms["detect"])
            cost.pose_ms += result.stages_ms["pose"]
            key = str(frame.index)
            if key in truth:
                extents = [person_extent(p) for p in result.people]
                reported_on[key] = [list(e.as_xywh()) for e in extents]
                total.add(score_frame(extents, truth[key], ignore))
        cost.tiles_visited, cost.tiles_searched = loop.plan.stats.tiles_visited, loop.plan.stats.tiles_searched
    finally:
        detector.close()
        source.close()
    return total, cost, reported_on


# ---- the command ------------------------------------------------------------------------------

def _pct(value: float | None, num: int, den: int, empty: str = "-") -> str:
    if value is None:
        return empty
    return f"{100 * value:.0f}% ({num}/{den})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", nargs="*", help="annotated files to run (default: all present)")
    parser.add_argument("--max-frames", type=int, help="stop each video after N frames")
    parser.add_argument("--json", action="store_true", help="also print one JSON line per file")
    args = parser.parse_args(argv)

    from app.backends import create_backend
    import platform

    annotated = json.loads(GROUND_TRUTH.read_text())["files"]
    names = args.files or list(annotated)
    unknown = [n for n in names if n not in annotated]
    if unknown:
        print(f"no annotations for {', '.join(unknown)}; annotated: {', '.join(annotated)}", file=sys.stderr)
        return 2
    backend = create_backend("blazepose")
    print(f"CPU: {cpu_name()}; Python {platform.python_version()}; backend {backend.name}")
    header = (f"{'file':<16} {'frames':>6} {'recall >100px':>15} {'recall 40-100px':>16} {'precision':>14} "
              f"{'det calls/fr':>12} {'lmk calls/fr':>12} {'ms/frame':>9} {'max det ms':>10} {'tiles searched/visited':>22}")
    print(header)
    try:
        for name in names:
            spec = annotated[name]
            path = Path(spec.get("path") or DATA / name)
            if not path.exists():
                print(f"{name:<16} skipped: {path} is absent")
                continue
            score, cost, _ = evaluate_file(name, spec, backend, args.max_frames)
            n = max(1, cost.frames)
            tiles = _pct(cost.tiles_searched / cost.tiles_visited if cost.tiles_visited else None,
                         cost.tiles_searched, cost.tiles_visited)
            print(f"{name:<16} {cost.frames:>6} "
                  f"{_pct(score.recall_tall, score.tall_found, score.tall):>15} "
                  f"{_pct(score.recall_small, score.small_found, score.small):>16} "
                  f"{_pct(score.precision, score.reported_real, score.reported, 'none reported'):>14} "
                  f"{cost.detector_calls / n:>12.2f} {cost.landmark_calls / n:>12.2f} "
                  f"{(cost.detect_ms + cost.pose_ms) / n:>9.1f} {cost.max_detect_ms:>10.0f} {tiles:>22}")
            if args.json:
                print(json.dumps({"file": name, "frames": cost.frames, **score.__dict__,
                                  "detector_calls": cost.detector_calls, "landmark_calls": cost.landmark_calls,
                                  "detect_ms": round(cost.detect_ms, 1), "pose_ms": round(cost.pose_ms, 1),
                                  "max_detect_ms": round(cost.max_detect_ms, 1),
                                  "tiles_visited": cost.tiles_visited, "tiles_searched": cost.tiles_searched}))
    finally:
        backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
