"""BlazePose (Google's MediaPipe Pose networks, vendored .tflite files: see README.md here) run by
LiteRT, with MediaPipe's pre- and post-processing re-implemented in numpy/OpenCV. Knows nothing of
the application and needs no torch and no mediapipe."""
from .detector import PoseDetection, PoseDetector, aligned_square, ssd_anchors, weighted_nms
from .image_to_tensor import Padding, Roi, letterbox, warp_to_tensor
from .landmarker import NUM_LANDMARKS, PRESENCE_THRESHOLD, PoseLandmarker, PoseLandmarks
from .runtime import ModelUnavailableError, TfliteModel

__all__ = [
    "PoseDetector", "PoseDetection", "PoseLandmarker", "PoseLandmarks", "Roi", "Padding",
    "letterbox", "warp_to_tensor", "aligned_square", "ssd_anchors", "weighted_nms",
    "NUM_LANDMARKS", "PRESENCE_THRESHOLD", "ModelUnavailableError", "TfliteModel",
]
