"""Fallback pose backend: BlazePose GHUM 3D (pose_landmark_full.tflite from mediapipe 0.10.21, run
by LiteRT through models/blazepose) mapped onto ConvNeXtPose's 18-joint skeleton, used when no
ConvNeXtPose checkpoint exists.

Why not a whole-frame pose solution on a crop: it would first run its own person detector on the
crop and keep one detection. In a crowd (tests/data/group.jpg) it can pick the neighbour or find
nobody, and the detector costs time we already spent. Instead the landmark model runs on a region
of interest built from OUR box (MediaPipe's "PoseLandmarkByRoi" step). It is stateless (no
smoothing between calls, the tracker smooths), so it is correct for changing crops and for
several people per frame; the region may extend past the image border (edge pixels are
repeated), so people at the edge work. The model's pose-presence score rejects regions without a
person.

Conventions, checked on real photos (tests/test_blazepose.py): world landmarks are metres,
origin between the hips, x towards image right, y down, z away from the camera, which is the
project's camera convention, so mapping is a scale to mm plus a root shift.
"""
from __future__ import annotations

import numpy as np

from app.errors import UserError
from app.skeleton import JOINT_INDEX, NUM_JOINTS, ROOT
from app.types import Box, Camera, Person, PoseBackend
from models.blazepose import ModelUnavailableError, PoseLandmarker, Roi

# BlazePose's 33 landmark indices that we use.
_NOSE, _L_EYE, _R_EYE, _L_EAR, _R_EAR = 0, 2, 5, 7, 8
_L_SHOULDER, _R_SHOULDER, _L_ELBOW, _R_ELBOW, _L_WRIST, _R_WRIST = 11, 12, 13, 14, 15, 16
_L_HIP, _R_HIP, _L_KNEE, _R_KNEE, _L_ANKLE, _R_ANKLE = 23, 24, 25, 26, 27, 28

# Our joints that are single BlazePose landmarks.
_DIRECT = {
    "R_Hip": _R_HIP, "R_Knee": _R_KNEE, "R_Ankle": _R_ANKLE,
    "L_Hip": _L_HIP, "L_Knee": _L_KNEE, "L_Ankle": _L_ANKLE,
    "Nose": _NOSE,
    "L_Shoulder": _L_SHOULDER, "L_Elbow": _L_ELBOW, "L_Wrist": _L_WRIST,
    "R_Shoulder": _R_SHOULDER, "R_Elbow": _R_ELBOW, "R_Wrist": _R_WRIST,
}

# Top of the head above the mid-ear point, along the neck -> mid-ear direction. An adult's
# ear canal sits ~12-13 cm below the vertex; Human3.6M's "Head" marker sits a bit below it.
_EAR_TO_HEAD_TOP_M = 0.11
# The Pose model wants the region a bit larger than a snug body box (it was trained on crops
# 1.25x the full-body circle). A snug box is ~0.9 of that circle's diameter: 1.25 / 0.9 ~ 1.4.
_ROI_SCALE = 1.4
_REGION_SCALE = 1.25        # MediaPipe's own: the crop is 1.25x the full-body circle
_MIN_BOX_SIDE_PX = 24.0     # smaller than this the landmark model sees only a blur
_MIN_JOINTS_FOR_SCALE = 4


class BlazePoseBackend(PoseBackend):
    """BlazePose GHUM 3D landmarks per person box, as 18 Human3.6M-style joints."""

    name = "BlazePose GHUM (fallback)"
    device = "cpu"
    # Detecting the next frame on a helper thread beside the landmark network (2-core Xeon,
    # one-person clip, 900 frames): 5 % faster where a core is left over (the network on one
    # core: 43.4 -> 45.6 FPS), no slower where the network takes both (77.4 either way; 0 to
    # +1.3 % over three series). ConvNeXtPose-L on the CPU was slowed by it (docs/benchmarks.md).
    detects_beside = True

    def __init__(self, roi_scale: float = _ROI_SCALE, min_box_side: float = _MIN_BOX_SIDE_PX,
                 num_threads: int | None = None):
        """num_threads: LiteRT's threads (None: one per core, up to 4)."""
        self.roi_scale = roi_scale
        self.min_box_side = min_box_side
        try:
            self._model = PoseLandmarker(num_threads=num_threads)
        except ModelUnavailableError as exc:
            raise UserError(f"the BlazePose fallback cannot start: {exc}") from exc

    def estimate(self, image_bgr: np.ndarray, boxes: list[Box],
                 camera: Camera) -> list[Person | None]:
        self.last_model_ms = 0.0
        if not boxes:
            return []
        return [self._estimate_one(image_bgr, box, camera) for box in boxes]

    def close(self) -> None:
        self._model.close()

    def __enter__(self) -> "BlazePoseBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- one person -------------------------------------------------------------------------

    def _estimate_one(self, image_bgr: np.ndarray, box: Box, camera: Camera) -> Person | None:
        height, width = image_bgr.shape[:2]
        clipped = box.clipped(width, height)
        if clipped is None or min(clipped.w, clipped.h) <= 1 or max(clipped.w, clipped.h) < self.min_box_side:
            return None
        # A square region in image pixels. With the body's region, it is the one the
        # model was trained on: hip-centred, turned upright, 2.5 radii. Where people overlap, a
        # box's centre can sit on the wrong one; the hips are this person's own.
        if box.region is not None:
            r = box.region
            cx, cy, side, rotation = r.cx, r.cy, 2.0 * r.radius * _REGION_SCALE, r.rotation
        else:
            cx, cy = clipped.x + clipped.w / 2.0, clipped.y + clipped.h / 2.0
            side, rotation = max(clipped.w, clipped.h) * self.roi_scale, 0.0
        result = self._model.estimate(image_bgr, Roi(cx, cy, side, side, rotation), bgr=True)
        # the network's own time, as ConvNeXtPose reports its network's: the crop's resampling
        # and the decoding of the outputs are time spent around it
        self.last_model_ms += self._model.last_network_ms
        if not result.present:
            return None   # the model's own presence score said: nobody in this region
        image_lm = result.image[:, :2]
        # Visibility: "is this landmark visible (not occluded)"; in_frame: "is it inside the
        # image". A joint outside the frame or hidden is not one to trust.
        vis = np.minimum(result.visibility, result.in_frame)
        world_lm = result.world * 1000.0   # metres -> mm
        joints_2d, joints_3d, confidence = _to_skeleton(image_lm, world_lm, vis)
        root_2d = joints_2d[ROOT].copy()
        joints_3d = joints_3d - joints_3d[ROOT]
        return Person(
            box=box,
            joints_2d=joints_2d.astype(np.float32),
            joints_3d=joints_3d.astype(np.float32),
            confidence=np.clip(confidence, 0.0, 1.0).astype(np.float32),
            root_cam=_root_in_camera(joints_2d, joints_3d, confidence, root_2d, camera),
        )


