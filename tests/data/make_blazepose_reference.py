"""Reference outputs of MediaPipe's own BlazePose graphs, for tests/test_blazepose_port.py.

Needs mediapipe==0.10.21 (Python 3.9-3.12, numpy<2): run it in a throw-away environment, e.g.
    /work/venv-old/bin/python tests/data/make_blazepose_reference.py
It writes tests/data/blazepose_reference.npz. The tests that read it need no mediapipe.

What it records, on real photos and video frames from tests/data:
- "PoseDetectionCpu" on each whole image: every detection's score, relative box and 4 keypoints
  (what app/detector.py used through the graph API until the LiteRT port);
- "PoseLandmarkByRoiCpu" (model_complexity 1 = pose_landmark_full.tflite) on regions of interest:
  the hip-centred region of each detection (as MediaPipe's PoseDetectionToRoi builds it, whose
  own output for each image's best detection is recorded too), plus
  regions that test the warp: upright box-centred, non-square in normalized units, tilted, and
  running over the image's edge. For each: the 33 normalized landmarks (x, y, z, visibility,
  presence), world landmarks (metres) and the region for the next frame (PoseLandmarksToRoi), or
  NaN when the pose-presence flag was off.
"""
from __future__ import annotations

import hashlib
import math
import sys
from pathlib import Path

import numpy as np
from google.protobuf import text_format
from mediapipe.framework import calculator_pb2
from mediapipe.framework.formats import rect_pb2
from mediapipe.python.solution_base import SolutionBase

DATA = Path(__file__).resolve().parent
sys.path.insert(0, str(DATA.parent))
from blazepose_media import VIDEO_FRAMES, crop_origin, reference_images  # noqa: E402

DETECTION_GRAPH = """
input_stream: "image"
output_stream: "detections"
node {
  calculator: "PoseDetectionCpu"
  input_stream: "IMAGE:image"
  output_stream: "DETECTIONS:detections"
}
"""

# MediaPipe's own region for the best detection (PoseDetectionToRoi), to test ours against.
DETECTION_ROI_GRAPH = """
input_stream: "image"
output_stream: "roi"
node {
  calculator: "ImagePropertiesCalculator"
  input_stream: "IMAGE_CPU:image"
  output_stream: "SIZE:image_size"
}
node {
  calculator: "PoseDetectionCpu"
  input_stream: "IMAGE:image"
  output_stream: "DETECTIONS:detections"
}
node {
  calculator: "SplitDetectionVectorCalculator"
  input_stream: "detections"
  output_stream: "detection"
  options: {
    [mediapipe.SplitVectorCalculatorOptions.ext] {
      ranges: { begin: 0 end: 1 }
      element_only: true
    }
  }
}
node {
  calculator: "PoseDetectionToRoi"
  input_stream: "DETECTION:detection"
  input_stream: "IMAGE_SIZE:image_size"
  output_stream: "ROI:roi"
}
"""

LANDMARK_GRAPH = """
input_stream: "image"
input_stream: "roi"
input_side_packet: "model_complexity"
output_stream: "landmarks"
output_stream: "world_landmarks"
output_stream: "next_roi"
node {
  calculator: "ImagePropertiesCalculator"
  input_stream: "IMAGE_CPU:image"
  output_stream: "SIZE:image_size"
}
node {
  calculator: "PoseLandmarkByRoiCpu"
  input_stream: "IMAGE:image"
  input_stream: "ROI:roi"
  input_side_packet: "MODEL_COMPLEXITY:model_complexity"
  output_stream: "LANDMARKS:landmarks"
  output_stream: "AUXILIARY_LANDMARKS:auxiliary_landmarks"
  output_stream: "WORLD_LANDMARKS:world_landmarks"
}
node {
  calculator: "PoseLandmarksToRoi"
  input_stream: "LANDMARKS:auxiliary_landmarks"
  input_stream: "IMAGE_SIZE:image_size"
  output_stream: "ROI:next_roi"
}
"""

def detection_roi(keypoints_px: np.ndarray, width: int, height: int) -> tuple:
    """MediaPipe's PoseDetectionToRoi: centred on keypoint 0 (hips), side 2 x 1.25 x the distance
    to keypoint 1, rotated so keypoint 1 is up. Normalized (xc, yc, w, h, rotation)."""
    (x0, y0), (x1, y1) = keypoints_px[0], keypoints_px[1]
    rotation = math.pi / 2 - math.atan2(-(y1 - y0), x1 - x0)
    rotation = rotation - 2 * math.pi * math.floor((rotation + math.pi) / (2 * math.pi))
    side = 2 * math.hypot(x1 - x0, y1 - y0) * 1.25
    return (x0 / width, y0 / height, side / width, side / height, rotation)


def _rect(rect) -> list[float]:
    return [rect.x_center, rect.y_center, rect.width, rect.height, rect.rotation]


