"""BlazePose on LiteRT (models/blazepose): milliseconds per call of the person detector (one
whole-frame pass, decoding and NMS included) and of the landmark model (one person's region,
warp and decoding included), for each thread count asked, on a real photo: the wall-clock median
(and minimum), and the process's CPU time per call (all threads together), which a machine shared
with other jobs disturbs much less than the wall clock. Prints one line per case and a JSON line
at the end; name the CPU beside the figures (printed from /proc/cpuinfo).

    python benchmarks/bench_blazepose.py [--threads 1 2] [--calls 100]
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.cores import cpu_name  # noqa: E402
from models.blazepose import PoseDetector, PoseLandmarker  # noqa: E402

PHOTO = ROOT / "tests" / "data" / "basketball1.jpg"


def per_call_ms(function, calls: int) -> tuple[float, float, float]:
    """(wall median, wall minimum, mean CPU time) over `calls` timed calls, after 5 untimed."""
    for _ in range(5):
        function()
    times = []
    cpu_start = time.process_time()
    for _ in range(calls):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000.0)
    cpu_ms = (time.process_time() - cpu_start) * 1000.0 / calls
    return statistics.median(times), min(times), cpu_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args()
    image = cv2.imread(str(PHOTO))
    results = {"cpu": cpu_name(), "image": f"{PHOTO.name} {image.shape[1]}x{image.shape[0]}",
               "cases": []}
    print(f"CPU: {results['cpu']}; {results['image']}; wall median (min) of {args.calls} calls, "
          f"CPU time per call")
    for threads in args.threads:
        detector = PoseDetector(num_threads=threads)
        landmarker = PoseLandmarker(num_threads=threads)
        (detection,) = detector.detect(image, bgr=True)
        roi = detection.body_roi()
        det = per_call_ms(lambda: detector.detect(image, bgr=True), args.calls)
        lm = per_call_ms(lambda: landmarker.estimate(image, roi, bgr=True), args.calls)
        detector.close()
        landmarker.close()
        print(f"threads {threads}: detector {det[0]:.1f} ms ({det[1]:.1f}), CPU {det[2]:.1f} ms; "
              f"landmarks {lm[0]:.1f} ms ({lm[1]:.1f}), CPU {lm[2]:.1f} ms per person")
        results["cases"].append({"threads": threads, "detector_ms": round(det[0], 2),
                                 "detector_min_ms": round(det[1], 2),
                                 "detector_cpu_ms": round(det[2], 2),
                                 "landmarks_ms": round(lm[0], 2),
                                 "landmarks_min_ms": round(lm[1], 2),
                                 "landmarks_cpu_ms": round(lm[2], 2)})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