def _to_skeleton(image_lm: np.ndarray, world_lm: np.ndarray,
                 vis: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """33 BlazePose landmarks -> 18 joints: 2D px, 3D mm (not yet root-relative), confidence."""
    j2 = np.zeros((NUM_JOINTS, 2))
    j3 = np.zeros((NUM_JOINTS, 3))
    conf = np.zeros(NUM_JOINTS)

    def put(name: str, p2: np.ndarray, p3: np.ndarray, c: float) -> None:
        i = JOINT_INDEX[name]
        j2[i], j3[i], conf[i] = p2, p3, c

    def mid(a: int, b: int) -> tuple[np.ndarray, np.ndarray, float]:
        return ((image_lm[a] + image_lm[b]) / 2, (world_lm[a] + world_lm[b]) / 2,
                min(vis[a], vis[b]))

    for name, k in _DIRECT.items():
        put(name, image_lm[k], world_lm[k], vis[k])
    pelvis = mid(_L_HIP, _R_HIP)
    neck = mid(_L_SHOULDER, _R_SHOULDER)
    put("Pelvis", *pelvis)
    put("Neck", *neck)
    # Thorax (not in the bone list) is also placed at mid-shoulders: BlazePose has no landmark
    # that distinguishes the two.
    put("Thorax", *neck)
    put("Torso", (pelvis[0] + neck[0]) / 2, (pelvis[1] + neck[1]) / 2, min(pelvis[2], neck[2]))

    # Head top: from the mid-ear point, continue "up" along the neck -> mid-ear direction.
    ears_2d, ears_3d, ears_c = mid(_L_EAR, _R_EAR)
    up_3d = ears_3d - neck[1]
    up_len_3d = float(np.linalg.norm(up_3d))
    up_2d = ears_2d - neck[0]
    if up_len_3d > 1e-6:
        head_3d = ears_3d + up_3d / up_len_3d * _EAR_TO_HEAD_TOP_M * 1000.0
        # The same offset in pixels, using this person's own 2D/3D ratio along the neck.
        head_2d = ears_2d + up_2d * (_EAR_TO_HEAD_TOP_M * 1000.0 / up_len_3d)
    else:
        head_3d, head_2d = ears_3d, ears_2d
    eyes_c = min(vis[_L_EYE], vis[_R_EYE])
    put("Head", head_2d, head_3d, max(ears_c, eyes_c, vis[_NOSE]) * min(1.0, neck[2] + 0.5))
    return j2, j3, conf


def _root_in_camera(joints_2d: np.ndarray, joints_3d: np.ndarray, confidence: np.ndarray,
                    root_2d: np.ndarray, camera: Camera) -> np.ndarray | None:
    """The root (Pelvis) in camera mm from the ratio of the 2D to the 3D skeleton's size.

    Under weak perspective at the root's depth Z, a root-relative 3D offset (X, Y) mm appears as
    (fx X / Z, fy Y / Z) px. A least-squares fit of that scale over confident joints gives Z.
    """
    use = confidence >= 0.5
    use[ROOT] = False
    if use.sum() < _MIN_JOINTS_FOR_SCALE:
        use = confidence >= 0.0
        use[ROOT] = False
    d2 = joints_2d[use] - root_2d
    d3 = joints_3d[use, :2]
    d3_scaled = d3 * np.array([camera.fx, camera.fy])   # mm x px
    if float(np.sum(d2 * d2)) < 1e-6 or float(np.sum(d3_scaled * d3_scaled)) < 1e-6:
        return None
    # d2 ~ d3_scaled * (1 / Z): least squares for the slope 1 / Z.
    inv_z = float(np.sum(d2 * d3_scaled)) / float(np.sum(d3_scaled * d3_scaled))
    if inv_z <= 0:
        return None
    z = 1.0 / inv_z
    x = (root_2d[0] - camera.cx) / camera.fx * z
    y = (root_2d[1] - camera.cy) / camera.fy * z
    return np.array([x, y, z], dtype=np.float32)