def main() -> None:
    detector = SolutionBase(graph_config=text_format.Parse(
        DETECTION_GRAPH, calculator_pb2.CalculatorGraphConfig()))
    region_finder = SolutionBase(graph_config=text_format.Parse(
        DETECTION_ROI_GRAPH, calculator_pb2.CalculatorGraphConfig()))
    landmarker = SolutionBase(graph_config=text_format.Parse(
        LANDMARK_GRAPH, calculator_pb2.CalculatorGraphConfig()),
        side_inputs={"model_complexity": 1})
    all_images = reference_images()
    index_of = {name: i for i, (name, _) in enumerate(all_images)}
    names, sha, det_rows, best_rois = [], [], [], []
    rois_by_image: list[list[tuple]] = [[] for _ in all_images]
    for image_index, (name, rgb) in enumerate(all_images):
        height, width = rgb.shape[:2]
        names.append(name)
        sha.append(hashlib.sha256(rgb.tobytes()).hexdigest())
        result = detector.process({"image": rgb})
        best_roi = region_finder.process({"image": rgb}).roi
        if best_roi is not None:
            best_rois.append([image_index] + _rect(best_roi))
        for det in result.detections or []:
            box = det.location_data.relative_bounding_box
            kps = np.array([(k.x, k.y) for k in det.location_data.relative_keypoints])
            det_rows.append(np.concatenate([[image_index, det.score[0], box.xmin, box.ymin,
                                             box.width, box.height], kps.ravel()]))
            origin = crop_origin(name)
            if origin:
                # A crop's detection: its region on the whole source image, where the body
                # is not cut by the crop's edge.
                source, x, y = origin
                source_h, source_w = all_images[index_of[source]][1].shape[:2]
                kps_px = kps * [width, height] + [x, y]
                rois_by_image[index_of[source]].append(
                    detection_roi(kps_px, source_w, source_h))
            else:
                rois_by_image[image_index].append(
                    detection_roi(kps * [width, height], width, height))
        if not crop_origin(name):
            # Regions that exercise the warp beyond the detector's: a centred square
            # (normalized units differ on a non-square image), a tilted one, one that runs
            # off the left edge.
            side = 0.8 * min(width, height)
            rois_by_image[image_index] += [(0.5, 0.5, side / width, side / height, 0.0),
                                           (0.45, 0.55, side / width, side / height, 0.35),
                                           (0.1, 0.5, side / width, side / height, -0.2)]
    roi_rows = []
    for image_index, (name, rgb) in enumerate(all_images):
        for roi in rois_by_image[image_index]:
            rect = rect_pb2.NormalizedRect(x_center=roi[0], y_center=roi[1], width=roi[2],
                                           height=roi[3], rotation=roi[4])
            out = landmarker.process({"image": rgb, "roi": rect})
            if out.landmarks is None:
                lm = np.full((33, 5), np.nan)
                world = np.full((33, 3), np.nan)
                next_roi = [np.nan] * 5
            else:
                lm = np.array([(p.x, p.y, p.z, p.visibility, p.presence)
                               for p in out.landmarks.landmark])
                world = np.array([(p.x, p.y, p.z) for p in out.world_landmarks.landmark])
                next_roi = _rect(out.next_roi)
            roi_rows.append((image_index, np.array(roi), lm, world, np.array(next_roi)))
        found = sum(1 for r in roi_rows if r[0] == image_index and not np.isnan(r[2][0, 0]))
        print(f"{name}: {rgb.shape[1]}x{rgb.shape[0]}, "
              f"{sum(1 for d in det_rows if d[0] == image_index)} detections, "
              f"{found}/{len(rois_by_image[image_index])} regions with a pose")
    detector.close()
    region_finder.close()
    landmarker.close()
    np.savez_compressed(
        DATA / "blazepose_reference.npz",
        image_names=np.array(names), image_sha256=np.array(sha),
        # per detection: image index, score, xmin, ymin, w, h (relative), 4 keypoints (x, y)
        detections=np.array(det_rows, dtype=np.float64).reshape(-1, 14),
        roi_image=np.array([r[0] for r in roi_rows]),
        rois=np.array([r[1] for r in roi_rows]),            # xc, yc, w, h (normalized), rotation
        landmarks=np.array([r[2] for r in roi_rows]),       # 33 x (x, y, z, visibility, presence)
        world_landmarks=np.array([r[3] for r in roi_rows]),  # 33 x (x, y, z) metres
        # MediaPipe's own regions: for each image's best detection (PoseDetectionToRoi), as
        # image index, xc, yc, w, h, rotation; and per landmark row, for the next frame
        # (PoseLandmarksToRoi on the auxiliary landmarks), NaN where no pose
        detection_rois=np.array(best_rois, dtype=np.float64).reshape(-1, 6),
        next_rois=np.array([r[4] for r in roi_rows]),
        video_frames=np.array(VIDEO_FRAMES),
    )


if __name__ == "__main__":
    main()
